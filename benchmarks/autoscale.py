"""Autoscaling under real duplex load: Serve adds replicas as sessions rise, drains and removes them as they fall.

    .venv/bin/python benchmarks/autoscale.py [--max-sessions 3] [--target 2] [--peak 7] [--ramp-s 6]
        [--hold-s 45] [--plateau-s 60] [--settle-s 150] [--num-cpus 0.5] [--mlflow-uri URI]

A local Ray + Serve runs the duplex app (tiny random-weight export) with ``min_replicas`` 1 and
``max_replicas`` 3, ``serve.target_sessions_per_replica`` = ``--target`` and
``serve.max_sessions_per_replica`` = ``--max-sessions``. Real-time duplex sessions (20 ms PCM16
frames, each streaming until the schedule ends it) follow this schedule:

1. ramp up: one more session every ``--ramp-s`` up to ``--peak`` (default 7, past two replicas'
   capacity of 2 x 3), hold ``--hold-s`` and until Serve runs the replicas the load asks for
   (at most ``--max-wait-s``: a replica's start takes from seconds on an idle machine to minutes
   on a loaded one);
2. ramp down, oldest session first, to ``--target`` sessions and hold ``--plateau-s`` and until
   Serve has removed a replica (at most ``--max-wait-s``): Serve scales in while sessions are still
   live, and the replica it removes is *drained* (no new sessions, the live ones carry on) rather
   than killed;
3. ramp down to 0 and wait (up to ``--settle-s``) for the replicas to return to ``min_replicas``.

A refused session (close 1013, every replica full) retries with the client's backoff
(``serve_app.client.backoff_s``) and is counted. Every second it records: live sessions, replicas
by state from Serve's own status (``serve.status()``: RUNNING / STARTING / STOPPING) and target,
Serve's own ongoing-request count (the Prometheus gauges ``ray_serve_autoscaling_total_requests``
and ``ray_serve_replica_processing_queries`` from the node's metrics agent: a live WebSocket is one
ongoing request), the sessions on replicas that are draining, chunk latency p50/p99 of the steps
that arrived in that second and playback underruns (100 ms prebuffer). Writes
``benchmarks/results/autoscale.json`` (the series) and ``autoscale.png``, logs both to MLflow when
a tracking URI is set (``--mlflow-uri`` or ``$MLFLOW_TRACKING_URI``); last line: one JSON object.
Latency here is a record, not a goal: three replicas share this machine's cores.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jobs._common import free_port, start_local_ray
from serve_app.client import Playback, backoff_s
from serve_app.protocol import SAMPLE_RATE_HZ, float_to_pcm16
from serve_app.tiny_export import build_tiny_export, demo_wave

APP, DEPLOYMENT = "omni", "DuplexServer"
FRAME = 320                                    # 20 ms


class Live:
    """One real-time duplex session that streams until :meth:`end` is called."""

    def __init__(self, base: str, idx: int, wave: np.ndarray, t0: float):
        self.url, self.idx, self.wave, self.t0 = f"ws://{base}/v1/duplex", idx, wave, t0
        self.replica = None
        self.refused = 0
        self.opened_s = self.closed_s = None
        self.close_code = None
        self.errors: list = []
        self.done = None
        self.steps: list[tuple[float, float]] = []      # (time since t0, latency ms)
        self.underrun_s: list[float] = []
        self.chunks_sent = 0
        self._stop = asyncio.Event()

    def end(self) -> None:
        self._stop.set()

    @property
    def live(self) -> bool:
        return self.opened_s is not None and self.closed_s is None

    async def run(self) -> Live:
        import websockets
        attempt = 0
        while True:                                    # admission, with the client's backoff on 1013
            ws = await websockets.connect(self.url, max_size=2 ** 24, open_timeout=60)
            first = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if first.get("type") == "ready":
                break
            await ws.close()
            if first.get("code") != 1013 or self._stop.is_set():
                self.errors.append(first)
                self.closed_s = time.monotonic() - self.t0
                return self
            self.refused += 1
            await asyncio.sleep(backoff_s(attempt, first.get("retry_after_ms")))
            attempt += 1
        self.replica, self.opened_s = first["replica"], time.monotonic() - self.t0
        chunk = round(first["chunk_ms"] * SAMPLE_RATE_HZ / 1000)
        sent_at: dict[int, float] = {}
        play = Playback(100.0)

        async def sender():
            start, i, sent = time.monotonic(), 0, 0
            while not self._stop.is_set():
                await asyncio.sleep(max(0.0, start + i * FRAME / SAMPLE_RATE_HZ - time.monotonic()))
                pos = (i * FRAME) % (self.wave.size - FRAME)
                await ws.send(float_to_pcm16(self.wave[pos:pos + FRAME]))
                i += 1
                for c in range(sent // chunk, (sent + FRAME) // chunk):
                    sent_at[c] = time.monotonic()
                sent += FRAME
            self.chunks_sent = sent // chunk
            await ws.send(json.dumps({"type": "end"}))

        async def receiver():
            pending = None
            try:
                async for msg in ws:
                    now = time.monotonic()
                    if isinstance(msg, bytes):
                        if play.add(now, len(msg) // 2):
                            self.underrun_s.append(now - self.t0)
                        if pending is not None and pending in sent_at:
                            self.steps.append((now - self.t0, (now - sent_at[pending]) * 1000))
                        pending = None
                        continue
                    ev = json.loads(msg)
                    if ev["type"] == "stats":
                        pending = ev["chunk_index"]
                        if ev.get("audio_bytes", 0) == 0 and pending in sent_at:
                            self.steps.append((now - self.t0, (now - sent_at[pending]) * 1000))
                            pending = None
                    elif ev["type"] == "error":
                        self.errors.append(ev)
                    elif ev["type"] == "done":
                        self.done = ev
            except websockets.ConnectionClosed:
                pass

        send_task = asyncio.create_task(sender())
        try:
            await receiver()
        finally:
            send_task.cancel()
            await asyncio.gather(send_task, return_exceptions=True)
            self.close_code = ws.close_code
            self.closed_s = time.monotonic() - self.t0
        return self


def metrics_url() -> str | None:
    import ray
    port = getattr(ray._private.worker.global_worker.node, "metrics_export_port", None)
    return f"http://127.0.0.1:{port}/metrics" if port else None


def serve_metrics(url: str | None) -> dict:
    """Serve's own gauges from the node's Prometheus endpoint (empty when unavailable)."""
    if url is None:
        return {}
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out: dict = {"per_replica": {}}
    for line in text.splitlines():
        if line.startswith("ray_serve_autoscaling_total_requests{") and f'deployment="{DEPLOYMENT}"' in line:
            out["autoscaling_total_requests"] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("ray_serve_replica_processing_queries{") and f'deployment="{DEPLOYMENT}"' in line:
            m = re.search(r'replica="([^"]+)"', line)
            if m:
                out["per_replica"][m.group(1)] = float(line.rsplit(" ", 1)[1])
    return out


def serve_replicas() -> tuple[dict, dict, int]:
    """({replica id: state}, {state: count}, target) from Serve's controller."""
    from ray.serve.context import _get_global_client
    details = _get_global_client().get_serve_details()
    dep = details["applications"][APP]["deployments"][DEPLOYMENT]
    by_id = {r["replica_id"]: str(r["state"]).split(".")[-1] for r in dep["replicas"]}
    counts: dict[str, int] = {}
    for st in by_id.values():
        counts[st] = counts.get(st, 0) + 1
    return by_id, counts, int(dep["target_num_replicas"])


