"""Helpers shared by the Serve tests: PCM frames of the demo wave, and one WebSocket session."""
from __future__ import annotations

import asyncio
import contextlib
import json

from serve_app.protocol import float_to_pcm16
from serve_app.tiny_export import demo_wave


def pcm_frames(seconds, frame_samples=320, seed=0) -> list[bytes]:
    """The demo wave as 16-bit PCM frames of ``frame_samples`` samples."""
    w = demo_wave(seconds, seed=seed)
    return [float_to_pcm16(w[i:i + frame_samples]) for i in range(0, w.size, frame_samples)]


async def ws_session(server, frames, query="", token=None, end=True, read_timeout_s=30, max_size=2 ** 20):
    """Send ``frames`` (bytes or str) to ``/v1/duplex``, then ``end`` when asked, and read until the
    server closes: (json events, audio bytes received, close code)."""
    import websockets
    headers = {"Authorization": f"Bearer {token}"} if token else None
    events, audio = [], 0
    async with websockets.connect(f"ws://{server}/v1/duplex{query}", additional_headers=headers,
                                  max_size=max_size) as ws:
        for f in frames:
            await ws.send(f)
        if end:
            await ws.send(json.dumps({"type": "end"}))
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                msg = await asyncio.wait_for(ws.recv(), read_timeout_s)
                if isinstance(msg, bytes):
                    audio += len(msg)
                else:
                    events.append(json.loads(msg))
        return events, audio, ws.close_code


class LiveSession:
    """A real-time duplex session (20 ms frames of the demo wave, looped) that streams until
    :meth:`end`; records the ready event, steps, audio bytes, errors and how it closed."""

    def __init__(self, server, seed=0, token=None):
        self.url, self.seed, self.token = f"ws://{server}/v1/duplex", seed, token
        self.ready, self.steps, self.audio, self.errors, self.done, self.close_code = None, 0, 0, [], None, None
        self._stop = asyncio.Event()
        self._task = None

    async def open(self):
        import websockets
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        self.ws = await websockets.connect(self.url, additional_headers=headers, max_size=2 ** 24)
        self.ready = json.loads(await asyncio.wait_for(self.ws.recv(), 60))
        if self.ready.get("type") == "ready":
            self._task = asyncio.ensure_future(self._run())
        return self

    def end(self):
        self._stop.set()

    async def finished(self, timeout_s=60):
        if self._task is not None:
            await asyncio.wait_for(self._task, timeout_s)
        return self

    async def _run(self):
        import websockets
        frames = pcm_frames(10.0, seed=self.seed)

        async def send():
            t0, i = asyncio.get_running_loop().time(), 0
            while not self._stop.is_set():
                await asyncio.sleep(max(0.0, t0 + i * 0.02 - asyncio.get_running_loop().time()))
                await self.ws.send(frames[i % len(frames)])
                i += 1
            await self.ws.send(json.dumps({"type": "end"}))

        sender = asyncio.ensure_future(send())
        try:
            async for msg in self.ws:
                if isinstance(msg, bytes):
                    self.audio += len(msg)
                    continue
                ev = json.loads(msg)
                if ev["type"] == "stats":
                    self.steps += 1
                elif ev["type"] == "error":
                    self.errors.append(ev)
                elif ev["type"] == "done":
                    self.done = ev
        except websockets.ConnectionClosed:
            pass
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            self.close_code = self.ws.close_code
