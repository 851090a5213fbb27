"""What a person sees when a job runs: its steps, progress and summary on the console; what the
libraries say (Ray, DeepSpeed, MLflow, transformers, Python warnings, compilers) in a log file.

:func:`quiet` points file descriptor 2 - and with it ``sys.stderr``, every logging handler however
late a library adds it, ``warnings``, C extensions and child processes - at ``LOG``, and keeps the
terminal's stderr as :data:`CONSOLE_ERR` for the job's own error line. The job itself prints to
stdout, which stays the console. Ray workers' output is not forwarded to the driver
(:func:`jobs._common.init_ray` reads :func:`is_quiet`); it stays in Ray's session logs, named in
the log file. ``OMNI_VERBOSE=1`` keeps everything on the console, as before.
"""
from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

CONSOLE_ERR = sys.stderr
"""Where the job's own error lines go: the terminal's stderr, also after :func:`quiet`."""
LOG: Path | None = None
"""The log file library output goes to (None: not redirected)."""


def verbose() -> bool:
    return os.environ.get("OMNI_VERBOSE", "") not in ("", "0", "false")


def is_quiet() -> bool:
    return LOG is not None


def quiet(log_path: str | os.PathLike) -> Path | None:
    """Send library output to ``log_path`` (appended, a header line per run); returns it, or None
    when ``OMNI_VERBOSE`` is set. Call once, after the config is loaded and before Ray starts."""
    global CONSOLE_ERR, LOG
    if verbose():
        return None
    if LOG is not None:
        return LOG
    path = Path(log_path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    CONSOLE_ERR = io.TextIOWrapper(os.fdopen(os.dup(2), "wb", buffering=0), write_through=True,
                                   encoding=sys.stderr.encoding or "utf-8", errors="replace")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(fd, f"\n===== {' '.join(sys.argv)}  ({time.strftime('%Y-%m-%d %H:%M:%S')}, pid {os.getpid()})\n".encode())
    os.dup2(fd, 2)
    os.close(fd)
    sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(2), "wb", buffering=0), write_through=True,
                                  encoding="utf-8", errors="replace")
    os.environ.setdefault("TQDM_DISABLE", "1")               # library progress bars (weights loading, ...) off
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    LOG = path
    return path


def ray_messages_to_log() -> None:
    """Ray's driver prints the cluster's error messages (e.g. a task retried while Serve shuts down)
    to stdout, whatever ``log_to_driver`` says: in a quiet job they go to the log file too. Ray has
    no setting for it, so its printer is replaced (a private name: checked, and left alone if gone)."""
    if LOG is None:
        return
    import ray._private.worker as ray_worker  # Ray is imported already when this runs

    if hasattr(ray_worker, "print_to_stdstream") and hasattr(ray_worker, "print_worker_logs"):
        ray_worker.print_to_stdstream = lambda data, ignore_prefix: ray_worker.print_worker_logs(
            data, sys.stderr, ignore_prefix)


def note(message: str) -> None:
    """A line for the log file only (no-op on the console when not quiet)."""
    if LOG is not None:
        print(message, file=sys.stderr, flush=True)
