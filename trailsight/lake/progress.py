"""How far an ingest is: files done, events read, events per second and the time left, as one plain line.

A terminal shows a live bar; flows and cron logs get one of these lines every so often instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


def duration_text(seconds: float) -> str:
    """`75` as `1:15`, `3725` as `1:02:05`.

    >>> duration_text(3725)
    '1:02:05'
    """
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_line(done: int, total: int, events: int, elapsed: float) -> str:
    """The state of a run in words; the time left assumes the remaining files are like the ones done.

    >>> progress_line(50, 200, 120_000, 10.0)
    'ingest: 50 of 200 files, 120,000 events, 12,000 events/s, about 0:30 left'
    """
    rate = events / elapsed if elapsed > 0 else 0.0
    left = f", about {duration_text(elapsed / done * (total - done))} left" if 0 < done < total else ""
    return f"ingest: {done:,} of {total:,} files, {events:,} events, {rate:,.0f} events/s{left}"


@dataclass
class ProgressLines:
    """An ingest `on_progress` callback that emits a progress line every `every` seconds; a run shorter than that
    says nothing (its summary follows at once)."""

    emit: Callable[[str], None]
    every: float = 10.0
    clock: Callable[[], float] = time.monotonic
    started: float = field(default=0.0)
    last: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.started = self.last = self.clock()

    def __call__(self, done: int, total: int, events: int) -> None:
        now = self.clock()
        if now - self.last >= self.every:
            self.last = now
            self.emit(progress_line(done, total, events, now - self.started))
