"""Full-Duplex-Bench-style task sets from our synthetic generator.

    python -m data_prep.fdb_tasks --out DIR [--per-task N] [--seed S] [--noise-snr-db LO,HI]
                                  [--voices V1,V2,...] [--train-config PATH]

Writes ``DIR/<task>/<task>_<NNNN>/input.wav`` (16 kHz mono, the user's stream only) and
``metadata.json`` beside it, for the four v1.0 behaviour families (Lin et al., arXiv 2503.04721):

* ``pause_handling`` - one user turn split at a word boundary (first half ends with a comma) with
  a 1.0-2.0 s pause inside: the model should *not* take the turn. Reference: ``user_start_s``,
  ``user_end_s``, ``pauses``.
* ``backchannel`` - a user monologue of 3-4 sentences with 0.3-0.7 s gaps: the model may say
  "mm-hm" but should not take over. Reference: ``user_start_s``, ``user_end_s`` and
  ``backchannels`` (where a listener would backchannel: 0.1 s into each gap between sentences,
  0.4 s long; this replaces the benchmark's ICC human annotations).
* ``smooth_turn_taking`` - one user turn then 4 s of room noise: the model should respond.
  Reference: ``user_start_s``, ``user_end_s``.
* ``user_interruption`` - a user turn, a 2.5-4.0 s gap in which the model answers, then the user
  cuts in ("Sorry to interrupt, ...") and 4 s of room noise: the model should stop and respond to
  the interruption. Reference: ``context_end_s``, ``interrupt_start_s``, ``interrupt_end_s``.

Texts come from the template script writer, voices from espeak-ng (``data_prep.synth.tts``),
by default the held-out family :data:`HELDOUT_VOICES` (espeak-ng variants that no default training
pool uses) and the seed :data:`HELDOUT_SEED` (training corpora use ``synth.seed``, 0 by default):
the task sets measure behaviour on voices and draws the model never trained on. ``--train-config``
refuses a voice of that config's training pools or its ``synth.seed``. Room noise from the procedural scene generator at 25-35 dB SNR. All times are seconds of the
voiced region (``data_prep.synth.duplex.voiced_span``). Deterministic in (seed, task, index).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from data_prep.synth import catalogue as C
from data_prep.synth import scenes
from data_prep.synth.duplex import voiced_span
from data_prep.synth.scripts import TemplateWriter
from data_prep.synth.tts import ASSISTANT_VOICES, get_tts
from data_prep.synth.tts import SAMPLE_RATE_HZ as SR

TASKS = ("pause_handling", "backchannel", "smooth_turn_taking", "user_interruption")
HELDOUT_VOICES = ("en-us+m6", "en+m8", "en-us+steph", "en+belinda")
"""Voice family of the task sets: espeak-ng variants in neither ``tts.USER_VOICES`` nor
``tts.ASSISTANT_VOICES`` (list them in ``synth.heldout_voices`` when a config sets its own pools)."""
HELDOUT_SEED = 1009
"""Default seed of the task sets, distinct from any training ``synth.seed`` in configs/."""
LEAD_IN_S = 0.5
BASELINE_SENTENCES = ("Sure, I can help with that.", "Let me think about it for a moment.",
                      "Here is what I would suggest.")
TAIL_S = {"pause_handling": 1.0, "backchannel": 1.0, "smooth_turn_taking": 4.0, "user_interruption": 4.0}


class _Timeline:
    """Places voiced utterances one after another; keeps word timings on the clip's timeline."""

    def __init__(self):
        self.parts: list[tuple[int, np.ndarray]] = []
        self.t_s = LEAD_IN_S            # where the next voiced onset goes
        self.turns: list[dict] = []

    def say(self, speech, text: str) -> tuple[float, float]:
        on, off = voiced_span(speech.wave)
        at = round((self.t_s - on) * SR)
        self.parts.append((at, speech.wave))
        start, end = at / SR + on, at / SR + off
        self.turns.append({"text": text, "start_s": round(start, 4), "end_s": round(end, 4),
                           "words": [{"word": w.text, "start_s": round(at / SR + w.start_s, 4),
                                      "end_s": round(at / SR + w.end_s, 4)} for w in speech.words]})
        self.t_s = end
        return start, end

    def gap(self, seconds: float) -> None:
        self.t_s += seconds

    def render(self, tail_s: float) -> np.ndarray:
        n = int(np.ceil((self.t_s + tail_s) * SR))
        wave = np.zeros(n, np.float32)
        for at, w in self.parts:
            w = w[max(0, -at):][: n - max(at, 0)]
            wave[max(at, 0):max(at, 0) + len(w)] += w
        return wave


