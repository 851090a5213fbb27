"""Offline, time-synchronous full-duplex inference over a folder (Full-Duplex-Bench protocol).

    python -m jobs.duplex_infer --checkpoint PATH|models:/NAME@ALIAS --input-dir DIR
        [--actors 2] [--local] [--frame-ms 20] [--delay-ms 0] [--skip-existing] [--seed 0] [--transcribe]

Walks ``DIR/**/input.wav`` and writes ``output.wav`` beside each: the assistant's channel, same
length and sample rate as the input, on the same timeline; plus ``output_events.json`` (the
engine's text and turn events with their times). ``--checkpoint baseline:silent`` and
``baseline:vad200`` run the two reference policies instead of a model (see :class:`SilentPolicy`,
:class:`Vad200Policy`).

``--transcribe`` also writes ``output.json`` beside each ``output.wav``: Whisper base word timings
(:class:`omni.asr.WhisperASR`, loaded once per process / Ray actor) in the benchmark's own format
``{"text", "chunks": [{"text", "timestamp": [start_s, end_s]}]}``, as the benchmark's
``get_transcript/asr.py`` writes it: for a user-interruption clip only the audio after the
interruption ends is transcribed and the timestamps are shifted back onto the clip's timeline
(see :func:`write_transcript`). Without ``--transcribe`` a rewritten ``output.wav`` loses any
older ``output.json`` beside it (it would describe the previous audio).

Simulated real time: the input is fed to the same streaming engine as the server
(:class:`omni.duplex.DuplexEngine`) in frames of ``frame_ms`` (a WebSocket client's cadence),
never more than the audio up to the current frame. Placement rule (the offset): audio returned
while feeding the frame that ends at input time ``t`` is played from ``t + delay_ms`` on, or
right after the previously played audio if that is still playing. So the reply to input chunk i
starts no earlier than the end of chunk i (one engine chunk, ``chunk_ms`` = 400 ms for 10 units
at 25 Hz, after the chunk's first sample), plus the speech decoder's own hold-back, plus
``delay_ms`` to model compute time (0 = an infinitely fast engine). Output beyond the input's
end is dropped; inputs that are not 16 kHz are resampled for the engine and the output is
resampled back to the input's rate and length.

Ray Data runs the folder as a batch job: one row per clip, an actor pool of ``--actors`` engines
(each loads the model once), so thousands of clips spread over a cluster (``RAY_ADDRESS``).
``--local`` runs the same per-clip function in this process.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


# ------------------------------------------------------------------ policies
class SilentPolicy:
    """Baseline: never speaks (returns silence for every frame)."""

    def __init__(self, **_):
        pass

    def feed(self, pcm) -> list[dict]:
        return [{"type": "audio", "pcm": np.zeros(len(pcm), np.float32)}]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


class Vad200Policy(SilentPolicy):
    """Baseline: speaks (a voiced 150 Hz harmonic tone at about -20 dBFS) whenever the user has
    been silent for ``silence_ms`` (default 200 ms), judged causally in 20 ms frames by energy
    (``threshold_dbfs``, default -45 dBFS); stops as soon as the user is loud again."""

    def __init__(self, silence_ms: float = 200.0, threshold_dbfs: float = -45.0, frame_ms: float = 20.0, **_):
        self.hop = int(SR * frame_ms / 1000)
        self.need = round(silence_ms / frame_ms)
        self.threshold = threshold_dbfs
        self.buf = np.zeros(0, np.float32)
        self.quiet_frames = 0
        self.phase_samples = 0

    def _voice(self, n: int) -> np.ndarray:
        t = (self.phase_samples + np.arange(n)) / SR
        self.phase_samples += n
        return (0.1 * sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 5))).astype(np.float32)

    def feed(self, pcm) -> list[dict]:
        self.buf = np.concatenate([self.buf, np.asarray(pcm, np.float32).reshape(-1)])
        out = []
        while len(self.buf) >= self.hop:
            frame, self.buf = self.buf[: self.hop], self.buf[self.hop:]
            loud = 10 * np.log10(np.mean(frame.astype(np.float64) ** 2) + 1e-20) > self.threshold
            self.quiet_frames = 0 if loud else self.quiet_frames + 1
            out.append(self._voice(self.hop) if self.quiet_frames >= self.need else np.zeros(self.hop, np.float32))
        return [{"type": "audio", "pcm": np.concatenate(out) if out else np.zeros(0, np.float32)}]


BASELINES = {"baseline:silent": SilentPolicy, "baseline:vad200": Vad200Policy}


class Runner:
    """Makes one session per clip: a model (export folder / ``models:/``) or a baseline name."""

    def __init__(self, checkpoint: str, *, seed: int = 0, serve_overrides: dict | None = None,
                 tracking_uri: str | None = None, transcribe: bool = False):
        self.checkpoint, self.seed = str(checkpoint), seed
        # the recogniser for output.json (loaded once per Runner, i.e. per process / Ray actor)
        self.asr = load_transcriber() if transcribe else None
        if self.checkpoint in BASELINES:
            self.engine = None
            return
        from omni.config import ServeConfig
        from omni.duplex import DuplexEngine

        if self.checkpoint.startswith("models:/"):
            # imports MLflow: only for registry URIs
            from omni.registry import resolve_export

            if tracking_uri:
                os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
            export = resolve_export(self.checkpoint)
        else:
            export = Path(self.checkpoint)
            if not (export / "export.json").exists():
                raise FileNotFoundError(f"--checkpoint {export} is not an omni export folder (no export.json): "
                                        "give an export (e.g. outputs/tiny/checkpoints/final from `make demo`), "
                                        f"a models:/NAME@ALIAS URI, or one of {', '.join(BASELINES)}")
        self.engine = DuplexEngine(export, ServeConfig(**(serve_overrides or {})))

    def session(self):
        if self.engine is None:
            return BASELINES[self.checkpoint]()
        return self.engine.session(seed=self.seed)


# ------------------------------------------------------------------ one clip
def stream_clip(session, wave, frame_samples: int = 320, delay_samples: int = 0) -> tuple[np.ndarray, list[dict]]:
    """Feed ``wave`` (16 kHz float32) frame by frame; return (time-synchronous output of the same
    length, timed non-audio events). See the module docstring for the placement rule."""
    wave = np.asarray(wave, np.float32).reshape(-1)
    n = len(wave)
    out = np.zeros(n, np.float32)
    cursor, events = 0, []
    for a in range(0, n, frame_samples):
        b = min(a + frame_samples, n)
        for ev in session.feed(wave[a:b]):           # the session sees wave[:b] only
            if ev["type"] == "audio":
                pcm = np.asarray(ev["pcm"], np.float32).reshape(-1)
                start = max(cursor, b + delay_samples)
                if start < n:
                    k = min(len(pcm), n - start)
                    out[start:start + k] = pcm[:k]
                cursor = start + len(pcm)
            elif ev["type"] in ("text", "text_end", "turn_start", "turn_end"):
                events.append({"t_s": round(b / SR, 4), **{k: v for k, v in ev.items() if k in ("type", "text")}})
    return out, events


def _read_mono(path: Path) -> tuple[np.ndarray, int]:
    try:
        wave, sr = sf.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, OSError, ValueError) as e:  # libsndfile errors are RuntimeErrors
        raise ValueError(f"{path}: cannot read audio ({e}); expected a WAV file") from None
    if wave.shape[0] == 0:
        raise ValueError(f"{path}: empty audio")
    return wave.mean(axis=1), int(sr)


# ------------------------------------------------------------------ transcripts (output.json)
def load_transcriber():
    """Whisper base (:class:`omni.asr.WhisperASR`); a missing package or model is one line naming
    the fix (``make models``)."""
    from omni.asr import WhisperASR

    try:
        return WhisperASR()
    except (ImportError, OSError) as e:
        hint = "" if "make models" in str(e) else "; run `make models`"
        raise ValueError(f"--transcribe needs Whisper base (faster-whisper + its model): {e}{hint}") from None


def transcript_offset_s(clip_dir) -> float:
    """Where transcription starts on the clip's timeline: the interruption's end for a
    user-interruption clip (``reference.interrupt_end_s`` of our ``metadata.json``, or the
    benchmark's ``interrupt.json``), else 0."""
    from omni.metrics.fdb import load_reference

    try:
        task, ref = load_reference(clip_dir)
    except (FileNotFoundError, ValueError, KeyError, IndexError, TypeError):  # no reference: whole clip
        return 0.0
    return max(0.0, float(ref["interrupt_end_s"])) if task == "user_interruption" else 0.0


def transcript_json(words, offset_s: float = 0.0) -> dict:
    """The benchmark's ``output.json`` for ``words`` timed from ``offset_s`` into the clip (the
    audio was cut there): timestamps shifted by ``+offset_s`` back onto the clip's timeline, as
    the benchmark's ``get_transcript/asr.py`` does after cutting at the interruption's end."""
    from omni.asr import fdb_output

    return fdb_output(words, offset_s=-float(offset_s))


def write_transcript(asr, wave, sample_rate_hz: int, clip_dir) -> dict:
    """Transcribe ``wave`` (the clip's output channel) from :func:`transcript_offset_s` on and
    write ``clip_dir/output.json``; returns the written dict. Audio with no voice activity
    (:func:`omni.metrics.fdb.energy_vad`, the metrics' own VAD) is not sent to the recogniser: it
    gets no words, so a silent model cannot gain hallucinated ones (and silent clips cost nothing)."""
    from omni.metrics.fdb import energy_vad

    d = Path(clip_dir)
    offset = transcript_offset_s(d)
    cut = np.asarray(wave, np.float32).reshape(-1)[int(offset * sample_rate_hz):]  # as the benchmark cuts
    voiced = len(cut) > 0 and bool(energy_vad(cut, sample_rate_hz))
    out = transcript_json(asr.transcribe(cut, sample_rate_hz) if voiced else [], offset)
    tmp = d / "output.json.tmp"
    tmp.write_text(json.dumps(out, indent=1))
    os.replace(tmp, d / "output.json")
    return out


# ------------------------------------------------------------------ one clip
def process_clip(runner: Runner, input_wav, *, frame_ms: float = 20.0, delay_ms: float = 0.0,
                 skip_existing: bool = False) -> dict:
    """Write ``output.wav`` (+ ``output_events.json``, + ``output.json`` when the runner has an
    ``asr``) beside ``input_wav``; returns timings (``asr_s``: transcription seconds)."""
    import soxr

    src = Path(input_wav)
    dst = src.with_name("output.wav")
    asr = getattr(runner, "asr", None)
    if skip_existing and dst.exists():
        asr_s = 0.0
        if asr is not None and not dst.with_name("output.json").exists():  # transcribe the kept output
            t0 = time.perf_counter()
            out, sr = _read_mono(dst)
            write_transcript(asr, out, sr, src.parent)
            asr_s = time.perf_counter() - t0
        return {"input": str(src), "skipped": True, "audio_s": 0.0, "wall_s": 0.0, "asr_s": asr_s}
    wave, sr = _read_mono(src)
    w16 = wave if sr == SR else soxr.resample(wave, sr, SR).astype(np.float32)
    t0 = time.perf_counter()
    with runner.session() as s:
        out, events = stream_clip(s, np.clip(w16, -1, 1), int(SR * frame_ms / 1000), int(SR * delay_ms / 1000))
    wall = time.perf_counter() - t0
    if sr != SR:
        out = soxr.resample(out, SR, sr).astype(np.float32)
    out = np.pad(out, (0, max(0, len(wave) - len(out))))[: len(wave)]
    sf.write(dst, np.clip(out, -1, 1), sr, subtype="PCM_16")
    dst.with_name("output_events.json").write_text(json.dumps(
        {"checkpoint": runner.checkpoint, "frame_ms": frame_ms, "delay_ms": delay_ms, "events": events}, indent=1))
    asr_s = 0.0
    if asr is not None:
        t0 = time.perf_counter()
        write_transcript(asr, np.clip(out, -1, 1), sr, src.parent)
        asr_s = time.perf_counter() - t0
    else:
        dst.with_name("output.json").unlink(missing_ok=True)  # stale: described the previous output.wav
    return {"input": str(src), "skipped": False, "audio_s": len(wave) / sr, "wall_s": wall, "asr_s": asr_s}


def find_inputs(input_dir) -> list[Path]:
    root = Path(input_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"--input-dir {root} is not a folder")
    clips = sorted(root.rglob("input.wav"))
    if not clips:
        raise FileNotFoundError(f"no input.wav under {root}: expected DIR/<clip>/input.wav "
                                "(make task sets with `python -m data_prep.fdb_tasks --out DIR`)")
    return clips


# ------------------------------------------------------------------ Ray Data
class InferActor:
    """Ray Data actor: loads the engine once, processes a batch of ``input`` paths."""

    def __init__(self, checkpoint: str, opts: dict):
        self.runner = Runner(checkpoint, seed=opts.get("seed", 0), tracking_uri=opts.get("tracking_uri"),
                             transcribe=opts.get("transcribe", False))
        self.opts = {k: v for k, v in opts.items() if k not in ("seed", "tracking_uri", "transcribe")}

    def __call__(self, batch: dict) -> dict:
        rows = [safe_process_clip(self.runner, p, self.opts) for p in batch["input"]]
        return {k: np.asarray([r[k] for r in rows]) for k in ROW_KEYS}


ROW_KEYS = ("input", "skipped", "audio_s", "wall_s", "asr_s", "error")


def safe_process_clip(runner: Runner, path, opts: dict) -> dict:
    """:func:`process_clip`, with a bad clip (unreadable audio) reported in ``error`` instead of
    failing the whole folder."""
    try:
        return {**process_clip(runner, path, **opts), "error": ""}
    except ValueError as e:
        return {"input": str(path), "skipped": False, "audio_s": 0.0, "wall_s": 0.0, "asr_s": 0.0, "error": str(e)}


def _tracking_uri() -> str:
    """$MLFLOW_TRACKING_URI, else the project's default store (``outputs/mlflow.db``, as the jobs use)."""
    from jobs._common import mlflow_uri
    from omni.config import Config, resolve_paths

    return os.environ.get("MLFLOW_TRACKING_URI") or mlflow_uri(resolve_paths(Config()))


def run(checkpoint: str, input_dir, *, actors: int = 2, local: bool = False, frame_ms: float = 20.0,
        delay_ms: float = 0.0, skip_existing: bool = False, seed: int = 0, transcribe: bool = False) -> dict:
    """Process every clip; returns ``{"clips", "skipped", "errors", "first_errors", "audio_s",
    "wall_s", "rtf"}`` (``rtf`` = engine seconds per audio second, summed over clips), plus
    ``"asr_s"`` (transcription seconds, summed) with ``transcribe``."""
    clips = find_inputs(input_dir)
    opts = {"frame_ms": frame_ms, "delay_ms": delay_ms, "skip_existing": skip_existing}
    tracking_uri = _tracking_uri() if str(checkpoint).startswith("models:/") else None
    t0 = time.perf_counter()
    if local:
        runner = Runner(checkpoint, seed=seed, tracking_uri=tracking_uri, transcribe=transcribe)
        rows = [safe_process_clip(runner, p, opts) for p in clips]
    else:
        import ray

        from jobs._common import init_ray

        init_ray()
        ds = ray.data.from_items([{"input": str(p)} for p in clips], override_num_blocks=min(len(clips), 64))
        ds = ds.map_batches(InferActor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=max(1, actors)),
                            fn_constructor_args=(str(checkpoint), {**opts, "seed": seed, "tracking_uri": tracking_uri,
                                                                "transcribe": transcribe}),
                            num_cpus=1)
        rows = ds.take_all()
    wall = time.perf_counter() - t0
    audio = float(sum(float(r["audio_s"]) for r in rows))
    busy = float(sum(float(r["wall_s"]) for r in rows))
    errors = [str(r["error"]) for r in rows if r["error"]]
    stats = {"clips": len(rows), "skipped": int(sum(bool(r["skipped"]) for r in rows)), "errors": len(errors),
             "first_errors": errors[:5], "audio_s": round(audio, 3), "wall_s": round(wall, 3),
             "rtf": round(busy / audio, 4) if audio else None}
    if transcribe:
        stats["asr_s"] = round(float(sum(float(r["asr_s"]) for r in rows)), 3)
    return stats


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
    from jobs._common import JobError, run_main

    def go():
        try:
            stats = run(a.checkpoint, a.input_dir, actors=a.actors, local=a.local, frame_ms=a.frame_ms,
                        delay_ms=a.delay_ms, skip_existing=a.skip_existing, seed=a.seed,
                        transcribe=a.transcribe)
        except ValueError as e:  # bad model settings: one line, exit 2
            raise JobError(str(e)) from None
        print(json.dumps(stats))
        return 1 if stats["errors"] else 0

    run_main(go)
    return 0


if __name__ == "__main__":
    main()
