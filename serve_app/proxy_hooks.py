"""Ray Serve HTTP-proxy hook for duplex WebSockets: lost replicas and slow consumers.

The proxy is the only process that sees both ends of a session: the client's socket and the
replica's stream of replies. This pure ASGI middleware (no buffering; HTTP passes through
untouched) adds two things there:

* **Lost replica → 1012.** When a replica process dies (OOM kill, node loss, SIGKILL) the
  proxy's stream to it fails and, left alone, the proxy returns from its ASGI handler without
  closing the accepted WebSocket: uvicorn then drops the TCP connection and the client sees 1006
  (no close frame). The middleware notices "accepted, never closed, handler returned" and sends
  what the replica would have sent: an ``error`` event with code 1012 and a close frame **1012
  (service restart)**.
* **Slow consumer → 4003.** A replica's WebSocket sends never block: Serve streams every message
  to the proxy, which holds it until the client's socket takes it. A client that stops reading
  would make that backlog grow for the rest of the session, in the proxy's memory. The
  middleware bounds it: a step's reply (its ``stats`` event) may leave the proxy at most
  ``max_send_lag_s`` (the ``ready`` event's ``limits``; ``serve.max_send_lag_s``) later than the
  session's replies usually take, and no single send to the client may block longer than that.
  Otherwise the session is ended: the replica gets a client disconnect (code
  4003, it frees the session at once), the client gets ``{"type": "error", "code": 4003}`` and a
  close frame 4003 once it reads again. Replies queued behind it are dropped. Other sessions,
  on the same replica or not, never wait on it: each connection has its own coroutine here and
  the replica does not block on sends.

Enable it in the environment of the Ray node(s) that run Serve's proxies, before Ray starts::

    RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=serve_app.proxy_hooks:middlewares

(``serve_app`` must be importable there: the image, or ``PYTHONPATH`` / the runtime_env's
working_dir). Without it a lost replica reads 1006 and a slow consumer is not bounded.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import time

from serve_app.protocol import CLOSE_SERVICE_RESTART, CLOSE_TOO_SLOW

PROXY_CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
PROXY_CALLBACK = "serve_app.proxy_hooks:middlewares"
REPLICA_LOST = "replica lost: the server process of this session died; open a new session"
DEFAULT_MAX_SEND_LAG_S = 5.0
CLOSE_SEND_TIMEOUT_S = 5.0        # the error event and close frame to a client that does not read


class _Lag:
    """How far the replies forwarded to the client trail the replica that wrote them.

    Each ``stats`` event carries ``sent_unix_ms`` (the replica's clock when it was sent). The
    lowest ``now - sent`` seen in the session is the clock offset plus the bare transit time;
    the lag of a later event is how much more than that it took, so the proxy's and the replica's
    clocks need not agree, only run at the same rate.
    """

    def __init__(self, clock=time.time):
        self.clock = clock
        self.base: float | None = None
        self.limit_s = DEFAULT_MAX_SEND_LAG_S

    def on_ready(self, ev: dict) -> None:
        limit = (ev.get("limits") or {}).get("max_send_lag_s")
        if isinstance(limit, (int, float)) and limit > 0:
            self.limit_s = float(limit)

    def lag_s(self, ev: dict) -> float | None:
        sent = ev.get("sent_unix_ms")
        if not isinstance(sent, (int, float)):
            return None
        d = self.clock() - sent / 1000
        self.base = d if self.base is None else min(self.base, d)
        return d - self.base


def _event(msg: dict, kind: str) -> dict | None:
    """The JSON event in a ``websocket.send`` text message when it is of ``kind``, else None."""
    text = msg.get("text")
    if not text or f'"type": "{kind}"' not in text[:40]:
        return None
    try:
        ev = json.loads(text)
    except ValueError:
        return None
    return ev if isinstance(ev, dict) else None


class CloseOrphanedWebSockets:
    """Pure ASGI middleware for WebSocket scopes (the module docstring says what it does)."""

    close_send_timeout_s = CLOSE_SEND_TIMEOUT_S

    def __init__(self, app, clock=time.time):
        self.app = app
        self.clock = clock

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "websocket":
            await self.app(scope, receive, send)
            return
        state = {"accepted": False, "closed": False, "slow": None}
        lag = _Lag(self.clock)
        slow = asyncio.Event()
        pending: dict[str, asyncio.Future] = {}

        def too_slow(reason: str) -> None:
            if state["slow"] is None:
                state["slow"] = reason
                slow.set()

        async def tracked_receive():
            if "recv" not in pending:
                pending["recv"] = asyncio.ensure_future(receive())
            if not pending["recv"].done():
                waiter = asyncio.ensure_future(slow.wait())
                try:
                    await asyncio.wait({pending["recv"], waiter}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
            if not pending["recv"].done():       # slow consumer: tell the replica the client left
                return {"type": "websocket.disconnect", "code": CLOSE_TOO_SLOW}
            msg = pending.pop("recv").result()
            kind = msg.get("type")
            if kind == "websocket.disconnect":
                state["closed"] = True            # the client left: nothing to close
            return msg

        async def tracked_send(msg):
            kind = msg.get("type")
            if state["slow"] is not None:
                return                            # ending this session: replies behind it are dropped
            if kind == "websocket.accept":
                state["accepted"] = True
            elif kind == "websocket.close":
                state["closed"] = True
            elif kind == "websocket.send" and state["accepted"]:
                if (ev := _event(msg, "stats")) is not None:
                    late = lag.lag_s(ev)
                    if late is not None and late > lag.limit_s:
                        too_slow(f"the reply to chunk {ev.get('chunk_index')} waited {late:.1f} s for the "
                                 f"client to read (limit {lag.limit_s:g} s)")
                        return
                elif (ev := _event(msg, "ready")) is not None:
                    lag.on_ready(ev)
                try:
                    await asyncio.wait_for(send(msg), lag.limit_s)
                except TimeoutError:
                    too_slow(f"a send to the client blocked for over {lag.limit_s:g} s")
                return
            await send(msg)

        try:
            await self.app(scope, tracked_receive, tracked_send)
        finally:
            if "recv" in pending:
                pending.pop("recv").cancel()
            if state["accepted"] and not state["closed"]:
                if state["slow"] is not None:
                    code, text, reason = CLOSE_TOO_SLOW, f"client reads too slowly: {state['slow']}", "too slow"
                else:
                    code, text, reason = CLOSE_SERVICE_RESTART, REPLICA_LOST, "replica lost"
                with contextlib.suppress(Exception):  # the client may be gone as well
                    await asyncio.wait_for(send({"type": "websocket.send", "text": json.dumps(
                        {"type": "error", "code": code, "message": text})}), self.close_send_timeout_s)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(send({"type": "websocket.close", "code": code, "reason": reason}),
                                           self.close_send_timeout_s)


def middlewares() -> list:
    """The callback named by ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``."""
    from starlette.middleware import Middleware

    return [Middleware(CloseOrphanedWebSockets)]
