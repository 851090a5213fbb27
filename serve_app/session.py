"""One ``WS /v1/duplex`` connection: checks, receive loop, step/send loop, limits, close codes.

A receiver task reads frames (validates, encodes user audio into the session) and wakes a
stepper task that steps ready chunks through the replica's batcher and sends the events. Any
error closes *this* socket with its code; the replica and other sessions carry on.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time

import numpy as np
from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from serve_app import protocol as P

SEND_TIMEOUT_S = 5.0
MAX_TEXT_FRAME_CHARS = 1024      # control messages are tiny; a bigger text frame is refused unparsed (1009)
log = logging.getLogger("ray.serve")


class _Close(Exception):
    def __init__(self, code: int, message: str, **extra):
        super().__init__(message)
        self.code, self.message, self.extra = code, message, extra


async def _send_json(ws: WebSocket, obj: dict) -> None:
    await asyncio.wait_for(ws.send_text(json.dumps(obj)), SEND_TIMEOUT_S)


async def _close(ws: WebSocket, code: int, message: str, **extra) -> None:
    if ws.application_state != WebSocketState.CONNECTED or ws.client_state != WebSocketState.CONNECTED:
        return
    try:
        if code != P.CLOSE_NORMAL:
            await _send_json(ws, {"type": "error", "code": code, "message": message, **extra})
        await ws.close(code=code, reason=message.encode()[:120].decode(errors="ignore"))
    except Exception as e:  # noqa: BLE001 - the peer is gone already
        log.debug("close %d not delivered: %r", code, e)


def _precheck(server, ws: WebSocket) -> None:
    q = ws.query_params
    if not P.check_token(ws.headers.get("authorization"), q.get("token"), server.token):
        raise _Close(P.CLOSE_POLICY, "missing or wrong API token: send 'Authorization: Bearer TOKEN' or ?token=TOKEN")
    if not P.origin_allowed(ws.headers.get("origin"), ws.headers.get("host"), server.extras.get("allowed_origins")):
        raise _Close(P.CLOSE_POLICY, f"origin {ws.headers.get('origin')!r} not allowed (serve allowed_origins)")
    sr = q.get("sample_rate_hz")
    if sr is not None and sr != str(P.SAMPLE_RATE_HZ):
        raise _Close(P.CLOSE_UNSUPPORTED, f"sample_rate_hz={sr} is not supported: send 16000 Hz mono PCM16")
    if len(server.sessions) >= server.s.max_sessions_per_replica:
        # Serve's router sends a session here only when no replica has fewer sessions
        # (serve_app.routing), so this replica being full means every replica is.
        raise _Close(P.CLOSE_TRY_AGAIN, f"all replicas are full ({server.s.max_sessions_per_replica} sessions "
                                        f"each): retry in {server.s.retry_after_ms / 1000:g} s",
                     retry_after_ms=server.s.retry_after_ms)


async def run_session(server, ws: WebSocket) -> None:
    await ws.accept()
    try:
        _precheck(server, ws)
    except _Close as c:
        log.info("refused session: %s (close %d)", c.message, c.code)
        await _close(ws, c.code, c.message, **c.extra)
        return
    engine, limits = server.engine, server.s
    sid = server.next_id
    server.next_id += 1
    session = engine.session(seed=sid)
    server.sessions[sid] = session
    wake = asyncio.Event()
    state = {"end": False, "started": time.monotonic()}
    max_backlog_chunks = max(2, int(server.extras.get("max_backlog_s", 10.0) * 1000 / engine.chunk_ms))
    # Received audio is encoded when it can complete the next chunk, not frame by frame: one push
    # per chunk (plus one per frame while the encoder's look-ahead is short) costs 0.75 ms of CPU per
    # second of audio instead of 5.9 ms (20 ms frames), all of it on the event loop every session
    # shares. Only the nominal chunk length is used, not the tokenizer's internals.
    chunk_samples = max(1, round(engine.chunk_ms * P.SAMPLE_RATE_HZ / 1000))
    inbox: list = []
    audio = {"in": 0}

    def encode_pending() -> None:
        if inbox:
            session.push(inbox[0] if len(inbox) == 1 else np.concatenate(inbox))
            inbox.clear()

    async def receiver():
        while True:
            left = limits.max_session_s - (time.monotonic() - state["started"])
            if left <= 0:
                raise _Close(P.CLOSE_MAX_DURATION, f"session reached serve.max_session_s={limits.max_session_s:.0f} s")
            try:
                msg = await asyncio.wait_for(ws.receive(), min(limits.idle_timeout_s, left))
            except TimeoutError:
                if time.monotonic() - state["started"] >= limits.max_session_s:
                    continue
                raise _Close(P.CLOSE_IDLE, f"no audio for serve.idle_timeout_s={limits.idle_timeout_s:.0f} s") from None
            if msg["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(msg.get("code", 1000))
            data, text = msg.get("bytes"), msg.get("text")
            if data is not None:
                if len(data) > limits.max_frame_bytes:
                    raise _Close(P.CLOSE_TOO_BIG, f"frame of {len(data)} bytes over serve.max_frame_bytes="
                                                  f"{limits.max_frame_bytes}: send smaller frames (e.g. 20 ms = 640 bytes)")
                try:
                    pcm = P.pcm16_to_float(data)
                except P.ProtocolError as e:
                    raise _Close(e.code, e.message) from None
                if state["end"]:
                    raise _Close(P.CLOSE_UNSUPPORTED, "audio after {\"type\": \"end\"}")
                inbox.append(pcm)
                audio["in"] += pcm.size
                if audio["in"] < (session.chunk_index + session.ready_chunks + 1) * chunk_samples:
                    continue                       # cannot complete a chunk yet
                encode_pending()
                if session.ready_chunks > max_backlog_chunks:
                    raise _Close(P.CLOSE_TOO_SLOW, f"over {server.extras.get('max_backlog_s', 10.0)} s of audio waiting: "
                                                   "the client sends faster than real time or reads too slowly")
                wake.set()
            elif text is not None:
                if len(text) > MAX_TEXT_FRAME_CHARS:
                    raise _Close(P.CLOSE_TOO_BIG, f"text frame of {len(text)} characters: the only control message "
                                                  "is {\"type\": \"end\"}")
                try:
                    ctl = json.loads(text)
                except ValueError:
                    ctl = None
                if not isinstance(ctl, dict) or ctl.get("type") != "end":
                    raise _Close(P.CLOSE_UNSUPPORTED, "text frames must be the control message {\"type\": \"end\"}; "
                                                      "audio goes in binary PCM16 frames")
                encode_pending()
                state["end"] = True
                wake.set()

    async def stepper():
        while True:
            await wake.wait()
            wake.clear()
            while session.ready_chunks:
                ready_at = time.monotonic()
                events, queue_ms = await server.batcher.step(session)
                audio = b""
                for e in events:
                    if e["type"] == "audio":
                        audio += P.float_to_pcm16(e["pcm"])
                    elif e["type"] == "stats":
                        e = dict(e, queue_ms=round(queue_ms, 3), audio_bytes=len(audio),
                                 server_ms=round((time.monotonic() - ready_at) * 1000, 3),
                                 sent_unix_ms=round(time.time() * 1000, 1))
                        await _send_json(ws, e)           # stats, then this step's audio
                        if audio:
                            await asyncio.wait_for(ws.send_bytes(audio), SEND_TIMEOUT_S)
                    else:
                        await _send_json(ws, e)
            if state["end"]:
                tail = b"".join(P.float_to_pcm16(e["pcm"]) for e in session.flush())
                if tail:
                    await asyncio.wait_for(ws.send_bytes(tail), SEND_TIMEOUT_S)
                await _send_json(ws, {"type": "done", "chunks": session.chunk_index,
                                      "audio_in_s": round(session.samples_in / P.SAMPLE_RATE_HZ, 3),
                                      "audio_out_s": round(session.samples_out / P.SAMPLE_RATE_HZ, 3)})
                raise _Close(P.CLOSE_NORMAL, "done")

    await _send_json(ws, {"type": "ready", "session_id": sid, "sample_rate_hz": P.SAMPLE_RATE_HZ,
                          "speech_chunk": engine.speech_chunk, "text_chunk": engine.text_chunk,
                          "chunk_ms": engine.chunk_ms, "stage": engine.stage,
                          "replica": getattr(server, "replica_id", None), "pid": getattr(server, "pid", None),
                          "limits": {"max_frame_bytes": limits.max_frame_bytes, "max_session_s": limits.max_session_s,
                                     "idle_timeout_s": limits.idle_timeout_s,
                                     "max_send_lag_s": limits.max_send_lag_s}})
    tasks = [asyncio.create_task(receiver()), asyncio.create_task(stepper())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        exc = next((t.exception() for t in done if t.exception() is not None), None)
        if isinstance(exc, _Close):
            await _close(ws, exc.code, exc.message)
        elif isinstance(exc, asyncio.TimeoutError):
            await _close(ws, P.CLOSE_TOO_SLOW, "client reads too slowly (a send took over 5 s)")
        elif exc is not None and not isinstance(exc, WebSocketDisconnect):
            await _close(ws, P.CLOSE_INTERNAL, f"internal error: {type(exc).__name__}: {exc}"[:200])
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        session.close()
        server.sessions.pop(sid, None)
