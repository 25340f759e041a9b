"""Progress reporting for long loops, decoupled from the domain code.

Domain functions accept a :class:`Progress` and call ``task(description, total)`` to get an
``advance(n)`` callable. The CLI passes :class:`RichProgress`; library callers and tests get
:class:`NullProgress` by default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol


class Progress(Protocol):
    """Something that shows how far a loop has come."""

    def task(self, description: str, total: int | None) -> Callable[[int], None]:
        """Start a task and return the function that advances it by ``n`` steps."""
        ...


class NullProgress:
    """Shows nothing."""

    def task(self, description: str, total: int | None) -> Callable[[int], None]:
        """Return a no-op advance function."""
        return lambda n=1: None


class RichProgress:
    """Progress bars with counts, rates and elapsed time on the terminal (stderr)."""

    def __init__(self, progress: object) -> None:
        self._progress = progress

    def task(self, description: str, total: int | None) -> Callable[[int], None]:
        """Add a bar and return its advance function."""
        task_id = self._progress.add_task(description, total=total)  # type: ignore[attr-defined]
        return lambda n=1: self._progress.advance(task_id, n)  # type: ignore[attr-defined]


@contextmanager
def rich_progress(unit: str = "items", enabled: bool = True) -> Iterator[Progress]:
    """Context manager yielding a :class:`RichProgress` (or :class:`NullProgress` when disabled)."""
    if not enabled:
        yield NullProgress()
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as _Progress

    class _Rate(TextColumn):
        def render(self, task):  # type: ignore[no-untyped-def]
            speed = task.finished_speed or task.speed
            from rich.text import Text

            return Text(f"{speed:,.0f} {unit}/s" if speed else f"- {unit}/s", style="progress.data.speed")

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _Rate(""), TimeElapsedColumn())
    with _Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        yield RichProgress(bar)
