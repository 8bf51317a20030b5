"""Progress of long backups and restores: a live line on a terminal, a log line now and then otherwise."""
from __future__ import annotations

import logging
import sys
import time
from typing import Iterable, Iterator

log = logging.getLogger("controlplane.backups")


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


class Progress:
    def __init__(self, label: str, total: int | None = None, stream=None, log_every: float = 10.0):
        self.label = label
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = 0.2 if self.live else log_every
        self.started = self._shown = time.monotonic()
        self.done_bytes = 0

    def advance(self, count: int) -> None:
        self.done_bytes += count
        now = time.monotonic()
        if now - self._shown >= self.every:
            self._shown = now
            self._show(now)

    def _line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-6)
        rate = self.done_bytes / elapsed
        line = f"{self.label}: {human_bytes(self.done_bytes)}"
        if self.total:
            line += f" of ~{human_bytes(self.total)}"
        line += f", {human_bytes(rate)}/s"
        if self.total and rate > 0 and self.total > self.done_bytes:
            line += f", about {int((self.total - self.done_bytes) / rate)} s left"
        return line

    def _show(self, now: float) -> None:
        if self.live:
            self.stream.write("\r" + self._line(now).ljust(78))
            self.stream.flush()
        else:
            log.info(self._line(now))

    def finish(self) -> None:
        now = time.monotonic()
        if self.live:
            self.stream.write("\r" + f"{self.label}: {human_bytes(self.done_bytes)} in {now - self.started:.1f} s".ljust(78) + "\n")
            self.stream.flush()
        else:
            log.info("%s: %s in %.1f s", self.label, human_bytes(self.done_bytes), now - self.started)


def counted(blocks: Iterable[bytes], progress: Progress | None) -> Iterator[bytes]:
    for block in blocks:
        if progress is not None:
            progress.advance(len(block))
        yield block
