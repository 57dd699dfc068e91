"""Rich progress for training, shared by the CLI and the demo."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from storecast.forecasting.training import EpochStats


@dataclass
class TrainingProgress:
    """Callbacks for ``Trainer``: a step bar and one line per epoch."""

    progress: Progress
    task: TaskID
    console: Console
    log_epochs: bool = True  # a line per epoch, or only the bar's description

    def on_step(self, done: int, total: int) -> None:
        self.progress.update(self.task, completed=done, total=total)

    def on_epoch(self, stats: EpochStats) -> None:
        if self.log_epochs:
            mark = "[green]best[/]" if stats.improved else ""
            self.console.print(
                f"  epoch {stats.epoch:3d}  train {stats.train_loss:.4f}  "
                f"val {stats.val_loss:.4f}  {stats.seconds:6.1f}s  {mark}",
                highlight=False,
            )
        self.progress.update(
            self.task, description=f"training: epoch {stats.epoch}, val {stats.val_loss:.4f}"
        )


@contextmanager
def training_progress(console: Console, log_epochs: bool = True) -> Iterator[TrainingProgress]:
    """A live progress bar for one training run."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("training", total=None)
        yield TrainingProgress(progress, task, console, log_epochs)
