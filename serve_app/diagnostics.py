"""Replica-side timing diagnostics shown in ``/healthz``: event-loop lag and garbage-collector pauses.

Both are causes of playback underruns that the per-step ``stats`` cannot show: a blocked event
loop delays every session's receive and send, a full GC pause stops the step thread and the loop
alike. ``benchmarks/serve_latency.py`` reads the counters before and after a run.
"""
from __future__ import annotations

import asyncio
import gc
import time

import numpy as np


class LoopLag:
    """Samples how late the event loop wakes a task that sleeps ``interval_s`` (its lag)."""

    def __init__(self, interval_s: float = 0.02, keep: int = 3000):
        self.interval_s = interval_s
        self.samples: list[float] = []
        self.keep = keep
        self.max_ms = 0.0
        self._task: asyncio.Task | None = None

    def ensure_started(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(self.interval_s)
            lag_ms = max(0.0, (time.perf_counter() - t0 - self.interval_s) * 1000)
            self.samples.append(lag_ms)
            if len(self.samples) > self.keep:
                del self.samples[: len(self.samples) - self.keep]
            self.max_ms = max(self.max_ms, lag_ms)

    def summary(self) -> dict:
        s = self.samples
        return {"p50": round(float(np.percentile(s, 50)), 2) if s else None,
                "p99": round(float(np.percentile(s, 99)), 2) if s else None,
                "max": round(self.max_ms, 2), "samples": len(s)}


class GcPauses:
    """Counts collections and their pause times per generation (``gc.callbacks``)."""

    def __init__(self):
        self.count = [0, 0, 0]
        self.total_ms = [0.0, 0.0, 0.0]
        self.max_ms = [0.0, 0.0, 0.0]
        self._t0 = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        g = int(info.get("generation", 0))
        ms = (time.perf_counter() - self._t0) * 1000
        self.count[g] += 1
        self.total_ms[g] += ms
        self.max_ms[g] = max(self.max_ms[g], ms)

    def summary(self) -> dict:
        return {"collections": list(self.count), "pause_ms_total": [round(x, 2) for x in self.total_ms],
                "pause_ms_max": [round(x, 2) for x in self.max_ms], "frozen": gc.get_freeze_count()}
