"""The terminal consoles and progress bars every command shares (a module of its own so that command modules
registered in bench/cli.py can use them without importing the CLI back)."""

from __future__ import annotations

import sys
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

# Off a terminal (CI logs, pipes) Rich would wrap tables at 80 columns; logs can be wider.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, soft_wrap=True)  # an error stays one line, however long


def progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(), console=console)


def epoch_progress(prog: Progress) -> Callable:
    """on_epoch callback for pruning.train: one bar per training phase, with loss and accuracy."""
    tasks: dict[str, int] = {}

    def on_epoch(phase: str, epoch: int, epochs: int, loss: float, acc: float | None) -> None:
        if phase not in tasks:
            tasks[phase] = prog.add_task(phase, total=epochs)
        acc_s = f"  acc {acc:.1%}" if acc is not None else ""
        prog.update(tasks[phase], completed=epoch, description=f"{phase:<14} loss {loss:.3f}{acc_s}")

    return on_epoch
