"""What every job shares: CLI parsing, one-line errors, Ray and MLflow connections.

Each ``jobs/X.py`` is ``python -m jobs.X --config CFG [key=value ...]`` and works the same
under ``ray job submit --working-dir . -- python -m jobs.X ...`` (``RAY_ADDRESS`` set).
"""
from __future__ import annotations

import json
import os
import socket
import sys
import traceback
import urllib.parse
from pathlib import Path
from typing import Callable

from jobs import _console
from omni.config import Config, ConfigError, check_speech_decodable, load_config, mlflow_uri, resolve_paths


class JobError(RuntimeError):
    """An error meant for the user: printed as one line, exit status 2."""


def run_main(fn: Callable[[], int | None]) -> None:
    """Run a job's main; user-facing errors become one line on the console's stderr and exit 2.
    After :func:`start_logs`, an unexpected error is one line naming the log file, which holds
    its traceback (exit 1)."""
    try:
        rc = fn()
    except (ConfigError, JobError, FileNotFoundError) as e:
        print(f"error: {e}", file=_console.CONSOLE_ERR, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=_console.CONSOLE_ERR, flush=True)
        sys.exit(130)
    except Exception as e:
        if not _console.is_quiet():
            raise
        traceback.print_exc()                                 # into the log file
        first = (str(e).strip().splitlines() or [""])[0][:300]
        print(f"error: {type(e).__name__}: {first} (traceback in {_console.LOG})", file=_console.CONSOLE_ERR,
              flush=True)
        sys.exit(1)
    sys.exit(rc or 0)


def start_logs(cfg: Config, job: str) -> Path | None:
    """Library output of this run into ``<outputs>/logs/<job>.log`` (``<outputs>`` = the folder of
    ``data.output_dir``); the console keeps the job's steps, progress and summary. Returns the
    log path (None with ``OMNI_VERBOSE=1``). See :mod:`jobs._console`."""
    return _console.quiet(Path(cfg.data.output_dir).resolve().parent / "logs" / f"{job}.log")


def print_summary(summary: dict) -> None:
    """The job's last line: its summary as one JSON object, naming the log file when there is one."""
    if _console.LOG is not None:
        summary = {**summary, "log": str(_console.LOG)}
    print(json.dumps(summary), flush=True)


def parse_args(argv: list[str], usage: str, flags: dict[str, bool | str | None] | None = None):
    """Minimal, predictable parser: ``--config PATH``, the job's own ``--flag[=value]``s, and
    dotted ``key=value`` overrides. Returns (config_path, overrides, flags)."""
    flags = dict(flags or {})
    cfg_path = None
    overrides: list[str] = []
    it = iter(argv)
    for a in it:
        if a in ("-h", "--help"):
            print(usage)
            sys.exit(0)
        if a == "--config":
            cfg_path = next(it, None)
            if cfg_path is None:
                raise JobError("--config needs a path, e.g. --config configs/tiny.yaml")
        elif a.startswith("--config="):
            cfg_path = a.split("=", 1)[1]
        elif a.startswith("--"):
            name, _, val = a[2:].partition("=")
            key = name.replace("-", "_")
            if key not in flags:
                known = " ".join("--" + k.replace("_", "-") for k in flags) or "none"
                raise JobError(f"unknown option {a!r} (options: --config {known})")
            if isinstance(flags[key], bool):
                flags[key] = True
            else:
                flags[key] = val if val else next(it, None)
                if flags[key] is None:
                    raise JobError(f"option --{name} needs a value")
        elif "=" in a:
            overrides.append(a)
        else:
            raise JobError(f"unexpected argument {a!r}: overrides look like section.key=value")
    if cfg_path is None:
        raise JobError("missing --config (try --config configs/tiny.yaml)")
    return cfg_path, overrides, flags


def load(cfg_path: str, overrides: list[str], job: str | None = None) -> Config:
    """Validated config with every local path made absolute (workers run elsewhere); ``job`` names
    the job, for checks that depend on it (:func:`omni.config.check_speech_decodable`)."""
    cfg = resolve_paths(load_config(cfg_path, overrides))
    if job:
        check_speech_decodable(cfg, job)
    return cfg


