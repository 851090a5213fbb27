"""A job's progress on stdout: one bar redrawn in place on a terminal, else a plain line at most
every few seconds (logs and CI). Library output goes elsewhere (``jobs._console``), so this is
what a person watches."""
from __future__ import annotations

import sys
import time


class Progress:
    """``Progress("evaluate", total=40).update(done, "3.1 records/s")``; the last update (``done ==
    total``) always prints and ends the line."""

    WIDTH = 24

    def __init__(self, label: str, total: int, every_s: float = 2.0, stream=None):
        self.label, self.total, self.every_s = label, max(int(total), 0), every_s
        self.stream = stream or sys.stdout
        self.t0, self._last = time.time(), 0.0

    def update(self, done: int, extra: str = "") -> None:
        now, last = time.time(), done >= self.total
        tty = self.stream.isatty()
        if not (last or tty or now - self._last >= self.every_s):
            return
        self._last = now
        text = f"{self.label} {done}/{self.total}" + (f"  {extra}" if extra else "") + f"  {now - self.t0:.0f} s"
        if tty:
            bar = "#" * round(self.WIDTH * done / max(self.total, 1))
            print(f"\r    [{bar:<{self.WIDTH}}] {text}", end="\n" if last else "", file=self.stream, flush=True)
        else:
            print(f"    {text}", file=self.stream, flush=True)