def _plot(series: list[dict], path: Path, target: float) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t_s"] for r in series]
    fig, (a, b, c) = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    a.plot(t, [r["sessions"] for r in series], label="live sessions")
    a.plot(t, [r["replicas_running"] for r in series], label="replicas RUNNING", drawstyle="steps-post")
    a.plot(t, [r["replicas_stopping"] for r in series], label="replicas STOPPING (draining)", drawstyle="steps-post")
    a.plot(t, [r["draining_sessions"] for r in series], label="sessions on draining replicas", ls=":")
    if any(r.get("serve_ongoing_requests") is not None for r in series):
        a.plot(t, [r.get("serve_ongoing_requests") for r in series], label="Serve ongoing requests", ls="--")
    a.set(ylabel="count", title=f"Autoscaling under duplex load (target {target:g} sessions/replica)")
    a.legend(fontsize=7, loc="upper left")
    b.plot(t, [r["latency_ms_p50"] for r in series], label="p50")
    b.plot(t, [r["latency_ms_p99"] for r in series], label="p99")
    b.set(ylabel="chunk latency (ms)")
    b.legend(fontsize=7)
    c.bar(t, [r["underruns"] for r in series], width=1.0)
    c.set(xlabel="seconds", ylabel="underruns")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


async def scenario(base: str, a, wave: np.ndarray) -> tuple[list[Live], list[dict]]:
    t0 = time.monotonic()
    sessions: list[Live] = []
    tasks: list[asyncio.Task] = []
    series: list[dict] = []
    murl = metrics_url()
    stop_sampling = asyncio.Event()
    seen_steps = {}

    def open_one():
        s = Live(base, len(sessions), wave, t0)
        sessions.append(s)
        tasks.append(asyncio.create_task(s.run()))

    def close_oldest():
        for s in sessions:
            if not s._stop.is_set():
                s.end()
                return

    async def sampler():
        while not stop_sampling.is_set():
            tick = time.monotonic()
            by_id, counts, target = await asyncio.to_thread(serve_replicas)
            sm = await asyncio.to_thread(serve_metrics, murl)
            now = tick - t0
            lat, under = [], 0
            for s in sessions:
                k = seen_steps.get(s.idx, 0)
                lat += [x for _, x in s.steps[k:]]
                seen_steps[s.idx] = len(s.steps)
                under += sum(1 for u in s.underrun_s if now - 1 < u <= now)
            live = [s for s in sessions if s.live]
            per_replica: dict[str, int] = {}
            for s in live:
                per_replica[s.replica] = per_replica.get(s.replica, 0) + 1
            series.append({
                "t_s": round(now, 2), "sessions": len(live), "replicas_running": counts.get("RUNNING", 0),
                "replicas_starting": counts.get("STARTING", 0), "replicas_stopping": counts.get("STOPPING", 0),
                "replicas_target": target, "replica_states": by_id, "sessions_per_replica": per_replica,
                "draining_sessions": sum(n for r, n in per_replica.items() if by_id.get(r) == "STOPPING"),
                "draining_session_ids": [s.idx for s in live if by_id.get(s.replica) == "STOPPING"],
                "serve_ongoing_requests": sm.get("autoscaling_total_requests"),
                "serve_processing_queries": sm.get("per_replica") or None,
                "latency_ms_p50": round(float(np.percentile(lat, 50)), 1) if lat else None,
                "latency_ms_p99": round(float(np.percentile(lat, 99)), 1) if lat else None,
                "underruns": under, "refused_total": sum(s.refused for s in sessions)})
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))

    async def hold(min_s: float, done) -> None:
        start = time.monotonic()
        await asyncio.sleep(min_s)
        while series and not done(series[-1]) and time.monotonic() - start < a.max_wait_s:
            await asyncio.sleep(1)

    wanted = min(a.max_replicas, math.ceil(a.peak / a.target))
    sampling = asyncio.create_task(sampler())
    while len(sessions) < a.peak:                                   # 1. ramp up, hold
        open_one()
        await asyncio.sleep(a.ramp_s)
    await hold(a.hold_s, lambda r: r["replicas_running"] >= wanted and r["sessions"] == a.peak)
    top = max(r["replicas_running"] for r in series)
    while sum(1 for s in sessions if not s._stop.is_set()) > a.target:   # 2. down to the plateau
        close_oldest()
        await asyncio.sleep(a.ramp_s)
    await hold(a.plateau_s, lambda r: r["replicas_running"] < top)
    await asyncio.sleep(10)                                         # a draining replica keeps serving
    while any(not s._stop.is_set() for s in sessions):              # 3. down to 0
        close_oldest()
        await asyncio.sleep(a.ramp_s)
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    deadline = time.monotonic() + a.settle_s
    while time.monotonic() < deadline:                              # replicas back to min?
        await asyncio.sleep(2)
        last = series[-1] if series else {}
        if last.get("replicas_running") == a.min_replicas and not last.get("replicas_stopping") \
                and not last.get("replicas_starting"):
            break
    await asyncio.sleep(2)
    stop_sampling.set()
    await sampling
    return sessions, series


