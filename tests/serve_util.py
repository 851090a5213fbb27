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
