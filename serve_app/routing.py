"""Request routing for the duplex deployment: every new session goes to the least-loaded replica.

Serve's default router ("power of two choices") samples two replicas and takes the less loaded
one. For short HTTP requests that spreads load well; for duplex sessions, which hold a replica for
minutes, it has two faults: with three or more replicas it can pick two full ones while a third
has room (the session is then refused with 1013 although capacity exists), and a replica that has
just started gets only a share of the new sessions. This router compares *all* running replicas'
ongoing-request counts (the router's own cache, corrected by Serve's probes and rejections) and
sends the session to the least loaded one, so

* a session is refused with 1013 only when the least-loaded replica is full, i.e. every replica
  is full (``serve.max_sessions_per_replica``), and
* new sessions land on the newest (emptiest) replica first.

It runs inside Serve's proxies (and any ``DeploymentHandle``); ``serve_app`` must be importable
there, as it already must be for the app itself. Selected by
:func:`serve_app.app.deployment_options` through ``request_router_config``.
"""
from __future__ import annotations

from ray.serve.request_router import (
    FIFOMixin,
    PendingRequest,
    RequestRouter,
    RunningReplica,
)

ROUTER_PATH = "serve_app.routing:LeastLoadedRouter"


class LeastLoadedRouter(FIFOMixin, RequestRouter):
    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: PendingRequest | None = None) -> list[list[RunningReplica]]:
        # One rank with every replica: Serve then picks the lowest queue length among them that is
        # below max_ongoing_requests, and backs off (then retries) when none is.
        if pending_request is not None:
            pending_request.routing_context.should_backoff = True
        return [list(candidate_replicas)] if candidate_replicas else []
