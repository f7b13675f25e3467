"""Progress on long work, for the terminal: a live line on a TTY, plain lines otherwise."""

from __future__ import annotations

import time
from typing import TextIO


class ProgressPrinter:
    """Callable `progress(stage, done, total)` that keeps the user informed without flooding logs."""

    def __init__(self, stream: TextIO, min_interval: float = 0.5) -> None:
        self.stream = stream
        self.live = stream.isatty()
        self.min_interval = min_interval
        self._last = 0.0
        self._open = False

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        finished = total is not None and done >= total
        if not finished and now - self._last < self.min_interval:
            return
        self._last = now
        text = f"{stage}: {done}/{total}" if total else f"{stage}: {done}"
        if self.live:
            self.stream.write("\r\033[K" + text)
            self._open = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False