# ------------------------------------------------------------------------------ Ray
def init_ray(num_cpus: int | None = None) -> None:
    """Connect to ``RAY_ADDRESS`` when set (clear error when unreachable), else start locally."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    addr = os.environ.get("RAY_ADDRESS")
    if addr and addr != "auto":
        _check_reachable(addr, "RAY_ADDRESS", "start one with `ray start --head` or unset RAY_ADDRESS")
    if not addr:
        # A local instance; say explicitly that we want no auth token for it (Ray >= 2.59 turns
        # token auth on by default for local clusters, which then leaks into a later `ray start`).
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        # Serve's proxies close a WebSocket whose replica died with 1012 instead of dropping it
        # (docs/reliability.md); read from the environment of the Ray we start here.
        os.environ.setdefault("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH", "serve_app.proxy_hooks:middlewares")
    # a local raylet gets a fixed 30 s to register (not configurable): on a busy machine, retry
    for attempt in range(1 if addr else 3):
        try:
            # quiet jobs leave workers' output in Ray's session logs (named in the job's log file)
            ray.init(address=addr or None, num_cpus=None if addr else num_cpus, log_to_driver=not _console.is_quiet(),
                     include_dashboard=bool(addr) or None, ignore_reinit_error=True,
                     runtime_env={"env_vars": {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2"}} if not addr else None)
            _console.note(f"Ray workers' output: {_ray_logs_dir()}")
            _console.ray_messages_to_log()
            return
        except ConnectionError as e:
            raise JobError(f"cannot connect to Ray at RAY_ADDRESS={addr}: {e}") from None
        except Exception as e:  # noqa: BLE001 - ray raises plain Exception on a start-up timeout
            ray.shutdown()
            if addr or attempt == 2 or not _startup_timeout(e):
                raise


def _ray_logs_dir() -> str:
    """The connected Ray session's log folder (where workers' stdout/stderr go)."""
    try:
        import ray._private.worker as w  # no public API names the session folder
        return w.global_worker.node.get_logs_dir_path()
    except Exception:  # noqa: BLE001 - a remote cluster or another Ray version: say where to look
        return "the Ray session's logs/ folder (e.g. /tmp/ray/session_latest/logs)"


def start_local_ray(num_cpus: int, env_vars: dict | None = None, attempts: int = 3, **kw) -> None:
    """Start a private local Ray for tests and benchmarks, with the repo on the workers' path.

    A raylet gets a fixed 30 s to register; an overloaded machine can miss it, so start-up is
    retried (``attempts`` times) on exactly that error.
    """
    import ray

    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1]), **(env_vars or {})}
    kw = {"include_dashboard": False, "log_to_driver": False, **kw}
    for attempt in range(attempts):
        try:
            ray.init(num_cpus=num_cpus, runtime_env={"env_vars": env}, **kw)
            return
        except Exception as e:  # noqa: BLE001 - ray raises plain Exception on a start-up timeout
            ray.shutdown()
            if attempt == attempts - 1 or not _startup_timeout(e):
                raise


def _startup_timeout(e: Exception) -> bool:
    """Ray's errors when a local raylet did not register in time (a loaded machine), worth a retry."""
    return "timed out during startup" in str(e) or "node registration may not be complete" in str(e)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check_reachable(addr: str, var: str, fix: str) -> None:
    u = urllib.parse.urlparse(addr if "://" in addr else f"tcp://{addr}")
    host, port = u.hostname, u.port
    if not host or not port:
        return
    try:
        with socket.create_connection((host, port), timeout=3):
            pass
    except OSError:
        raise JobError(f"{var}={addr} is not reachable ({host}:{port} refused or timed out): {fix}") from None


# --------------------------------------------------------------------------- MLflow
def setup_mlflow(cfg: Config) -> str:
    """Point MLflow at the tracking store, check it answers, make sure the experiment exists.
    Returns the experiment id."""
    import mlflow

    uri = mlflow_uri(cfg)
    if uri.startswith(("http://", "https://")):
        _check_reachable(uri, "MLFLOW_TRACKING_URI", "start `mlflow server` or unset MLFLOW_TRACKING_URI "
                                                     "to use the local sqlite store")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(cfg.mlflow.experiment)
    if exp is not None:
        return exp.experiment_id
    art = Path(cfg.mlflow.artifact_dir).resolve()
    art.mkdir(parents=True, exist_ok=True)
    return client.create_experiment(cfg.mlflow.experiment,
                                    artifact_location=None if uri.startswith("http") else art.as_uri())
