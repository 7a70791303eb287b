"""The commands' progress bar: rich, on stderr, on terminals only."""

from __future__ import annotations

import time
from collections.abc import Callable

from .cli_errors import raise_if_signalled, stderr


class ProgressBar:
    """A rich progress bar on stderr that appears once work has run for `delay` seconds.

    Short jobs stay quiet; with stderr not a terminal (or `enabled` False, for
    --quiet) it never shows. `count` shows "done/total" and a ``note`` field
    (a task's rate) instead of a percentage. Every update first raises a
    signal that an inner callback swallowed (cli_errors.raise_if_signalled),
    so a long job stops there.
    """

    def __init__(self, enabled: bool, count: bool = False, delay: float = 1.0) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        self.enabled = enabled and stderr.is_terminal
        self.started = time.perf_counter()
        self.delay = delay
        self.shown = False
        middle = (
            [MofNCompleteColumn(), TextColumn("{task.fields[note]}")]
            if count
            else [TaskProgressColumn()]
        )
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            *middle,
            TimeRemainingColumn(),
            console=stderr,
            transient=True,
        )

    def add(
        self, description: str, total: float | None = None, completed: int = 0, visible: bool = True
    ) -> int:
        """A new task (a file, a run); its id for `update`."""
        task = self.progress.add_task(
            description, total=total, completed=completed, visible=visible, note=""
        )
        self._show_when_due()
        return task

    def remove(self, task: int) -> None:
        self.progress.remove_task(task)

    def update(self, task: int, **fields: object) -> None:
        """Set a task's fields (completed, total, note)."""
        raise_if_signalled()
        self.progress.update(task, **fields)
        self._show_when_due()

    def counter(self, task: int) -> Callable[[int, int], None]:
        """`progress(done, total)` for a job: sets the task's completed and total."""
        return lambda done, total: self.update(task, completed=done, total=total)

    def advance(self, task: int) -> None:
        self.progress.advance(task)

    def stop(self) -> None:
        if self.shown:
            self.progress.stop()

    def _show_when_due(self) -> None:
        if self.enabled and not self.shown and time.perf_counter() - self.started > self.delay:
            self.progress.start()
            self.shown = True
