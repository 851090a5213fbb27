"""Ask a running Ray cluster (through its dashboard REST API, token auth aware) and an MLflow
server whether they are up: what ``cluster/local.sh`` and the cluster tests use.

    python cluster/probe.py nodes                 # one line per node: id, head?, state, CPU
    python cluster/probe.py wait-nodes 2 120      # until 2 nodes are ALIVE (at most 120 s)
    python cluster/probe.py mlflow                # MLflow /health
    python cluster/probe.py actors RayTrainWorker # node id of every actor of that class (alive or dead)
    python cluster/probe.py job SUBMISSION_ID     # a job's status, message, start/end times as JSON

Reads ``RAY_ADDRESS`` (``http://HOST:DASHBOARD_PORT``), ``RAY_AUTH_TOKEN_PATH`` /
``RAY_AUTH_TOKEN`` and ``MLFLOW_TRACKING_URI`` from the environment. Standard library only,
so it costs ~0.1 s where ``ray status`` costs seconds.
"""
from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


def auth_headers() -> dict[str, str]:
    """Bearer header for Ray's token authentication (empty when no token is configured)."""
    token = os.environ.get("RAY_AUTH_TOKEN")
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if not token and path and os.path.isfile(path):
        token = open(path).read().strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def dashboard_get(path: str, address: str | None = None, timeout_s: float = 10.0) -> dict:
    """GET ``path`` from the dashboard at ``address`` (default $RAY_ADDRESS); parsed JSON."""
    address = (address or os.environ.get("RAY_ADDRESS") or "").rstrip("/")
    if not address.startswith("http"):
        raise SystemExit("probe: RAY_ADDRESS must be the dashboard URL, e.g. http://127.0.0.1:8275")
    req = urllib.request.Request(address + path, headers=auth_headers())
    with urllib.request.urlopen(req, timeout=timeout_s) as r:
        return json.load(r)


def nodes(address: str | None = None) -> list[dict]:
    """Every node the GCS knows: node_id, is_head_node, state, resources_total."""
    return dashboard_get("/api/v0/nodes?detail=1&limit=1000", address)["data"]["result"]["result"]


def actors(class_name: str, address: str | None = None) -> list[dict]:
    """Actors of ``class_name`` (also dead ones the GCS still remembers), with their node_id."""
    q = urllib.parse.urlencode({"detail": 1, "limit": 10000, "filter_keys": "class_name",
                                "filter_predicates": "=", "filter_values": class_name})
    return dashboard_get(f"/api/v0/actors?{q}", address)["data"]["result"]["result"]


def job(submission_id: str, address: str | None = None) -> dict:
    """A submitted job's details: status, message, start_time / end_time (ms since the epoch)."""
    return dashboard_get(f"/api/jobs/{urllib.parse.quote(submission_id)}", address)


def wait_nodes(n: int, timeout_s: float = 120.0, address: str | None = None) -> list[dict]:
    """Block until ``n`` nodes are ALIVE; raises TimeoutError saying how many are."""
    deadline = time.monotonic() + timeout_s
    alive: list[dict] = []
    while time.monotonic() < deadline:
        try:
            alive = [x for x in nodes(address) if x["state"] == "ALIVE"]
            if len(alive) >= n:
                return alive
        except (urllib.error.URLError, OSError, KeyError):
            pass
        time.sleep(1.0)
    raise TimeoutError(f"{len(alive)} of {n} Ray nodes alive after {timeout_s:.0f} s")


def mlflow_health(uri: str | None = None, timeout_s: float = 3.0) -> bool:
    uri = (uri or os.environ.get("MLFLOW_TRACKING_URI") or "").rstrip("/")
    try:
        with urllib.request.urlopen(uri + "/health", timeout=timeout_s) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else ""
    if cmd == "nodes":
        for x in nodes():
            print(x["node_id"][:12], "head" if x["is_head_node"] else "worker", x["state"],
                  f"CPU={x['resources_total'].get('CPU', 0):g}", f"GPU={x['resources_total'].get('GPU', 0):g}")
        return 0
    if cmd == "wait-nodes":
        n = int(argv[1]) if len(argv) > 1 else 2
        timeout_s = float(argv[2]) if len(argv) > 2 else 120.0
        try:
            print(f"{len(wait_nodes(n, timeout_s))} nodes alive")
        except TimeoutError as e:
            print(f"probe: {e}", file=sys.stderr)
            return 1
        return 0
    if cmd == "mlflow":
        ok = mlflow_health()
        print("MLflow", "OK" if ok else "unreachable", os.environ.get("MLFLOW_TRACKING_URI"))
        return 0 if ok else 1
    if cmd == "job" and len(argv) > 1:
        print(json.dumps(job(argv[1])))
        return 0
    if cmd == "actors" and len(argv) > 1:
        for a in actors(argv[1]):
            print(a["actor_id"][:12], a["state"], a.get("node_id"), a.get("pid"))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
