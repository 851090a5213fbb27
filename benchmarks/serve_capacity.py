"""Capacity: the most concurrent real-time duplex sessions one replica on one core holds with 0 underruns.

    .venv/bin/python benchmarks/serve_capacity.py [--seconds 30] [--max-level 10] [--model EXPORT] [--no-pin]

One replica (``serve.num_cpus`` 1, one torch thread) of a local Serve app, pinned to one CPU core
(all of its threads; the proxy and the clients run on the other cores), serves N sessions at
once, for N = 1, 2, 3, ...: N clients start at random phases within one chunk and stream
``--seconds`` of audio in real time (20 ms frames), each playing its reply with a 100 ms
prebuffer. A level passes with 0 underruns and 0 errors; the capacity is the highest N such that
it and every level below it passed (the ramp stops two levels after the first failure). Per
level: latency p50/p99 (each session's first step excluded), underruns, errors, the replica's mean
batch size and step time, the load average. The default ``serve.max_sessions_per_replica`` is set
from this figure for the tiny model (``goal_met_default_cap_within_capacity``); the target is one
session below it, so that Serve adds a replica before the running ones are full.
``--model`` measures another export (e.g. one trained from a CPU duplex config). Last line: JSON.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.serve_latency import _health
from jobs._common import free_port, start_local_ray
from omni.config import ServeConfig
from serve_app.client import stream_async
from serve_app.tiny_export import build_tiny_export, demo_wave


def pin_process(pid: int, cpu: int) -> int:
    """Pin every thread of ``pid`` (threads it starts later inherit it) to ``cpu``; returns how many."""
    n = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), {cpu})
            n += 1
        except OSError:
            pass
    return n


async def level(base: str, n: int, seconds: float, chunk_ms: float, rng: random.Random) -> list[dict]:
    async def one(i, delay):
        await asyncio.sleep(delay)
        try:
            return await stream_async(f"ws://{base}/v1/duplex", demo_wave(seconds, seed=500 + i), realtime=True,
                                      timeout_s=60)
        except Exception as e:  # noqa: BLE001 - an error is a result
            return {"latencies_ms": [], "steps": [], "underruns": 0, "close_code": None, "errors": [repr(e)]}
    delays = [rng.uniform(0, chunk_ms / 1000) + 0.1 * i for i in range(n)]
    return await asyncio.gather(*[one(i, d) for i, d in enumerate(delays)])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--max-level", type=int, default=12)
    ap.add_argument("--model", default=None, help="export folder (default: the tiny random-weight export)")
    ap.add_argument("--name", default=None, help="label of the model in the output (default: tiny or the folder)")
    ap.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin the replica to one core")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.pop("OMNI_API_TOKEN", None)
    import ray
    from ray import serve

    from serve_app.app import build_app

    rng = random.Random(a.seed)
    port = free_port()
    base = f"127.0.0.1:{port}"
    rows: list[dict] = []
    pinned = None
    start_local_ray(num_cpus=2)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        with tempfile.TemporaryDirectory() as tmp:
            model = a.model or str(build_tiny_export(Path(tmp) / "export"))
            serve.run(build_app({"model": model, "num_cpus": 1, "max_sessions_per_replica": a.max_level + 4,
                                 "target_sessions_per_replica": 1, "idle_timeout_s": 60}),
                      name="omni", route_prefix="/")
            h = _health(base)
            cpus = sorted(os.sched_getaffinity(0))
            if a.pin and len(cpus) >= 2:
                pin_process(h["pid"], cpus[-1])
                os.sched_setaffinity(0, set(cpus[:-1]))        # the clients stay off the replica's core
                pinned = cpus[-1]
            failures = 0
            for n in range(1, a.max_level + 1):
                h0 = _health(base)
                t0 = time.perf_counter()
                res = asyncio.run(asyncio.wait_for(level(base, n, a.seconds, h["chunk_ms"], rng), a.seconds + 120))
                h1 = _health(base)
                lat = [x for r in res for x in r["latencies_ms"][1:]]
                steps = [st for r in res for st in r.get("steps", [])[1:]]
                batches = h1["batches"] - h0["batches"]
                row = {"sessions": n, "steps": len(lat), "underruns": int(sum(r["underruns"] for r in res)),
                       "errors": int(sum(1 for r in res if r["errors"] or r["close_code"] != 1000)),
                       "latency_ms_p50": round(float(np.percentile(lat, 50)), 1) if lat else None,
                       "latency_ms_p99": round(float(np.percentile(lat, 99)), 1) if lat else None,
                       "step_ms_p50": round(float(np.percentile([s["step_ms"] for s in steps], 50)), 1) if steps else None,
                       "mean_batch_size": round((h1["batched_sessions"] - h0["batched_sessions"]) / batches, 2)
                       if batches else None,
                       "load_avg_1min": round(os.getloadavg()[0], 2), "wall_s": round(time.perf_counter() - t0, 1)}
                row["passed"] = row["underruns"] == 0 and row["errors"] == 0
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
                failures += not row["passed"]
                if failures >= 2:
                    break
    finally:
        serve.shutdown()
        ray.shutdown()
    capacity = 0
    for r in rows:
        if not r["passed"]:
            break
        capacity = r["sessions"]
    default = ServeConfig()
    result = {"model": a.name or ("tiny" if a.model is None else Path(a.model).name),
              "capacity_sessions_one_core": capacity, "levels": rows, "seconds_per_level": a.seconds,
              "replica_pinned_to_cpu": pinned,
              "default_max_sessions_per_replica": default.max_sessions_per_replica,
              "default_target_sessions_per_replica": default.target_sessions_per_replica,
              "cpu_count": os.cpu_count(), "load_avg_1min": round(os.getloadavg()[0], 2)}
    if a.model is None:          # the defaults are set from the tiny model's figure
        result["goal_met_default_cap_within_capacity"] = 0 < default.max_sessions_per_replica <= capacity
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
