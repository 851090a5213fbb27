"""Time-synchronous full-duplex inference of one clip (Full-Duplex-Bench protocol), without Ray.

``jobs.duplex_infer`` runs these functions over a folder (in-process or as a Ray Data job); this
module is what it, the evaluation and the benchmarks share.

* :class:`Runner` makes one session per clip: an export folder, ``models:/NAME@ALIAS`` or a
  baseline of :mod:`omni.baselines`.
* :func:`stream_clip` feeds a clip to a session frame by frame and places the returned audio on
  the clip's timeline. Placement rule: audio returned while feeding the frame that ends at input
  time ``t`` is played from ``t + delay`` on, or right after the previously played audio if that
  is still playing. So the reply to input chunk i starts no earlier than the end of chunk i, plus
  the speech decoder's own hold-back, plus ``delay`` (compute time; 0 = an infinitely fast
  engine). Output beyond the input's end is dropped.
* :func:`process_clip` writes ``output.wav`` (same length and rate as ``input.wav``; other rates
  are resampled for the engine and back), ``output_events.json`` and, with a recogniser,
  ``output.json`` (:func:`write_transcript`).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from omni.asr import WhisperASR, fdb_output
from omni.baselines import BASELINES
from omni.config import ServeConfig
from omni.metrics.fdb import load_reference
from omni.vad import silero_segments

SR = 16000


class Runner:
    """Makes one session per clip: a model (export folder / ``models:/``) or a baseline name."""

    def __init__(self, checkpoint: str, *, seed: int = 0, serve_overrides: dict | None = None,
                 tracking_uri: str | None = None, transcribe: bool = False, baseline_voice=None):
        self.checkpoint, self.seed = str(checkpoint), seed
        self.baseline_voice = baseline_voice  # what baseline:vad200 says (16 kHz speech)
        # the recogniser for output.json (loaded once per Runner, i.e. per process / Ray actor)
        self.asr = load_transcriber() if transcribe else None
        if self.checkpoint in BASELINES:
            self.engine = None
            if self.checkpoint == "baseline:vad200" and baseline_voice is None:
                raise ValueError("baseline:vad200 needs baseline_voice (16 kHz speech it plays when it takes the turn): "
                                 "jobs.duplex_infer voices one with data_prep.fdb_tasks.baseline_voice()")
            return
        # the engine loads torch + transformers: imported only when a model (not a baseline) runs
        from omni.duplex import DuplexEngine

        if self.checkpoint.startswith("models:/"):
            # imports MLflow (seconds): only for registry URIs
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
            return BASELINES[self.checkpoint](voice=self.baseline_voice)
        return self.engine.session(seed=self.seed)


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


def load_transcriber():
    """Whisper base (:class:`omni.asr.WhisperASR`); a missing package or model is one line naming
    the fix (``make models``)."""
    try:
        return WhisperASR()
    except (ImportError, OSError) as e:
        hint = "" if "make models" in str(e) else "; run `make models`"
        raise ValueError(f"--transcribe needs Whisper base (faster-whisper + its model): {e}{hint}") from None


def transcript_offset_s(clip_dir) -> float:
    """Where transcription starts on the clip's timeline: the interruption's end for a
    user-interruption clip (``reference.interrupt_end_s`` of our ``metadata.json``, or the
    benchmark's ``interrupt.json``), else 0."""
    try:
        task, ref = load_reference(clip_dir)
    except (FileNotFoundError, ValueError, KeyError, IndexError, TypeError):  # no reference: whole clip
        return 0.0
    return max(0.0, float(ref["interrupt_end_s"])) if task == "user_interruption" else 0.0


def transcript_json(words, offset_s: float = 0.0) -> dict:
    """The benchmark's ``output.json`` for ``words`` timed from ``offset_s`` into the clip (the
    audio was cut there): timestamps shifted by ``+offset_s`` back onto the clip's timeline, as
    the benchmark's ``get_transcript/asr.py`` does after cutting at the interruption's end."""
    return fdb_output(words, offset_s=-float(offset_s))


def write_transcript(asr, wave, sample_rate_hz: int, clip_dir) -> dict:
    """Transcribe ``wave`` (the clip's output channel) from :func:`transcript_offset_s` on and
    write ``clip_dir/output.json``; returns the written dict. Audio in which the scoring VAD
    (Silero, :func:`omni.vad.silero_segments` with Full-Duplex-Bench's settings) finds no speech is
    not sent to the recogniser: it gets no words, so a silent model cannot gain hallucinated ones
    (and silent clips cost nothing)."""
    d = Path(clip_dir)
    offset = transcript_offset_s(d)
    cut = np.asarray(wave, np.float32).reshape(-1)[int(offset * sample_rate_hz):]  # as the benchmark cuts
    voiced = len(cut) > 0 and bool(silero_segments(cut, sample_rate_hz))
    out = transcript_json(asr.transcribe(cut, sample_rate_hz) if voiced else [], offset)
    tmp = d / "output.json.tmp"
    tmp.write_text(json.dumps(out, indent=1))
    os.replace(tmp, d / "output.json")
    return out


def process_clip(runner: Runner, input_wav, *, frame_ms: float = 20.0, delay_ms: float = 0.0,
                 skip_existing: bool = False) -> dict:
    """Write ``output.wav`` (+ ``output_events.json``, + ``output.json`` when the runner has an
    ``asr``) beside ``input_wav``; returns timings (``asr_s``: transcription seconds)."""
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


ROW_KEYS = ("input", "skipped", "audio_s", "wall_s", "asr_s", "error")


def safe_process_clip(runner: Runner, path, opts: dict) -> dict:
    """:func:`process_clip`, with a bad clip (unreadable audio) reported in ``error`` instead of
    failing the whole folder."""
    try:
        return {**process_clip(runner, path, **opts), "error": ""}
    except ValueError as e:
        return {"input": str(path), "skipped": False, "audio_s": 0.0, "wall_s": 0.0, "asr_s": 0.0, "error": str(e)}


def summarise(rows: list[dict], wall_s: float, transcribe: bool = False) -> dict:
    """``{"clips", "skipped", "errors", "first_errors", "audio_s", "wall_s", "rtf"}`` of processed
    clips (``rtf`` = engine seconds per audio second, summed over clips), plus ``"asr_s"``
    (transcription seconds, summed) with ``transcribe``."""
    audio = float(sum(float(r["audio_s"]) for r in rows))
    busy = float(sum(float(r["wall_s"]) for r in rows))
    errors = [str(r["error"]) for r in rows if r["error"]]
    stats = {"clips": len(rows), "skipped": int(sum(bool(r["skipped"]) for r in rows)), "errors": len(errors),
             "first_errors": errors[:5], "audio_s": round(audio, 3), "wall_s": round(wall_s, 3),
             "rtf": round(busy / audio, 4) if audio else None}
    if transcribe:
        stats["asr_s"] = round(float(sum(float(r["asr_s"]) for r in rows)), 3)
    return stats


def run_clips(runner: Runner, clips, opts: dict) -> dict:
    """Every clip in this process, one after another (``opts``: :func:`process_clip`'s keywords);
    returns :func:`summarise`'s figures."""
    t0 = time.perf_counter()
    rows = [safe_process_clip(runner, p, opts) for p in clips]
    return summarise(rows, time.perf_counter() - t0, runner.asr is not None)
