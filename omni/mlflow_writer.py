"""Rank-0 metric logging to an MLflow run from a separate writer process.

Ray Train V2 has no MLflow callback, so the training loop logs itself. A ``log_batch`` costs 3-7 ms
of Python on the sqlite store (more over HTTP): at ``log_every: 1`` 10-20% of a tiny model's step,
and a writer *thread* still took ~3% of the step through the GIL. So :class:`MlflowLogger` starts a
child process (``python -c _MLFLOW_WRITER``) and ``log`` only writes one JSON line to its pipe.
"""
from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import threading
import time

log = logging.getLogger("omni.train")


# The MLflow writer process: JSON lines on stdin ([step, timestamp_ms, [[key, value], ...]]), one
# line back on stdout per batch ("ok" or "error <json message>"). Exits when stdin closes.
_MLFLOW_WRITER = r"""
import json, sys
from mlflow import MlflowClient
from mlflow.entities import Metric
client, run_id = MlflowClient(sys.argv[1]), sys.argv[2]
for line in sys.stdin:
    try:
        step, ts, items = json.loads(line)
        client.log_batch(run_id, metrics=[Metric(k, v, ts, step) for k, v in items])
        reply = "ok"
    except Exception as e:
        reply = "error " + json.dumps(f"{type(e).__name__}: {e}")
    print(reply, flush=True)
"""


class MlflowLogger:
    """Logs metrics to an existing MLflow run (``spec = {"uri", "run_id"}``; None: logging off).

    The writer process starts when the logger is made, so MLflow's import overlaps the loop's
    set-up. ``flush`` waits until every batch sent is written and raises the first
    write error (a tracking store that fails still fails the run, at the next checkpoint);
    ``close`` flushes and ends the process. If the training process dies, the writer still
    writes what it was sent, then exits."""

    FLUSH_TIMEOUT_S = 300.0

    def __init__(self, spec: dict | None):
        self._proc = None
        if not (spec and spec.get("run_id")):
            return
        self.run_id = spec["run_id"]
        self._proc = subprocess.Popen([sys.executable, "-c", _MLFLOW_WRITER, spec["uri"], self.run_id],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self._sent = self._acked = 0
        self._error: str | None = None
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read_replies, args=(self._proc,), name="omni-mlflow-replies",
                                        daemon=True)
        self._reader.start()

    def log(self, metrics: dict) -> None:
        if self._proc is None:
            return
        items = [[k, float(v)] for k, v in metrics.items()
                 if k != "step" and isinstance(v, (int, float)) and math.isfinite(float(v))]
        try:
            self._proc.stdin.write(json.dumps([int(metrics["step"]), int(time.time() * 1000), items]) + "\n")
        except (BrokenPipeError, ValueError, OSError) as e:
            with self._cond:
                self._error = self._error or f"writer process gone ({type(e).__name__}: {e})"
            return
        with self._cond:
            self._sent += 1

    def _read_replies(self, proc) -> None:
        for line in proc.stdout:  # blocks without the GIL between replies
            with self._cond:
                self._acked += 1
                if line.startswith("error") and self._error is None:
                    self._error = json.loads(line[6:])
                    log.warning("MLflow logging failed: %s", self._error)
                self._cond.notify_all()
        with self._cond:  # the writer exited
            self._error = self._error or f"writer process exited (status {proc.wait()})"
            self._cond.notify_all()

    def flush(self) -> None:
        if self._proc is None:
            return
        with self._cond:
            done = self._cond.wait_for(lambda: self._acked >= self._sent or self._error is not None,
                                       timeout=self.FLUSH_TIMEOUT_S)
            error = self._error
        if error or not done:
            raise RuntimeError(f"MLflow logging to run {self.run_id} failed: "
                               f"{error or f'no reply within {self.FLUSH_TIMEOUT_S:.0f} s'}")

    def close(self) -> None:
        if self._proc is None:
            return
        try:
            self.flush()
        finally:
            self.abort(wait_s=60)

    def abort(self, wait_s: float = 0) -> None:
        """End the writer without waiting for replies: it still writes what it was sent."""
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        try:
            proc.stdin.close()
        except OSError:
            pass
        if wait_s:
            try:
                proc.wait(timeout=wait_s)
            except Exception:  # noqa: BLE001 - never hang the end of a run on the logger
                proc.kill()
