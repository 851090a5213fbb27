"""Run by tests/test_serve_slow_consumer.py inside a loopback-only network namespace whose TCP send
buffers are capped (net.ipv4.tcp_wmem max 64 KiB), so that a client that stops reading fills them in
seconds rather than the minutes the default 4 MiB take. Prints one JSON line with what it saw.

One replica serves a good real-time session G and a session S whose client stops reading after
``ready`` (small receive buffer, a one-message client queue) but keeps sending audio.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs._common import free_port, start_local_ray
from serve_app.proxy_hooks import PROXY_CALLBACK, PROXY_CALLBACK_ENV
from serve_app.tiny_export import build_tiny_export
from tests.serve_util import LiveSession, pcm_frames

MAX_SEND_LAG_S = 2.0


def main() -> int:
    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ[PROXY_CALLBACK_ENV] = PROXY_CALLBACK
    import ray
    from ray import serve

    from serve_app.app import build_app

    port = free_port()
    server = f"127.0.0.1:{port}"
    out: dict = {}
    start_local_ray(num_cpus=2, env_vars={PROXY_CALLBACK_ENV: PROXY_CALLBACK}, _node_ip_address="127.0.0.1")
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        with tempfile.TemporaryDirectory() as tmp:
            serve.run(build_app({"model": str(build_tiny_export(Path(tmp) / "export")), "max_sessions_per_replica": 4,
                                 "max_send_lag_s": MAX_SEND_LAG_S, "idle_timeout_s": 60}),
                      name="omni", route_prefix="/")

            def sessions() -> int:
                with urllib.request.urlopen(f"http://{server}/healthz", timeout=30) as r:
                    return json.loads(r.read())["sessions"]

            async def scenario():
                import websockets
                good = await LiveSession(server, seed=1).open()
                step_times: list[float] = []
                t0 = time.monotonic()
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.connect(("127.0.0.1", port))
                slow = await websockets.connect(f"ws://{server}/v1/duplex", sock=sock, max_queue=1,
                                                ping_interval=None, max_size=2 ** 24)
                ready = json.loads(await slow.recv())
                frames = pcm_frames(10.0, seed=2)

                async def keep_sending():          # S talks on but never reads
                    i = 0
                    with __import__("contextlib").suppress(websockets.ConnectionClosed):
                        while True:
                            await asyncio.sleep(0.02)
                            await slow.send(frames[i % len(frames)])
                            i += 1
                talker = asyncio.ensure_future(keep_sending())

                async def watch_good():
                    seen = 0
                    while not good._task.done():
                        if good.steps > seen:
                            step_times.extend([time.monotonic() - t0] * (good.steps - seen))
                            seen = good.steps
                        await asyncio.sleep(0.05)
                watcher = asyncio.ensure_future(watch_good())
                freed_s = None
                for _ in range(600):               # until the replica has let S go (<= 60 s)
                    await asyncio.sleep(0.1)
                    if await asyncio.to_thread(sessions) == 1:
                        freed_s = time.monotonic() - t0
                        break
                await asyncio.sleep(2.0)           # G streams on alone for a while
                good.end()
                await good.finished()
                watcher.cancel()
                events, audio = [], 0
                with __import__("contextlib").suppress(websockets.ConnectionClosed):
                    while True:                    # S reads again: buffered replies, then the close
                        msg = await asyncio.wait_for(slow.recv(), 30)
                        if isinstance(msg, bytes):
                            audio += len(msg)
                        else:
                            events.append(json.loads(msg))
                talker.cancel()
                await asyncio.gather(talker, return_exceptions=True)
                return {"ready": ready["type"], "freed_after_s": freed_s, "slow_close_code": slow.close_code,
                        "slow_last_event": events[-1] if events else None, "slow_audio_bytes": audio,
                        "good_close_code": good.close_code, "good_errors": good.errors, "good_steps": good.steps,
                        "good_done_chunks": (good.done or {}).get("chunks"), "good_step_times_s": step_times,
                        "sessions_after": await asyncio.to_thread(sessions)}
            out = asyncio.run(scenario())
    finally:
        serve.shutdown()
        ray.shutdown()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
