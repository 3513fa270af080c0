"""`joulebench reproduce STUDY`: a published study's matrix run end to end with the campaign runner, then its
figures and a findings table computed from the rows (docs/reproduce.md).

- `matrix`: the study's design (models x precisions x block pruning x devices) -> generated campaign files,
  trained parent checkpoints, runs (cached, resumed);
- `study`: the rows of those runs -> one study frame (precision, pruning level, device, kind of each figure);
- `findings`: the study's claims, each with a verdict computed from the frame and the numbers behind it;
- `figures`: seaborn figures (PNG + SVG) with the plotted data beside them as CSV.
"""

from __future__ import annotations


class ReproduceError(ValueError):
    """A reproduce request that cannot run as given (one line: what is wrong and what is accepted)."""


STUDIES = ("mobile-vs-fpga",)
