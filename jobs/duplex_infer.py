"""Offline, time-synchronous full-duplex inference over a folder (Full-Duplex-Bench protocol).

    python -m jobs.duplex_infer --checkpoint PATH|models:/NAME@ALIAS --input-dir DIR
        [--actors 2] [--local] [--frame-ms 20] [--delay-ms 0] [--skip-existing] [--seed 0] [--transcribe]

Walks ``DIR/**/input.wav`` and writes ``output.wav`` beside each: the assistant's channel, same
length and sample rate as the input, on the same timeline; plus ``output_events.json`` (the
engine's text and turn events with their times). ``--checkpoint baseline:silent`` and
``baseline:vad200`` run the two reference policies of :mod:`omni.baselines` instead of a model;
VAD-200's voice is an espeak-ng sentence (:func:`data_prep.fdb_tasks.baseline_voice`).

``--transcribe`` also writes ``output.json`` beside each ``output.wav``: Whisper base word timings
(:class:`omni.asr.WhisperASR`, loaded once per process / Ray actor) in the benchmark's own format
``{"text", "chunks": [{"text", "timestamp": [start_s, end_s]}]}``, as the benchmark's
``get_transcript/asr.py`` writes it: for a user-interruption clip only the audio after the
interruption ends is transcribed and the timestamps are shifted back onto the clip's timeline
(see :func:`omni.fdb_infer.write_transcript`). Without ``--transcribe`` a rewritten ``output.wav`` loses any
older ``output.json`` beside it (it would describe the previous audio).

Simulated real time: the input is fed to the same streaming engine as the server
(:class:`omni.duplex.DuplexEngine`) in frames of ``frame_ms`` (a WebSocket client's cadence),
never more than the audio up to the current frame; where the reply lands on the timeline (the
placement rule, ``delay_ms``, other sample rates) is documented in :mod:`omni.fdb_infer`, which
holds the per-clip code this job shares with evaluation and the benchmarks.

Ray Data runs the folder as a batch job: one row per clip, an actor pool of ``--actors`` engines
(each loads the model once), so thousands of clips spread over a cluster (``RAY_ADDRESS``).
``--local`` runs the same per-clip function in this process.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from data_prep.fdb_tasks import baseline_voice
from jobs import _console
from jobs._common import JobError, init_ray, mlflow_uri, print_summary, run_main
from omni.config import Config, resolve_paths
from omni.fdb_infer import ROW_KEYS, Runner, find_inputs, run_clips, safe_process_clip, summarise


# ------------------------------------------------------------------ Ray Data
class InferActor:
    """Ray Data actor: loads the engine once, processes a batch of ``input`` paths."""

    def __init__(self, checkpoint: str, opts: dict):
        self.runner = Runner(checkpoint, seed=opts.get("seed", 0), tracking_uri=opts.get("tracking_uri"),
                             transcribe=opts.get("transcribe", False), baseline_voice=opts.get("baseline_voice"))
        self.opts = {k: v for k, v in opts.items() if k not in ("seed", "tracking_uri", "transcribe", "baseline_voice")}

    def __call__(self, batch: dict) -> dict:
        rows = [safe_process_clip(self.runner, p, self.opts) for p in batch["input"]]
        return {k: np.asarray([r[k] for r in rows]) for k in ROW_KEYS}


def _tracking_uri() -> str:
    """$MLFLOW_TRACKING_URI, else the project's default store (``outputs/mlflow.db``, as the jobs use)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or mlflow_uri(resolve_paths(Config()))


def run(checkpoint: str, input_dir, *, actors: int = 2, local: bool = False, frame_ms: float = 20.0,
        delay_ms: float = 0.0, skip_existing: bool = False, seed: int = 0, transcribe: bool = False) -> dict:
    """Process every clip (in this process with ``local``, else as a Ray Data job); returns
    :func:`omni.fdb_infer.summarise`'s figures."""
    clips = find_inputs(input_dir)
    opts = {"frame_ms": frame_ms, "delay_ms": delay_ms, "skip_existing": skip_existing}
    tracking_uri = _tracking_uri() if str(checkpoint).startswith("models:/") else None
    voice = baseline_voice() if checkpoint == "baseline:vad200" else None
    if local:
        runner = Runner(checkpoint, seed=seed, tracking_uri=tracking_uri, transcribe=transcribe, baseline_voice=voice)
        return run_clips(runner, clips, opts)
    import ray  # the local path runs without Ray

    init_ray()
    t0 = time.perf_counter()
    ds = ray.data.from_items([{"input": str(p)} for p in clips], override_num_blocks=min(len(clips), 64))
    ds = ds.map_batches(InferActor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=max(1, actors)),
                        fn_constructor_args=(str(checkpoint), {**opts, "seed": seed, "tracking_uri": tracking_uri,
                                                            "transcribe": transcribe, "baseline_voice": voice}),
                        num_cpus=1)
    rows = ds.take_all()
    return summarise(rows, time.perf_counter() - t0, transcribe)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m jobs.duplex_infer", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="export folder, models:/NAME@ALIAS, or baseline:silent|baseline:vad200")
    ap.add_argument("--input-dir", required=True, help="folder searched for */input.wav (any depth)")
    ap.add_argument("--actors", type=int, default=2, help="Ray Data actor pool size (engines)")
    ap.add_argument("--local", action="store_true", help="run in this process, without Ray")
    ap.add_argument("--frame-ms", type=float, default=20.0, help="feeding cadence in ms (default 20)")
    ap.add_argument("--delay-ms", type=float, default=0.0, help="extra playback delay modelling compute time")
    ap.add_argument("--skip-existing", action="store_true", help="keep clips that already have output.wav")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--transcribe", action="store_true",
                    help="also write output.json (Whisper base word timings, the benchmark's format)")
    a = ap.parse_args(argv)
    if a.frame_ms <= 0 or a.delay_ms < 0:
        ap.error("--frame-ms must be > 0 and --delay-ms >= 0")

    def go():
        if os.path.isdir(a.input_dir):  # library output beside the clips (a missing folder is an error below)
            _console.quiet(os.path.join(a.input_dir, "duplex_infer.log"))
        try:
            stats = run(a.checkpoint, a.input_dir, actors=a.actors, local=a.local, frame_ms=a.frame_ms,
                        delay_ms=a.delay_ms, skip_existing=a.skip_existing, seed=a.seed,
                        transcribe=a.transcribe)
        except ValueError as e:  # bad model settings: one line, exit 2
            raise JobError(str(e)) from None
        print_summary(stats)
        return 1 if stats["errors"] else 0

    run_main(go)
    return 0


if __name__ == "__main__":
    main()
