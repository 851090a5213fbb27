"""Ray Serve HTTP-proxy hook: a WebSocket whose replica died gets a close frame, not a dropped TCP connection.

When a replica process dies (OOM kill, node loss, SIGKILL) the proxy's stream to it fails and,
left alone, the proxy returns from its ASGI handler without closing the accepted WebSocket:
uvicorn then drops the TCP connection and the client sees close code 1006 (no close frame).
This middleware notices "accepted, never closed, handler returned" and sends what the replica
would have sent: an ``error`` event with code 1012 and a close frame **1012 (service restart)**,
so clients can tell "replica lost, reconnect" from a network failure.

Enable it in the environment of the Ray node(s) that run Serve's proxies, before Ray starts::

    RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=serve_app.proxy_hooks:middlewares

(``serve_app`` must be importable there: the image, or ``PYTHONPATH`` / the runtime_env's
working_dir). Without it everything works the same, except that a lost replica reads 1006.
"""
from __future__ import annotations

import json

from serve_app.protocol import CLOSE_SERVICE_RESTART

PROXY_CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
PROXY_CALLBACK = "serve_app.proxy_hooks:middlewares"
REPLICA_LOST = "replica lost: the server process of this session died; open a new session"


class CloseOrphanedWebSockets:
    """Pure ASGI middleware (no buffering; HTTP passes through untouched)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "websocket":
            await self.app(scope, receive, send)
            return
        state = {"accepted": False, "closed": False}

        async def tracked_receive():
            msg = await receive()
            if msg.get("type") == "websocket.disconnect":
                state["closed"] = True            # the client left: nothing to close
            return msg

        async def tracked_send(msg):
            kind = msg.get("type")
            if kind == "websocket.accept":
                state["accepted"] = True
            elif kind == "websocket.close":
                state["closed"] = True
            await send(msg)

        try:
            await self.app(scope, tracked_receive, tracked_send)
        finally:
            if state["accepted"] and not state["closed"]:
                try:
                    await send({"type": "websocket.send", "text": json.dumps(
                        {"type": "error", "code": CLOSE_SERVICE_RESTART, "message": REPLICA_LOST})})
                    await send({"type": "websocket.close", "code": CLOSE_SERVICE_RESTART, "reason": "replica lost"})
                except Exception:  # noqa: BLE001, S110 - the client is gone as well
                    pass


def middlewares() -> list:
    """The callback named by ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``."""
    from starlette.middleware import Middleware

    return [Middleware(CloseOrphanedWebSockets)]
