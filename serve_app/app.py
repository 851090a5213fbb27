"""Ray Serve application: FastAPI ingress hosting the duplex engine (``serve_app.app:build_app``).

    serve run serve_app/serve_config.yaml                         # the YAML in this folder
    serve run serve_app.app:build_app config=configs/tiny.yaml model=outputs/tiny/checkpoints/...

One deployment, ``DuplexServer``: it is both the HTTP/WebSocket ingress and the model. A duplex
session's KV cache lives in the replica that accepted its WebSocket, so the engine must sit in
the same process as the socket (a separate model deployment would need per-step session
affinity, which Serve's router does not give). Serve counts an open WebSocket as one ongoing
request from accept to close, so autoscaling on ``target_ongoing_requests`` is autoscaling on
live sessions (``serve.target_sessions_per_replica``); every Serve option comes from the
``serve`` config section through :func:`deployment_options`. Cross-session batching is the
replica's :class:`serve_app.protocol.Batcher`. Protocol and scaling: ``docs/protocol.md``.
"""
import gc
import json
import os
import time
from pathlib import Path

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse
from ray import serve

from omni.config import Config, ConfigError, ServeConfig, load_config, mlflow_uri
from serve_app import protocol as P
from serve_app.diagnostics import GcPauses, LoopLag
from serve_app.routing import ROUTER_PATH
from serve_app.omnichat_route import OmniChatRoute, is_omnichat_export
from serve_app.session import run_session

STATIC = Path(__file__).parent / "static"
REPO = Path(__file__).resolve().parents[1]
# No `from __future__ import annotations` in this module: Serve's class-based view hands FastAPI
# the methods' raw annotations, and a string "WebSocket" would be taken for a query parameter.
EXTRA_KEYS = {"config": None, "overrides": [], "stage": None, "allowed_origins": None,
              "max_backlog_s": 10.0, "max_batch": 16, "max_respond_s": 60.0, "tts": None}
api = FastAPI(title="omni duplex", version="1")
HTTP_HEADROOM = 4
"""Requests a full replica still takes beyond its sessions: /healthz, /v1/respond, and sessions it
refuses with 1013 (Serve's router queues requests for a replica at ``max_ongoing_requests``)."""


def _resolve_path(p: str | None) -> str | None:
    """Relative paths are taken from the cwd, else from the repository root; URIs pass through."""
    if not p or p.startswith("models:/"):
        return p
    if Path(p).exists():
        return str(Path(p).resolve())
    alt = REPO / p
    return str(alt) if alt.exists() else p


def _as_list(v):
    if v is None or isinstance(v, list):
        return v
    return [x for x in str(v).split(",") if x]


def resolve_settings(args: dict | None) -> tuple[Config, dict]:
    """``args`` (from the Serve YAML or ``key=value`` on the ``serve run`` line) -> (Config, extras).

    Keys: ``config`` (YAML path), ``overrides`` (list of ``section.key=value``), ``model``
    (export folder or ``models:/NAME@ALIAS``), any ``ServeConfig`` field, ``stage``,
    ``allowed_origins``, ``max_backlog_s``, ``max_batch``, ``max_respond_s``, ``tts`` (``MODULE:FACTORY`` of the
    TTS that voices an OmniChat model's replies, :mod:`serve_app.omnichat_route`).
    """
    args = dict(args or {})
    unknown = set(args) - set(EXTRA_KEYS) - set(ServeConfig.model_fields)
    if unknown:
        raise ConfigError(f"unknown build_app args {sorted(unknown)}; known: "
                          f"{sorted(set(EXTRA_KEYS) | set(ServeConfig.model_fields))}")
    extras = {k: args.get(k, d) for k, d in EXTRA_KEYS.items()}
    overrides = list(_as_list(extras.pop("overrides")) or [])
    overrides += [f"serve.{k}={json.dumps(v) if isinstance(v, (list, dict)) else v}"
                  for k, v in args.items() if k in ServeConfig.model_fields]
    cfg = load_config(_resolve_path(extras.pop("config")), overrides)
    extras["allowed_origins"] = _as_list(extras["allowed_origins"])
    extras["kv_window_set"] = "kv_window" in cfg.serve.model_fields_set    # else: the model's training length
    model = cfg.serve.model
    if model is None:
        state = Path(_resolve_path(cfg.train.output_dir) or cfg.train.output_dir) / "curriculum.json"
        model = json.loads(state.read_text()).get("final_export") if state.is_file() else None
        if model is None:
            raise ConfigError(f"no model to serve: set model=PATH|models:/NAME@ALIAS (serve.model), or run the "
                              f"curriculum first (no {state})")
    cfg.serve.model = _resolve_path(model)
    return cfg, extras


