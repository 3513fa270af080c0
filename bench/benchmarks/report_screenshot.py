"""Does a run's HTML report fit a laptop screen? Render it in headless Chromium at 1366x768, save a screenshot and
check that the page does not scroll sideways (document scrollWidth <= viewport width; wide tables scroll in their
own box instead).

    python -m bench.benchmarks.report_screenshot RUN_DIR [--out PNG] [--width 1366] [--height 768] [--browser PATH]

Needs a Chromium (or Chrome) binary, nothing from PyPI: `apt-get install chromium` on Debian (Playwright's own
`playwright install chromium` downloads a browser build from outside the package registries, which fails
where only they are reachable). The browser is run twice: once with --dump-dom on a copy of the page carrying a
probe script that writes the widths into the DOM, once with --screenshot. Exit 1 when the page overflows, 2 when
no browser is found. Last line JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
# after layout: the page's own width and the viewport's, as attributes a --dump-dom shows
PROBE = ("<script>addEventListener('load', () => {const b = document.body;"
         "b.setAttribute('data-scroll-width', document.documentElement.scrollWidth);"
         "b.setAttribute('data-inner-width', innerWidth);});</script>")


def find_browser(given: str | None) -> str | None:
    return given or next((p for name in BROWSERS if (p := shutil.which(name))), None)


def _chromium(browser: str, width: int, height: int, *args: str) -> subprocess.CompletedProcess:
    # --no-sandbox: containers run as root, where Chromium's sandbox refuses to start
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--window-size={width},{height}", "--virtual-time-budget=3000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


def measure(page: Path, browser: str, width: int, height: int) -> dict[str, int]:
    """scrollWidth of the document and innerWidth of the viewport, as the browser laid the page out."""
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.html"
        probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
        dom = _chromium(browser, width, height, "--dump-dom", probe.as_uri()).stdout
    found = dict(re.findall(r'data-(scroll|inner)-width="(\d+)"', dom))
    if len(found) != 2:
        raise RuntimeError("the probe script did not run: no widths in the browser's DOM dump")
    return {"scroll_width": int(found["scroll"]), "inner_width": int(found["inner"])}


def main(argv: list[str] | None = None) -> int:
    from bench.report import render

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--out", type=Path, help="screenshot PNG (default: RUN_DIR/report-WIDTHxHEIGHT.png)")
    ap.add_argument("--width", type=int, default=1366)
    ap.add_argument("--height", type=int, default=768)
    ap.add_argument("--browser", help=f"Chromium or Chrome binary (default: the first of {', '.join(BROWSERS)} on PATH)")
    a = ap.parse_args(argv)
    browser = find_browser(a.browser)
    if browser is None:
        print(f"no Chromium found (looked for {', '.join(BROWSERS)}); on Debian: apt-get install chromium",
              file=sys.stderr)
        return 2
    page = a.run_dir / "report.html"
    page.write_text(render(a.run_dir, "html"))
    out = a.out or a.run_dir / f"report-{a.width}x{a.height}.png"
    _chromium(browser, a.width, a.height, f"--screenshot={out.resolve()}", page.resolve().as_uri())
    widths = measure(page, browser, a.width, a.height)
    fits = widths["scroll_width"] <= widths["inner_width"]
    print(f"{page}: page {widths['scroll_width']} px wide in a {widths['inner_width']} px viewport: "
          f"{'fits' if fits else 'overflows sideways'}; screenshot {out}")
    print(json.dumps({"page": str(page), "screenshot": str(out), "viewport": [a.width, a.height], **widths,
                      "fits": fits}))
    return 0 if fits else 1


if __name__ == "__main__":
    sys.exit(main())
