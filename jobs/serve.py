"""Serve the trained model on Ray Serve: ``WS /v1/duplex``, ``POST /v1/respond``, ``/healthz``, ``/``.

    python -m jobs.serve --config configs/tiny.yaml                         # the curriculum's final export
    python -m jobs.serve --config configs/tiny.yaml serve.model=models:/omni-duplex-tiny@candidate
    serve run serve_app/serve_config.yaml                                   # same app from a Serve config
    python -m serve_app.client --url ws://127.0.0.1:8000/v1/duplex --wav in.wav --out reply.wav

Runs until Ctrl-C (``--once`` starts, checks health, and shuts down).
"""
from __future__ import annotations

import sys
import time
import urllib.request

from jobs._common import JobError, init_ray, load, parse_args, print_summary, run_main, start_logs

USAGE = __doc__ + "\nOptions: --config PATH [--once] [key=value ...]"


def start(cfg_path: str, overrides: list[str], timeout_s: float = 180.0) -> str:
    """Deploy the app on the connected Ray cluster; returns the HTTP base URL once healthy."""
    from ray import serve

    from serve_app.app import build_app

    cfg = load(cfg_path, overrides, job="serve")
    serve.start(http_options={"host": cfg.serve.host, "port": cfg.serve.port})
    # the TTS that voices an OmniChat model's replies (serve_app does not import data_prep)
    app = build_app({"config": cfg_path, "overrides": list(overrides), "tts": "data_prep.synth.tts:get_tts"})
    serve.run(app, name="omni", route_prefix="/", blocking=False)
    base = f"http://{cfg.serve.host}:{cfg.serve.port}"
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=5) as r:
                if r.status == 200:
                    return base
        except OSError:
            time.sleep(0.5)
    raise JobError(f"the Serve app did not become healthy at {base}/healthz within {timeout_s:.0f} s")


def main(argv: list[str] | None = None) -> int:
    cfg_path, overrides, flags = parse_args(argv if argv is not None else sys.argv[1:], USAGE, {"once": False})
    start_logs(load(cfg_path, overrides, job="serve"), "serve")  # validate before starting anything
    init_ray()
    base = start(cfg_path, overrides)
    ws = base.replace("http", "ws", 1) + "/v1/duplex"
    print_summary({"page": base + "/", "duplex": ws, "respond": base + "/v1/respond"})
    from ray import serve
    if flags["once"]:
        serve.shutdown()
        return 0
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()
    return 0


if __name__ == "__main__":
    run_main(main)