@serve.deployment(name="DuplexServer")
@serve.ingress(api)
class DuplexServer:
    def __init__(self, cfg_dict: dict, extras: dict):
        import torch

        from omni.duplex import DuplexEngine
        from omni.registry import resolve_export

        self.cfg = Config.model_validate(cfg_dict)
        self.s: ServeConfig = self.cfg.serve
        self.extras = extras
        torch.set_num_threads(max(1, int(self.s.num_cpus)))
        if self.s.model.startswith("models:/"):
            import mlflow
            mlflow.set_tracking_uri(mlflow_uri(self.cfg))
        from omni.model import load_export

        self.export_dir = resolve_export(self.s.model)
        self.omnichat = None                            # an OmniChat export answers POST /v1/respond only
        if is_omnichat_export(self.export_dir):
            self.omnichat, self.engine, self.token = OmniChatRoute(self.export_dir, extras.get("tts")), None, P.expected_token()
            self.started, self.pid, self.replica_id = time.time(), os.getpid(), f"pid-{os.getpid()}"
            return
        export = load_export(self.export_dir)
        trained_len = getattr(getattr(export.config, "train", None), "seq_len", None)
        if not extras.get("kv_window_set") and trained_len:
            # Unless serve.kv_window is set, keep the context within the sequence length the model
            # was trained on: positions past it are untrained, and every token of context costs
            # step time (the tiny model, 8 sessions: ~45 ms of CPU per step at 240 tokens of
            # context, ~110 ms at 1500-2000).
            self.s.kv_window = int(trained_len)
        self.engine = DuplexEngine(export, self.s, stage=extras.get("stage"),
                                   device="cuda" if self.s.num_gpus and torch.cuda.is_available() else None)
        self.batcher = P.Batcher(self.engine, extras.get("max_batch", 16))
        self.warmup_ms = self.engine.warmup()          # before the replica takes traffic
        # A replica tracks ~630k Python objects (Ray, FastAPI, transformers, torch); a full
        # collection over them stopped every session for 1.4-1.6 s (measured on the 2-core box).
        # Everything alive now lives as long as the replica: move it out of the collector's reach
        # so that later collections only scan what sessions allocate.
        gc.collect()
        gc.freeze()
        self.sessions: dict[int, object] = {}
        self.next_id = 0
        self.loop_lag = LoopLag()
        self.gc_pauses = GcPauses()
        self.token = P.expected_token()
        self.started = time.time()
        self.pid = os.getpid()
        try:                                            # which replica serves a session (ready, /healthz)
            self.replica_id = serve.get_replica_context().replica_id.unique_id
        except Exception:  # noqa: BLE001 - constructed outside a Serve replica (unit tests)
            self.replica_id = f"pid-{self.pid}"

    # ----------------------------------------------------------------- HTTP
    @api.get("/healthz")
    async def healthz(self):
        if self.omnichat is not None:
            return {"status": "ok", **self.omnichat.health(), "pid": self.pid, "uptime_s": round(time.time() - self.started, 1)}
        self.loop_lag.ensure_started()
        e = self.engine
        return {"status": "ok", "sessions": len(self.sessions), "max_sessions": self.s.max_sessions_per_replica,
                "model": str(self.export_dir), "stage": e.stage, "speech_chunk": e.speech_chunk,
                "text_chunk": e.text_chunk, "chunk_ms": e.chunk_ms, "kv_window": e.cfg.kv_window,
                "warmup_ms": round(self.warmup_ms, 1),
                "batches": self.batcher.batches, "batched_sessions": self.batcher.batched_sessions,
                "step_time_ms": self.batcher.timing(),
                "auth": self.token is not None, "pid": self.pid, "replica": self.replica_id,
                "uptime_s": round(time.time() - self.started, 1),
                "loop_lag_ms": self.loop_lag.summary(), "gc": self.gc_pauses.summary()}

    @api.get("/")
    async def index(self):
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @api.get("/static/{name}")
    async def static(self, name: str):
        files = {"app.js": "text/javascript", "worklet.js": "text/javascript", "style.css": "text/css"}
        if name not in files:
            return JSONResponse({"error": f"no static file {name!r}"}, status_code=404)
        return FileResponse(STATIC / name, media_type=files[name])

    @api.post("/v1/respond")
    async def respond(self, request: Request):
        import asyncio

        if not P.check_token(request.headers.get("authorization"), request.query_params.get("token"), self.token):
            return JSONResponse({"error": "missing or wrong API token: send 'Authorization: Bearer TOKEN'"},
                                status_code=401, headers={"WWW-Authenticate": "Bearer"})
        max_s = float(self.extras.get("max_respond_s", 60.0))
        limit = int(max_s * P.SAMPLE_RATE_HZ * 2 * 2 + 4096)      # 60 s of 32-bit stereo WAV + header
        if int(request.headers.get("content-length") or 0) > limit:
            return JSONResponse({"error": f"body over {limit} bytes (utterances up to {max_s:.0f} s)"}, status_code=413)
        body = await request.body()
        try:
            sr = request.query_params.get("sample_rate_hz")
            wave = P.decode_audio_body(body[:limit + 1], request.headers.get("content-type"),
                                       int(sr) if sr and sr.isdigit() else (None if sr is None else -1), max_s)
        except P.ProtocolError as e:
            return JSONResponse({"error": e.message}, status_code=e.code)
        if self.omnichat is not None:
            return await asyncio.to_thread(self.omnichat.respond, wave)
        t0 = time.perf_counter()
        out = await asyncio.to_thread(self.engine.respond, wave)
        return {"user_text": out["user_text"], "text": out["text"], "style": out["style"],
                "style_generated": out["style_generated"], "sample_rate_hz": P.SAMPLE_RATE_HZ,
                "duration_s": round(out["audio"].size / P.SAMPLE_RATE_HZ, 3),
                "latency_ms": round((time.perf_counter() - t0) * 1000, 1), "audio_wav_base64": P.wav_base64(out["audio"])}

    # ------------------------------------------------------------ WebSocket
    @api.websocket("/v1/duplex")
    async def duplex(self, ws: WebSocket):
        if self.omnichat is not None:
            await ws.accept()
            await ws.close(code=P.CLOSE_UNSUPPORTED, reason="this model is OmniChat (half duplex): POST /v1/respond")
            return
        self.loop_lag.ensure_started()
        await run_session(self, ws)