def baseline_voice(voice: str = ASSISTANT_VOICES[0]) -> np.ndarray:
    """What the VAD-200 baseline (``omni.baselines.Vad200Policy``) says when it takes the turn:
    three short assistant sentences in an espeak-ng voice, 16 kHz, trimmed to their voiced region,
    with 0.3 s between them (real speech, so that the scoring Silero VAD hears speech)."""
    tts, parts = get_tts("espeak"), []
    for text in BASELINE_SENTENCES:
        wave = tts.synthesize(text, voice=voice).wave
        on, off = voiced_span(wave)
        parts += [wave[int(on * SR):int(off * SR)], np.zeros(int(0.3 * SR), np.float32)]
    return np.concatenate(parts).astype(np.float32)


def _round(v):
    if isinstance(v, float):
        return round(v, 4)
    return [_round(x) for x in v] if isinstance(v, list) else v


def _user_sentences(rng: np.random.Generator, k: int) -> list[str]:
    """``k`` distinct user lines from the template writer (chitchat scripts)."""
    out: list[str] = []
    while len(out) < k:
        script = TemplateWriter().write(rng, "chitchat", 6)
        out += [t.text for t in script.turns if t.speaker == "user" and t.text not in out]
    return out[:k]


def make_clip(task: str, index: int, seed: int = HELDOUT_SEED, noise_snr_db: tuple[float, float] = (25.0, 35.0),
              voices: tuple[str, ...] = HELDOUT_VOICES) -> dict:
    """One clip: ``{"wave": float32 16 kHz, "metadata": {...}}`` (see the module docstring)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}: choose one of {', '.join(TASKS)}")
    if not voices:
        raise ValueError("make_clip needs at least one voice")
    rng = np.random.default_rng([int(seed), TASKS.index(task), int(index)])
    tts = get_tts("espeak")
    voice = voices[int(rng.integers(len(voices)))]
    say = lambda text: tts.synthesize(text, voice)
    tl = _Timeline()
    ref: dict = {}
    if task == "pause_handling":
        words = []
        while len(words) < 6:  # a line long enough to pause inside
            words = max(_user_sentences(rng, 6), key=lambda s: len(s.split())).split()
        cut = int(rng.integers(2, len(words) - 2))
        first, second = " ".join(words[:cut]).rstrip(",.?!") + ",", " ".join(words[cut:])
        start, p0 = tl.say(say(first), first)
        tl.gap(float(rng.uniform(1.0, 2.0)))
        p1, end = tl.say(say(second), second)
        ref = {"user_start_s": start, "user_end_s": end, "pauses": [[p0, p1]]}
    elif task == "backchannel":
        sents = _user_sentences(rng, int(rng.integers(3, 5)))
        bcs = []
        for i, s in enumerate(sents):
            if i:
                g0 = tl.t_s
                tl.gap(float(rng.uniform(0.3, 0.7)))
                bcs.append([round(g0 + 0.1, 4), round(g0 + 0.5, 4)])
            s0, _ = tl.say(say(s), s)
            if i == 0:
                start = s0
        ref = {"user_start_s": start, "user_end_s": tl.t_s, "backchannels": bcs}
    elif task == "smooth_turn_taking":
        text = _user_sentences(rng, 1)[0]
        start, end = tl.say(say(text), text)
        ref = {"user_start_s": start, "user_end_s": end}
    else:
        context, follow = _user_sentences(rng, 2)
        start, c_end = tl.say(say(context), context)
        tl.gap(float(rng.uniform(2.5, 4.0)))
        lead = C.INTERJECTIONS[int(rng.integers(len(C.INTERJECTIONS)))]
        text = f"{lead} {follow[0].lower()}{follow[1:]}"
        i0, i1 = tl.say(say(text), text)
        ref = {"user_start_s": start, "context_end_s": c_end, "interrupt_start_s": i0, "interrupt_end_s": i1,
               "context_text": context, "interrupt_text": text}
    wave = tl.render(TAIL_S[task])
    speech_power = scenes.power(wave)
    noise, kind = scenes.synth_noise(len(wave) / SR + 0.1, rng)
    snr = float(rng.uniform(*noise_snr_db))
    wave = wave + scenes.scale_to_snr(scenes.loop_to(noise, len(wave)), speech_power, snr)
    peak = float(np.abs(wave).max())
    if peak > 0.98:
        wave *= np.float32(0.98 / peak)
    ref = {k: _round(v) for k, v in ref.items()}
    meta = {"task": task, "id": f"{task}_{index:04d}", "index": int(index), "seed": int(seed),
            "sample_rate_hz": SR, "duration_s": round(len(wave) / SR, 4), "voice": voice,
            "noise": {"kind": kind, "snr_db": round(snr, 2)}, "reference": ref, "user_turns": tl.turns,
            "layout": "Full-Duplex-Bench v1.0 style: input.wav = user stream; the model writes output.wav"}
    return {"wave": wave.astype(np.float32), "metadata": meta}


def check_held_out(voices, seed: int, synth_cfg) -> None:
    """Raise ValueError when a task-set voice is one a training corpus of ``synth_cfg`` (a
    :class:`omni.config.SynthConfig`) can be voiced with, or ``seed`` is its ``synth.seed``."""
    from data_prep.synth import voices as V

    trained = {v for b in synth_cfg.tts_mix() for sp in ("user", "assistant") for v in V.pool(synth_cfg, b, sp)}
    seen = sorted(set(voices) & trained)
    if seen:
        raise ValueError(f"task-set voice(s) {seen} voice training dialogues of this config: choose others "
                         f"or list them in synth.heldout_voices")
    if int(seed) == int(synth_cfg.seed):
        raise ValueError(f"task-set seed {seed} is the training synth.seed: choose another")


def write_task_sets(out_dir, per_task: int, seed: int = HELDOUT_SEED, tasks=TASKS,
                    noise_snr_db: tuple[float, float] = (25.0, 35.0),
                    voices: tuple[str, ...] = HELDOUT_VOICES) -> dict[str, list[Path]]:
    """Write ``per_task`` clips of each task under ``out_dir``; returns the clip folders per task."""
    if per_task < 1:
        raise ValueError(f"per_task must be >= 1, got {per_task}")
    out = Path(out_dir)
    written: dict[str, list[Path]] = {}
    for task in tasks:
        for i in range(per_task):
            clip = make_clip(task, i, seed, noise_snr_db, tuple(voices))
            d = out / task / clip["metadata"]["id"]
            d.mkdir(parents=True, exist_ok=True)
            sf.write(d / "input.wav", clip["wave"], SR, subtype="PCM_16")
            (d / "metadata.json").write_text(json.dumps(clip["metadata"], indent=1))
            written.setdefault(task, []).append(d)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m data_prep.fdb_tasks", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output folder (task sub-folders are created)")
    ap.add_argument("--per-task", type=int, default=10, help="clips per task (default 10)")
    ap.add_argument("--seed", type=int, default=HELDOUT_SEED,
                    help=f"default {HELDOUT_SEED}, not a training synth.seed")
    ap.add_argument("--voices", default=",".join(HELDOUT_VOICES),
                    help="comma-separated espeak-ng voices (default: the held-out family " + ",".join(HELDOUT_VOICES) + ")")
    ap.add_argument("--train-config", default=None,
                    help="a training config: refuse voices of its synth pools and its synth.seed")
    ap.add_argument("--tasks", default=",".join(TASKS), help="comma-separated subset of " + ",".join(TASKS))
    ap.add_argument("--noise-snr-db", default="25,35", help="room-noise SNR range LO,HI in dB")
    a = ap.parse_args(argv)
    tasks = [t.strip() for t in a.tasks.split(",") if t.strip()]
    bad = [t for t in tasks if t not in TASKS]
    if bad or a.per_task < 1:
        ap.error(f"unknown task(s) {bad}; choose from {', '.join(TASKS)}" if bad else "--per-task must be >= 1")
    try:
        lo, hi = (float(x) for x in a.noise_snr_db.split(","))
    except ValueError:
        ap.error("--noise-snr-db needs two numbers LO,HI, e.g. 25,35")
    voices = tuple(v.strip() for v in a.voices.split(",") if v.strip())
    if not voices:
        ap.error("--voices needs at least one voice")
    if a.train_config:
        from omni.config import load_config
        try:
            check_held_out(voices, a.seed, load_config(a.train_config).synth)
        except ValueError as e:
            ap.error(str(e))
    written = write_task_sets(a.out, a.per_task, a.seed, tasks, (lo, hi), voices)
    print(json.dumps({t: len(v) for t, v in written.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