def summarize(sessions: list[Live], series: list[dict], a) -> dict:
    ok = [s for s in sessions if s.close_code == 1000 and s.done is not None and not s.errors]
    bad = [s for s in sessions if s not in ok]
    # every chunk the client completed got its step
    missing = sum(max(0, s.chunks_sent - len(s.steps)) for s in ok)
    peak_replicas = max((r["replicas_running"] for r in series), default=0)
    first_scale = next((r for r in series if r["replicas_running"] > 1), None)
    over_target_s = next((r["t_s"] for r in series if r["sessions"] > a.target), None)
    end = series[-1] if series else {}
    fell = end.get("replicas_running") == a.min_replicas and not end.get("replicas_stopping")
    # drained replicas: sessions that were live on a STOPPING replica, and how they ended
    drained_ids = sorted({i for r in series for i in r["draining_session_ids"]})
    drained = [sessions[i] for i in drained_ids]
    drained_stopping = sorted({rid for r in series for rid, st in r["replica_states"].items()
                               if st == "STOPPING" and r["sessions_per_replica"].get(rid)})
    # new replicas: for each replica first seen RUNNING after the start, does the next session opened
    # after that moment land on it?
    first_running: dict[str, float] = {}
    for r in series:
        for rid, st in r["replica_states"].items():
            if st == "RUNNING":
                first_running.setdefault(rid, r["t_s"])
    initial = {rid for rid, t in first_running.items() if t <= series[0]["t_s"]} if series else set()
    landed = []
    for rid, t in sorted(first_running.items(), key=lambda kv: kv[1]):
        if rid in initial:
            continue
        nxt = min((s for s in sessions if s.opened_s is not None and s.opened_s >= t), key=lambda s: s.opened_s,
                  default=None)
        if nxt is not None:
            landed.append(nxt.replica == rid)
    lat = [x for s in sessions for _, x in s.steps[1:]]
    ongoing = [r["serve_ongoing_requests"] for r in series if r["serve_ongoing_requests"] is not None]
    return {
        "sessions_total": len(sessions), "sessions_peak": max((r["sessions"] for r in series), default=0),
        "sessions_ok": len(ok), "sessions_dropped_or_errored": len(bad),
        "bad_sessions": [{"idx": s.idx, "close": s.close_code, "errors": s.errors[:2]} for s in bad],
        "chunks_missing": missing, "sessions_refused_1013_then_admitted": sum(1 for s in sessions if s.refused),
        "refusals_1013": sum(s.refused for s in sessions),
        "target_sessions_per_replica": a.target, "max_sessions_per_replica": a.max_sessions,
        "replicas_min": a.min_replicas, "replicas_max": a.max_replicas,
        "replicas_running_peak": peak_replicas,
        "sessions_over_target_at_s": over_target_s, "scale_out_at_s": first_scale["t_s"] if first_scale else None,
        "replicas_running_end": end.get("replicas_running"),
        "replicas_drained_with_sessions": len(drained_stopping),
        "sessions_on_draining_replicas": len(drained),
        "sessions_on_draining_replicas_closed_1000": sum(1 for s in drained if s in ok),
        "new_replicas": len(landed), "new_replicas_taking_the_next_session": sum(landed),
        "sessions_per_replica": {r: sum(1 for s in sessions if s.replica == r)
                                 for r in sorted({s.replica for s in sessions if s.replica})},
        "serve_ongoing_requests_max": max(ongoing) if ongoing else None,
        "serve_ongoing_minus_sessions_abs_max": max((abs(r["serve_ongoing_requests"] - r["sessions"])
                                                     for r in series if r["serve_ongoing_requests"] is not None),
                                                    default=None),
        "latency_ms_p50": round(float(np.percentile(lat, 50)), 1) if lat else None,
        "latency_ms_p99": round(float(np.percentile(lat, 99)), 1) if lat else None,
        "underruns": sum(len(s.underrun_s) for s in sessions),
        "duration_s": series[-1]["t_s"] if series else None,
        "goal_met_replicas_rise_above_target": bool(first_scale and over_target_s is not None
                                                    and first_scale["t_s"] >= over_target_s and peak_replicas >= 2),
        "goal_met_replicas_fall_after_ramp_down": bool(fell),
        "goal_met_no_session_dropped_or_errored": not bad and missing == 0,
        "goal_met_drained_not_killed": bool(drained) and all(s in ok for s in drained),
        "goal_met_new_sessions_on_new_replicas": bool(landed) and all(landed),
        "cpu_count": os.cpu_count(), "load_avg_1min": round(os.getloadavg()[0], 2),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-sessions", type=int, default=3, help="serve.max_sessions_per_replica")
    ap.add_argument("--target", type=float, default=2, help="serve.target_sessions_per_replica")
    ap.add_argument("--peak", type=int, default=7, help="sessions at the top of the ramp")
    ap.add_argument("--min-replicas", type=int, default=1)
    ap.add_argument("--max-replicas", type=int, default=3)
    ap.add_argument("--ramp-s", type=float, default=6.0)
    ap.add_argument("--hold-s", type=float, default=45.0)
    ap.add_argument("--plateau-s", type=float, default=60.0)
    ap.add_argument("--settle-s", type=float, default=150.0)
    ap.add_argument("--max-wait-s", type=float, default=300.0, help="longest hold waiting for Serve to scale")
    ap.add_argument("--upscale-delay-s", type=float, default=3.0)
    ap.add_argument("--downscale-delay-s", type=float, default=15.0)
    ap.add_argument("--num-cpus", type=float, default=0.5, help="CPUs per replica (3 fit this 2-core machine)")
    ap.add_argument("--model", default=None, help="export folder (default: a tiny random-weight export)")
    ap.add_argument("--mlflow-uri", default=os.environ.get("MLFLOW_TRACKING_URI"))
    a = ap.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.pop("OMNI_API_TOKEN", None)
    import ray
    from ray import serve

    from serve_app.app import build_app

    port = free_port()
    base = f"127.0.0.1:{port}"
    wave = demo_wave(30.0, seed=7)
    start_local_ray(num_cpus=math.ceil(a.max_replicas * a.num_cpus) + 1)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        with tempfile.TemporaryDirectory() as tmp:
            model = a.model or str(build_tiny_export(Path(tmp) / "export"))
            serve.run(build_app({"model": model, "min_replicas": a.min_replicas, "max_replicas": a.max_replicas,
                                 "target_sessions_per_replica": a.target, "max_sessions_per_replica": a.max_sessions,
                                 "upscale_delay_s": a.upscale_delay_s, "downscale_delay_s": a.downscale_delay_s,
                                 "num_cpus": a.num_cpus, "idle_timeout_s": 30, "max_session_s": 900}),
                      name=APP, route_prefix="/")
            sessions, series = asyncio.run(scenario(base, a, wave))
    finally:
        serve.shutdown()
        ray.shutdown()
    result = summarize(sessions, series, a)
    out_dir = REPO / "benchmarks" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "autoscale.json").write_text(json.dumps({**result, "series": series,
                                                         "args": vars(a)}, indent=1, default=str))
    _plot(series, out_dir / "autoscale.png", a.target)
    if a.mlflow_uri:
        import mlflow
        mlflow.set_tracking_uri(a.mlflow_uri)
        mlflow.set_experiment("omni-benchmarks")
        with mlflow.start_run(run_name="autoscale"):
            mlflow.log_params({k: v for k, v in vars(a).items() if k != "mlflow_uri"})
            mlflow.log_metrics({k: float(v) for k, v in result.items()
                                if isinstance(v, (int, float)) and not isinstance(v, bool)})
            mlflow.log_artifact(str(out_dir / "autoscale.png"))
            mlflow.log_artifact(str(out_dir / "autoscale.json"))
        result["mlflow_run_logged"] = True
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