def deployment_options(s: ServeConfig) -> dict:
    """Ray Serve deployment options from the ``serve`` config section: the one place that maps it.

    * ``autoscaling_config.target_ongoing_requests`` = ``target_sessions_per_replica`` (a live
      WebSocket is one ongoing request for its whole life);
    * ``max_ongoing_requests`` = ``max_sessions_per_replica`` + :data:`HTTP_HEADROOM`: the replica
      itself refuses the session over its cap with 1013 at once, instead of Serve queueing it;
    * ``graceful_shutdown_timeout_s`` = ``serve.drain_timeout_s``: a replica that Serve removes
      (scale-in, redeploy) stops getting new sessions and keeps its live ones until they end;
    * ``request_router_config``: :class:`serve_app.routing.LeastLoadedRouter`.
    """
    return {
        "ray_actor_options": {"num_cpus": s.num_cpus, "num_gpus": s.num_gpus},
        "max_ongoing_requests": s.max_sessions_per_replica + HTTP_HEADROOM,
        "autoscaling_config": {"min_replicas": s.min_replicas, "max_replicas": s.max_replicas,
                               "initial_replicas": max(1, s.min_replicas),
                               "target_ongoing_requests": s.target_sessions_per_replica,
                               "upscale_delay_s": s.upscale_delay_s, "downscale_delay_s": s.downscale_delay_s},
        "graceful_shutdown_timeout_s": s.drain_timeout_s,
        "graceful_shutdown_wait_loop_s": 1.0,
        "request_router_config": {"request_router_class": ROUTER_PATH},
    }


def build_app(args: dict | None = None):
    """Serve application builder: ``import_path: serve_app.app:build_app`` with ``args`` (see
    :func:`resolve_settings`). Every deployment option comes from ``serve.*`` (:func:`deployment_options`)."""
    cfg, extras = resolve_settings(args)
    return DuplexServer.options(**deployment_options(cfg.serve)).bind(cfg.model_dump(mode="json"), extras)
