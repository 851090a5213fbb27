"""``generate_dialogue(index, cfg, seed) -> record``: script -> TTS -> duplex assembly -> scene -> QC.

Deterministic in (index, seed, cfg): a per-dialogue ``SeedSequence([seed, index])`` is split
into one generator per step, so dialogues can be generated in any order, in parallel, and
each step's randomness does not shift when another step changes. (With ``writer=openai`` or
``tts=openai`` the remote server decides; the request carries the seed.)
"""
from __future__ import annotations

import numpy as np

from omni.config import SynthConfig

from . import scenes, voices as V
from .duplex import Behaviours, assemble, count_behaviours
from .qc import run_qc, whisper_asr
from .scripts import Script, TemplateWriter, draw_outline, plan_interruptions, plan_turn_shapes
from .tts import Speech, get_tts

SR = 16000
EVENT_GAP_S = 0.25  # silence between an event sound and the user's reaction


def dialogue_rngs(index: int, seed: int) -> dict[str, np.random.Generator]:
    if index < 0:
        raise ValueError(f"dialogue index must be >= 0 (got {index})")
    ss = np.random.SeedSequence([int(seed) % 2 ** 63, int(index)])
    names = ("script", "voice", "duplex", "scene")
    return dict(zip(names, (np.random.default_rng(s) for s in ss.spawn(len(names)))))


_WRITERS: dict = {}


def write_script(index: int, cfg: SynthConfig, rng: np.random.Generator, seed: int = 0) -> Script:
    """The dialogue's script with its interruption plan (template or OpenAI-compatible writer)."""
    scenario, n_turns = draw_outline(index, cfg, rng)
    if cfg.writer == "template":
        script = TemplateWriter().write(rng, scenario, n_turns)
    else:
        from .llm import get_writer
        script = get_writer(cfg).write(scenario, n_turns, seed=int(seed) * 1_000_003 + index)
    script = plan_interruptions(script, rng, cfg.interrupt_prob)
    return plan_turn_shapes(script, rng, cfg)  # mid-turn pauses, monologues (no draw when both are off)


def speaker_backends(cfg: SynthConfig, rng: np.random.Generator) -> dict[str, str]:
    """TTS backend per speaker: ``synth.tts`` for both, or with ``synth.tts_weights`` one draw per
    speaker (no draw at all without weights, so single-backend corpora keep their voices)."""
    if cfg.tts_weights is None:
        return {"user": cfg.tts, "assistant": cfg.tts}
    mix = cfg.tts_mix()
    names, p = list(mix), np.array(list(mix.values()))
    return {sp: names[int(rng.choice(len(names), p=p))] for sp in ("user", "assistant")}


def voice_script(script: Script, cfg: SynthConfig, rng: np.random.Generator):
    """[(turn, Speech)], a backchannel voicing function using the same two voices, the voices and
    the TTS backend of each speaker."""
    backends = speaker_backends(cfg, rng)
    engines = {sp: get_tts(k, cfg.tts_base_url, cfg.piper_model) for sp, k in backends.items()}
    users = V.pool(cfg, backends["user"], "user", engines["user"])  # minus synth.heldout_voices
    assistants = V.pool(cfg, backends["assistant"], "assistant", engines["assistant"])
    voices = {"user": users[int(rng.integers(len(users)))], "assistant": assistants[int(rng.integers(len(assistants)))]}
    voiced = [(t, _voice_turn(engines[t.speaker], t, voices[t.speaker])) for t in script.turns]
    cache: dict[tuple[str, str], Speech] = {}

    def backchannel(speaker: str, text: str) -> Speech:
        if (speaker, text) not in cache:
            cache[(speaker, text)] = engines[speaker].synthesize(text, voices[speaker], "neutral", "normal", "normal")
        return cache[(speaker, text)]

    return voiced, backchannel, voices, backends


def _voice_turn(engine, t, voice: str):
    """A turn's Speech, or one Speech per part for a turn voiced in parts (mid-turn pause, monologue)."""
    if t.parts is None:
        return engine.synthesize(t.text, voice, t.emotion, t.pitch, t.speed)
    return [engine.synthesize(x, voice, t.emotion, t.pitch, t.speed) for x in t.parts]


def _event_clip(tag: str, cfg: SynthConfig, rng) -> tuple[np.ndarray, str]:
    if cfg.events_dir:
        got = scenes.pick_clip(cfg.events_dir, rng, tag)
        if got is not None:
            return got[0], got[2]
    return scenes.synth_event(tag, rng), "procedural"


