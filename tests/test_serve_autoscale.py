"""Autoscaling on local Ray, shown rather than configured: live duplex sessions past one replica's
target bring up a second replica (Serve counts each open WebSocket as an ongoing request), the
next session lands on the new replica and streams, and once the sessions end Serve drains and
removes it, back to min_replicas. Every wait is bounded."""
from __future__ import annotations

import asyncio
import os
import time

import pytest

from jobs._common import free_port, start_local_ray
from serve_app.tiny_export import build_tiny_export
from tests.serve_util import LiveSession

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _replicas() -> dict[str, str]:
    """{replica id: state} from Serve's controller (what `serve status` reports)."""
    from ray.serve.context import _get_global_client
    dep = _get_global_client().get_serve_details()["applications"]["omni"]["deployments"]["DuplexServer"]
    return {r["replica_id"]: str(r["state"]).split(".")[-1] for r in dep["replicas"]}


async def _until(pred, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = await asyncio.to_thread(_replicas)
        if pred(got):
            return got
        await asyncio.sleep(1)
    raise AssertionError(f"{what} not reached within {timeout_s:.0f} s: {await asyncio.to_thread(_replicas)}")


def test_sessions_past_the_target_add_a_replica_and_it_is_removed_after(tmp_path):
    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ.pop("OMNI_API_TOKEN", None)
    import ray
    from ray import serve

    from serve_app.app import build_app

    export = build_tiny_export(tmp_path / "export")
    port = free_port()
    server = f"127.0.0.1:{port}"
    start_local_ray(num_cpus=2)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app({"model": str(export), "min_replicas": 1, "max_replicas": 2,
                             "target_sessions_per_replica": 1, "max_sessions_per_replica": 2,
                             "upscale_delay_s": 1, "downscale_delay_s": 5, "num_cpus": 0.5,
                             "idle_timeout_s": 120}), name="omni", route_prefix="/")

        async def scenario():
            first = set(await asyncio.to_thread(_replicas))
            a, b = await LiveSession(server, seed=1).open(), await LiveSession(server, seed=2).open()
            assert {a.ready["replica"], b.ready["replica"]} <= first          # one replica so far
            # 2 sessions > target 1 per replica: Serve adds a second replica
            running = await _until(lambda r: sum(st == "RUNNING" for st in r.values()) == 2, 300, "2 replicas")
            (new,) = set(running) - first
            c = await LiveSession(server, seed=3).open()
            assert c.ready["type"] == "ready" and c.ready["replica"] == new   # lands on the new replica
            await asyncio.sleep(3)
            for s in (a, b, c):
                s.end()
            for s in (a, b, c):
                await s.finished()
            # no sessions: Serve drains and removes the second replica, back to min_replicas
            back = await _until(lambda r: list(r.values()) == ["RUNNING"], 300, "1 replica")
            return a, b, c, back
        a, b, c, back = asyncio.run(scenario())
        for s in (a, b, c):
            assert s.close_code == 1000 and s.errors == [] and s.done is not None, (s.close_code, s.errors)
            assert s.steps == s.done["chunks"] >= 5 and s.audio > 0
            assert abs(s.audio / 2 - s.done["audio_out_s"] * 16000) <= 16      # every sample it made arrived
        assert len(back) == 1
    finally:
        serve.shutdown()
        ray.shutdown()
