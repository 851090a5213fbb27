"""Serve under hostile traffic and replica loss: one local Serve app with 2 replicas for the module.

* Malformed WebSocket traffic (application level and raw RFC 6455 violations): each case gets its
  documented close code (docs/reliability.md) while a concurrent good session streams on, and the
  replicas free every session's state. Cases already in tests/test_serve.py (odd byte count, plain
  text, frame over ``max_frame_bytes``, wrong sample rate) are not repeated.
* A replica SIGKILLed during live sessions: its clients get an error event and close 1012 within
  seconds (proxy hook ``serve_app.proxy_hooks``), the other replica's sessions finish with every
  chunk and no error, and a session opened right after the kill succeeds.
The replica-kill test runs last: it leaves one replica restarting.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import socket
import struct
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from jobs._common import free_port, start_local_ray
from serve_app.proxy_hooks import PROXY_CALLBACK, PROXY_CALLBACK_ENV
from serve_app.tiny_export import build_tiny_export
from tests.serve_util import pcm_frames, ws_session

REPO = Path(__file__).resolve().parents[1]
CHUNK_BYTES = 6400 * 2                 # one step's assistant audio (10 units x 640 samples, PCM16)



@pytest.fixture(scope="module")
def server(tmp_path_factory):
    os.environ["RAY_AUTH_MODE"] = "disabled"                       # explicit (see ENVIRONMENT.md)
    os.environ.pop("OMNI_API_TOKEN", None)
    os.environ[PROXY_CALLBACK_ENV] = PROXY_CALLBACK                 # read by the proxy at start-up
    import ray
    from ray import serve

    from serve_app.app import build_app

    export = build_tiny_export(tmp_path_factory.mktemp("rel") / "export")
    port = free_port()
    start_local_ray(num_cpus=2, env_vars={PROXY_CALLBACK_ENV: PROXY_CALLBACK})
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app({"model": str(export), "min_replicas": 2, "max_replicas": 2, "num_cpus": 0.5,
                             "max_sessions_per_replica": 8, "idle_timeout_s": 5, "max_frame_bytes": 16000,
                             "max_session_s": 120}), name="omni", route_prefix="/")
        yield f"127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()
        os.environ.pop(PROXY_CALLBACK_ENV, None)


def _health(server) -> dict:
    with urllib.request.urlopen(f"http://{server}/healthz", timeout=30) as r:
        return json.loads(r.read())


def _replica_sessions(server, tries=12) -> dict[str, int]:
    """Open sessions per replica, from /healthz answers (the router picks a replica per request)."""
    seen = {}
    for _ in range(tries):
        h = _health(server)
        seen[h["replica"]] = h["sessions"]
    return seen


class Live:
    """A duplex session streamed in real time; records its events, audio and how it ended."""

    def __init__(self, server, seconds, seed):
        self.url, self.frames = f"ws://{server}/v1/duplex", pcm_frames(seconds, seed=seed)
        self.ready, self.stats, self.errors, self.audio = None, [], [], 0
        self.arrivals: list[float] = []
        self.close_code, self.closed_at, self.done = None, None, None
        self.ws = None

    async def open(self):
        import websockets
        self.ws = await websockets.connect(self.url, max_size=2 ** 24)
        self.ready = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
        assert self.ready["type"] == "ready" and self.ready["pid"] and self.ready["replica"]
        return self

    async def run(self):
        import websockets
        ws = self.ws

        async def send():
            t0 = time.monotonic()
            for i, f in enumerate(self.frames):
                await asyncio.sleep(max(0.0, t0 + i * 0.02 - time.monotonic()))
                await ws.send(f)
            await ws.send(json.dumps({"type": "end"}))

        sender = asyncio.create_task(send())
        try:
            while True:
                msg = await asyncio.wait_for(ws.recv(), 30)
                self.arrivals.append(time.monotonic())
                if isinstance(msg, bytes):
                    self.audio += len(msg)
                    continue
                ev = json.loads(msg)
                if ev["type"] == "stats":
                    self.stats.append(ev["chunk_index"])
                elif ev["type"] == "error":
                    self.errors.append(ev)
                elif ev["type"] == "done":
                    self.done = ev
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed_at = time.monotonic()
            self.close_code = ws.close_code
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        return self


# ------------------------------------------------------------------ proxy hook, no Ray
def test_proxy_hook_closes_only_orphaned_websockets():
    from serve_app.proxy_hooks import CloseOrphanedWebSockets, middlewares

    async def drive(app, scope_type="websocket", incoming=()):
        sent, queue = [], list(incoming)

        async def receive():
            return queue.pop(0) if queue else {"type": "websocket.receive", "bytes": b"\0\0"}

        async def send(msg):
            sent.append(msg)
        err = None
        try:
            await CloseOrphanedWebSockets(app)({"type": scope_type}, receive, send)
        except RuntimeError as e:
            err = e
        return [m["type"] + (f":{m['code']}" if "code" in m else "") for m in sent], sent, err

    async def orphaned(scope, receive, send):            # what Ray's proxy does when the replica dies
        await send({"type": "websocket.accept"})
        await receive()

    async def closes(scope, receive, send):
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})

    async def client_leaves(scope, receive, send):
        await send({"type": "websocket.accept"})
        await receive()

    async def crashes(scope, receive, send):
        await send({"type": "websocket.accept"})
        raise RuntimeError("boom")

    async def http(scope, receive, send):
        await send({"type": "http.response.start", "status": 200})

    types, sent, _ = asyncio.run(drive(orphaned))
    assert types == ["websocket.accept", "websocket.send", "websocket.close:1012"]
    ev = json.loads(sent[1]["text"])
    assert ev["type"] == "error" and ev["code"] == 1012 and "replica lost" in ev["message"]
    assert asyncio.run(drive(closes))[0] == ["websocket.accept", "websocket.close:1000"]
    assert asyncio.run(drive(client_leaves, incoming=[{"type": "websocket.disconnect", "code": 1001}]))[0] == [
        "websocket.accept"]
    types, _, err = asyncio.run(drive(crashes))
    assert types[-1] == "websocket.close:1012" and str(err) == "boom"
    assert asyncio.run(drive(http, scope_type="http"))[0] == ["http.response.start"]
    assert len(middlewares()) == 1


def test_proxy_hook_ends_a_slow_consumer_without_stalling_others():
    """A client that stops reading: its send blocks (or its replies trail) past max_send_lag_s, so
    the replica is told the client left (disconnect 4003), later replies are dropped and the client
    gets error + close 4003; a second connection through the same middleware streams on meanwhile."""
    from serve_app.proxy_hooks import CloseOrphanedWebSockets

    limit = 0.3
    ready = {"type": "websocket.send", "text": json.dumps({"type": "ready", "chunk_ms": 400,
                                                            "limits": {"max_send_lag_s": limit}})}

    def stats(i, sent_s):
        return {"type": "websocket.send", "text": json.dumps({"type": "stats", "chunk_index": i,
                                                              "sent_unix_ms": sent_s * 1000})}

    def replica(n_steps, sent_at):
        """Streams ready, then stats + audio per step, until the client 'leaves'; records what
        its receive() returned, like a Serve replica behind the proxy."""
        got = []

        async def app(scope, receive, send):
            await send({"type": "websocket.accept"})
            await send(ready)

            async def listen():
                while True:
                    msg = await receive()
                    got.append(msg)
                    if msg["type"] == "websocket.disconnect":
                        return

            listener = asyncio.ensure_future(listen())
            for i in range(n_steps):
                if listener.done():
                    break
                await send(stats(i, sent_at(i)))
                await send({"type": "websocket.send", "bytes": b"\0" * 64})
                await asyncio.sleep(0.01)
            if not listener.done():                 # all steps sent: a normal end
                await send({"type": "websocket.close", "code": 1000})
                listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        return app, got

    async def client_frames():          # the client keeps sending audio
        while True:
            await asyncio.sleep(0.005)
            return {"type": "websocket.receive", "bytes": b"\0\0"}

    async def scenario():
        hook = CloseOrphanedWebSockets
        hook.close_send_timeout_s = 0.2
        # A: the client stops reading after 4 messages (its send blocks for good)
        app_a, got_a = replica(1000, lambda i: time.time())
        sent_a, stalled = [], asyncio.Event()

        async def send_a(msg):
            if len(sent_a) >= 4:
                await stalled.wait()
            sent_a.append(msg)
        # B: a normal client on the same proxy, at the same time
        app_b, got_b = replica(40, lambda i: time.time())
        sent_b = []

        async def send_b(msg):
            sent_b.append(msg)
        t0 = time.monotonic()
        a = asyncio.ensure_future(hook(app_a)({"type": "websocket"}, client_frames, send_a))
        await hook(app_b)({"type": "websocket"}, lambda: asyncio.sleep(3600), send_b)
        b_done = time.monotonic() - t0
        await asyncio.wait_for(a, 10)
        a_done = time.monotonic() - t0
        # C: reads, but its replies trail: the 6th reply leaves 2 s later than the others
        clock = {"now": 1000.0}
        app_c, got_c = replica(10, lambda i: 1000.0 if i < 5 else 1000.0 - 2.0)
        sent_c = []

        async def send_c(msg):
            sent_c.append(msg)
        await CloseOrphanedWebSockets(app_c, clock=lambda: clock["now"])({"type": "websocket"}, client_frames, send_c)
        return got_a, sent_a, got_b, sent_b, b_done, a_done, got_c, sent_c

    got_a, sent_a, _, sent_b, b_done, a_done, got_c, sent_c = asyncio.run(scenario())
    assert got_a[-1] == {"type": "websocket.disconnect", "code": 4003}      # the replica frees it
    assert len(sent_a) == 4                                                  # nothing else got through
    assert a_done < 5                                                        # bounded: limit + close timeouts
    assert len(sent_b) == 2 + 2 * 40 + 1 and b_done < a_done                 # B never waited on A
    assert sent_b[-1] == {"type": "websocket.close", "code": 1000}
    assert got_c[-1] == {"type": "websocket.disconnect", "code": 4003}
    stats_c = [json.loads(m["text"])["chunk_index"] for m in sent_c if '"stats"' in m.get("text", "")]
    assert stats_c == [0, 1, 2, 3, 4]                                        # the trailing reply is dropped
    err = json.loads(sent_c[-2]["text"])
    assert err["type"] == "error" and err["code"] == 4003 and "2.0 s" in err["message"]
    assert sent_c[-1] == {"type": "websocket.close", "code": 4003, "reason": "too slow"}


# ------------------------------------------------------------------ malformed traffic
async def _app_case(server, frames, end=False):
    """Send ``frames`` through a normal client; (close code, error events, done?)."""
    events, _, code = await ws_session(server, frames, end=end, read_timeout_s=20, max_size=2 ** 25)
    return code, [e for e in events if e["type"] == "error"], any(e["type"] == "done" for e in events)


def _frame(opcode, payload, mask=True, fin=True, rsv=0):
    """One raw RFC 6455 frame (client frames must be masked)."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    bit = 0x80 if mask else 0
    head += bytes([bit | n]) if n < 126 else bytes([bit | 126]) + struct.pack(">H", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def _raw_case(server, frames, handshake=True, wait_s=15.0):
    """Speak raw bytes to the proxy; returns (close code or None, HTTP status line, seconds to close)."""
    host, port = server.split(":")
    with socket.create_connection((host, int(port)), timeout=wait_s) as s:
        if handshake:
            key = base64.b64encode(os.urandom(16)).decode()
            s.sendall(f"GET /v1/duplex HTTP/1.1\r\nHost: {server}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
            data = b""
            while b'"ready"' not in data:                  # a real client sends after the handshake
                chunk = s.recv(65536)
                assert chunk, data
                data += chunk
        t0, data = time.monotonic(), b""
        for f in frames:
            s.sendall(f)
        with contextlib.suppress(ConnectionResetError):
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                i = data.find(b"\x88")                     # stop at a complete close frame
                if handshake and i >= 0 and len(data) >= i + 2 and len(data) >= i + 2 + (data[i + 1] & 0x7F):
                    break
        elapsed = time.monotonic() - t0
    if not handshake:
        return None, data.split(b"\r\n", 1)[0].decode(errors="replace"), elapsed
    i = data.find(b"\x88")                                 # the close frame (server frames are unmasked)
    code = struct.unpack(">H", data[i + 2:i + 4])[0] if i >= 0 and len(data) >= i + 4 else None
    return code, None, elapsed


APP_CASES = [  # (name, frames, send end, expected close code)
    ("json with an unknown type", [json.dumps({"type": "hello"})], False, 1003),
    ("json that is not an object", ["[1, 2, 3]"], False, 1003),
    ("control message with a wrong type field", [json.dumps({"type": 5})], False, 1003),
    ("huge text frame (1 MiB)", ["x" * 2 ** 20], False, 1009),
    ("message over the proxy's 16 MiB limit", [b"\0" * (17 * 2 ** 20)], False, 1009),
    ("audio after end", pcm_frames(0.4) + [json.dumps({"type": "end"})] + pcm_frames(0.2), False, 1003),
    ("binary garbage (even length) is just noise", [os.urandom(640) for _ in range(40)], True, 1000),
    ("empty binary frames are ignored", [b""] * 5 + pcm_frames(0.8), True, 1000),
    ("audio sent before reading ready, in 161-sample frames", pcm_frames(0.8, frame_samples=161), True, 1000),
]

RAW_CASES = [  # (name, frames, expected close code from the proxy)
    ("text frame that is not UTF-8", [_frame(0x1, b"\xff\xfe\xfd")], 1007),
    ("unmasked client frame", [_frame(0x2, b"\0\0", mask=False)], 1002),
    ("reserved opcode", [_frame(0x3, b"ab")], 1002),
    ("reserved bits set", [_frame(0x2, b"\0\0", rsv=0x40)], 1002),
    ("control frame over 125 bytes", [_frame(0x9, b"x" * 200)], 1002),
    ("close frame with an invalid code", [_frame(0x8, struct.pack(">H", 999))], 1002),
    ("continuation without a first frame", [_frame(0x0, b"\0\0")], 1002),
    ("text frame inside a fragmented binary message", [_frame(0x2, b"\0\0", fin=False), _frame(0x1, b"x")], 1002),
]


@pytest.mark.slow
def test_malformed_websocket_traffic_gets_its_close_code(server):
    async def scenario():
        loop = asyncio.get_running_loop()
        good = await Live(server, 4.0, seed=11).open()
        good_task = asyncio.create_task(good.run())
        # a frame header that promises 100 bytes, 60 sent: nothing to decode, the idle timeout ends it
        partial = loop.run_in_executor(None, _raw_case, server, [_frame(0x2, b"\0" * 100)[:60]])
        app = [await _app_case(server, frames, end) for _, frames, end, _ in APP_CASES]
        raw = [await loop.run_in_executor(None, _raw_case, server, frames) for _, frames, _ in RAW_CASES]
        not_http = await loop.run_in_executor(None, lambda: _raw_case(server, [b"\x16\x03\x01 TLS? \r\n\r\n"],
                                                                      handshake=False))
        # a client that vanishes mid-session (TCP reset, no close frame)
        host, port = server.split(":")
        s = socket.create_connection((host, int(port)))
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(f"GET /v1/duplex HTTP/1.1\r\nHost: {server}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        await loop.run_in_executor(None, s.recv, 65536)
        s.sendall(b"".join(_frame(0x2, f) for f in pcm_frames(0.5)))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()                                                         # RST
        return app, raw, not_http, await partial, await good_task

    app, raw, not_http, partial, good = asyncio.run(scenario())
    for (name, _, _, code), (got, errors, done) in zip(APP_CASES, app):
        assert got == code, (name, got, errors)
        if code == 1000:
            assert done and not errors, name
        elif code != 1009 or "proxy" not in name:                       # the proxy's own 1009 has no event
            assert errors and errors[-1]["code"] == code, name
    for (name, _, code), (got, _, elapsed) in zip(RAW_CASES, raw):
        assert got == code and elapsed < 5, (name, got, elapsed)
    assert not_http[1].startswith("HTTP/1.1 400"), not_http
    assert partial[0] == 4001 and 4 < partial[2] < 10, partial          # serve.idle_timeout_s = 5
    # the concurrent good session never noticed: every chunk, in order, no error
    assert good.close_code == 1000 and good.errors == [] and good.done
    assert good.stats == list(range(10)) and good.audio == 10 * CHUNK_BYTES
    # every session's state is freed on both replicas (the RST one within the idle timeout)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        counts = _replica_sessions(server)
        if len(counts) == 2 and not any(counts.values()):
            break
        time.sleep(1)
    assert len(counts) == 2 and not any(counts.values()), counts


# ------------------------------------------------------------------ replica loss
@pytest.mark.slow
def test_replica_killed_during_live_sessions(server):
    async def scenario():
        sessions: list[Live] = []
        by_pid: dict[int, list[Live]] = {}
        for i in range(12):                  # open one by one until both replicas hold two sessions
            live = await Live(server, 6.0, seed=100 + i).open()
            sessions.append(live)
            by_pid.setdefault(live.ready["pid"], []).append(live)
            if len(by_pid) == 2 and all(len(v) >= 2 for v in by_pid.values()):
                break
        assert len(by_pid) == 2, f"sessions did not spread over the 2 replicas: {list(by_pid)}"
        tasks = [asyncio.create_task(s.run()) for s in sessions]
        await asyncio.sleep(1.5)                                         # mid-stream
        victim, survivor = sorted(by_pid, key=lambda p: len(by_pid[p]))  # fewer sessions on the victim
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        await asyncio.sleep(0.2)
        fresh = await Live(server, 1.2, seed=999).open()                 # a new session right after the kill
        await asyncio.gather(*tasks, fresh.run())
        return by_pid, victim, survivor, killed_at, fresh

    by_pid, victim, survivor, killed_at, fresh = asyncio.run(scenario())
    print(json.dumps({"victim_sessions": len(by_pid[victim]), "survivor_sessions": len(by_pid[survivor]),
                      "victim_close_s": [round(s.closed_at - killed_at, 3) for s in by_pid[victim]],
                      "survivor_max_gap_s": [round(float(np.diff(s.arrivals).max()), 3) for s in by_pid[survivor]],
                      "fresh_on": "survivor" if fresh.ready["pid"] == survivor else "restarted replica"}))
    for s in by_pid[victim]:                 # clean, prompt close with a reason; never a hang
        assert s.close_code == 1012 and s.errors and s.errors[-1]["code"] == 1012, (s.close_code, s.errors)
        assert s.closed_at - killed_at < 10 and s.done is None
    for s in by_pid[survivor]:               # untouched: every chunk in order, all audio, no error, no stall
        assert s.close_code == 1000 and s.errors == [] and s.done is not None
        assert s.stats == list(range(15)) and s.audio == 15 * CHUNK_BYTES
        gaps = np.diff([t for t in s.arrivals if t > killed_at - 1])
        assert gaps.size and gaps.max() < 3.0, gaps.max()       # 0.4 s pacing; the restart competes for CPU
    assert fresh.ready["pid"] != victim and fresh.close_code == 1000 and fresh.errors == []
    assert fresh.stats == [0, 1, 2]