def add_scene(mix: dict, script: Script, cfg: SynthConfig, rng: np.random.Generator, events: dict) -> list[dict]:
    """Mix events / music / noise into ``mix["user"]`` in place; returns ``meta.events`` entries.
    ``events`` maps a turn index (in ``mix["turns"]``) to its prepared event clip."""
    user, out = mix["user"], []
    n = len(user)
    speech = [t for t in mix["turns"] if t["speaker"] == "user"] or mix["turns"]
    ref = float(np.mean([scenes.power(mix[t["speaker"]][int(t["start_s"] * SR):int(t["end_s"] * SR)])
                         for t in speech]))
    lo, hi = cfg.scene_snr_db
    for k, (clip, source) in events.items():
        t = mix["turns"][k]
        end = t["start_s"] - EVENT_GAP_S
        start = max(0.0, end - len(clip) / SR)
        clip = clip[: int((end - start) * SR)] if end > start else clip[: int(0.3 * SR)]
        snr = float(rng.uniform(lo, hi))
        scenes._place(user, scenes.scale_to_snr(clip, ref, snr), int(start * SR))
        out.append({"tag": t["event"], "type": "event", "channel": "user", "start_s": round(start, 4),
                    "end_s": round(start + len(clip) / SR, 4), "snr_db": round(snr, 2), "source": source})
    if script.music is not None:
        mu = script.music
        if cfg.music_dir:
            wave, _tag, source = scenes.pick_clip(cfg.music_dir, rng)
            bed = scenes.loop_to(wave, n)
        else:
            bed, source = scenes.synth_music(n / SR, rng, mu.tempo_bpm, mu.key, mu.mode, mu.timbre), "procedural"
        snr = float(rng.uniform(lo, hi))
        user += scenes.scale_to_snr(_fit_len(bed, n), ref, snr)
        out.append({"tag": "music", "type": "music", "channel": "user", "start_s": 0.0, "end_s": round(n / SR, 4),
                    "snr_db": round(snr, 2), "source": source, **mu.model_dump()})
    if cfg.noise_dir:
        wave, kind, source = scenes.pick_clip(cfg.noise_dir, rng)
        noise = scenes.loop_to(wave, n)
    else:
        (noise, kind), source = scenes.synth_noise(n / SR, rng), "procedural"
    snr = float(rng.uniform(*cfg.noise_snr_db))
    user += scenes.scale_to_snr(_fit_len(noise, n), ref, snr)
    out.append({"tag": f"noise:{kind}", "type": "noise", "channel": "user", "start_s": 0.0,
                "end_s": round(n / SR, 4), "snr_db": round(snr, 2), "source": source})
    peak = max(np.abs(user).max(), np.abs(mix["assistant"]).max())
    if peak > 0.98:  # keep headroom: scale both channels together (levels stay relative)
        user *= np.float32(0.98 / peak)
        mix["assistant"] *= np.float32(0.98 / peak)
    return out


def _fit_len(x: np.ndarray, n: int) -> np.ndarray:
    """Exactly ``n`` samples: procedural clips made from a duration in seconds can come out one
    sample short or long after rounding."""
    return x[:n] if len(x) >= n else np.pad(x, (0, n - len(x)))


def generate_dialogue(index: int, cfg: SynthConfig, seed: int | None = None, *, asr=None) -> dict:
    """One synthetic two-channel dialogue record (see docs/architecture.md, "The dialogue record").

    ``meta["qc"]`` holds ``{"passed", "reasons", ...metrics}``; a consumer drops records that
    did not pass and logs the reasons. ``asr`` overrides the Whisper model of ``cfg.qc_asr_path``.
    """
    seed = cfg.seed if seed is None else seed
    V.check_voices(cfg)  # one line naming a bad voice (cached per config)
    rngs = dialogue_rngs(index, seed)
    script = write_script(index, cfg, rngs["script"], seed)
    voiced, backchannel, voices, backends = voice_script(script, cfg, rngs["voice"])
    ev_clips = {i: _event_clip(t.event, cfg, rngs["scene"]) for i, t in enumerate(script.turns) if t.event}
    reserve = {i: len(c) / SR + EVENT_GAP_S for i, (c, _) in ev_clips.items()}
    mix = assemble(voiced, rngs["duplex"], pause_mean_s=cfg.pause_mean_s, pause_std_s=cfg.pause_std_s,
                   backchannel_prob=cfg.backchannel_prob, backchannel_tts=backchannel, min_pause_before_s=reserve,
                   behaviours=Behaviours.from_config(cfg))
    main_idx = [k for k, t in enumerate(mix["turns"]) if t["kind"] == "turn"]
    events = {main_idx[i]: clip for i, clip in ev_clips.items()}
    meta_events = add_scene(mix, script, cfg, rngs["scene"], events)
    key = f"syn-{index:06d}"
    meta = {"id": key, "source": "synthetic", "scenario": script.scenario, "topic": script.topic,
            "sample_rate_hz": SR, "duration_s": mix["duration_s"], "voices": voices, "seed": int(seed),
            "index": int(index), "turns": mix["turns"], "events": sorted(meta_events, key=lambda e: e["start_s"]),
            "tts": backends}
    for t in meta["turns"]:
        t["tts"] = backends[t["speaker"]]
    meta["behaviours"] = count_behaviours(mix["turns"], react_max_s=cfg.interrupt_react_s[1])
    record = {"key": key, "meta": meta, "user": mix["user"], "assistant": mix["assistant"]}
    if asr is None and cfg.qc_max_wer is not None:
        if not cfg.qc_asr_path:
            raise ValueError("synth.qc_max_wer is set but synth.qc_asr_path is not: give a local faster-whisper "
                             "model folder, or pass asr= to generate_dialogue, or set synth.qc_max_wer=null")
        asr = whisper_asr(cfg.qc_asr_path)
    clean = _clean_turns(mix["turns"], voiced) if asr is not None else None
    meta["qc"] = run_qc(record, asr=asr, max_wer=cfg.qc_max_wer if cfg.qc_max_wer is not None else 0.05, clean=clean)
    return record


def _clean_turns(turns: list[dict], voiced) -> list:
    """Per meta turn, the clean TTS audio of main turns (cut to what was voiced) for ASR QC."""
    main = iter(voiced)
    out = []
    for t in turns:
        if t["kind"] != "turn":
            out.append(None)
            continue
        _, sp = next(main)
        if isinstance(sp, list):  # voiced in parts: ASR hears the parts one after another
            sp = Speech(wave=np.concatenate([x.wave for x in sp]))
        if t["interrupted"] and t["words"] and sp.words:
            wave_start_s = t["words"][0]["start_s"] - sp.words[0].start_s
            out.append(sp.wave[: int((t["end_s"] - wave_start_s + 0.02) * SR)])
        else:
            out.append(sp.wave)
    return out
