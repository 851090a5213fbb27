"""Serving hook: one user utterance (+ optional history) -> reply text, style, voiced audio.

    chat = Responder("outputs/omnichat_tiny/checkpoints/omnichat/export", tts=get_tts("espeak"))
    out = chat.respond(wave_16k)                   # {"text", "style", "audio", "sample_rate_hz", "history"}
    out2 = chat.respond(next_wave, history=out["history"])

``history`` is a list of turns, oldest first: ``{"role": "user", "wave": float32 16 kHz}`` or
``{"role": "assistant", "text": str, "style": {"emotion", "pitch", "speed"}}``; the reply's
``history`` is the input history plus this round (cut to ``omnichat.max_history_turns``
rounds). The reply is voiced by the TTS the caller passes in (anything with
``synthesize(text, voice=..., emotion=..., pitch=..., speed=...)`` returning an object whose
``wave`` is float32 at 16 kHz, e.g. ``data_prep.synth.tts.get_tts("espeak")``): ``omni`` does not
import ``data_prep``, so jobs, Serve and tests inject it.
"""
from __future__ import annotations

import threading
from typing import Protocol

import numpy as np
import torch

from omni.omnichat.data import Segment, check_style, parse_response, response_ids
from omni.omnichat.model import load_omnichat

SAMPLE_RATE_HZ = 16000
MAX_UTTERANCE_S = 60.0


def _wave(w, what: str) -> np.ndarray:
    arr = np.asarray(w, dtype=np.float32)
    if arr.ndim != 1 or arr.size < SAMPLE_RATE_HZ // 10:
        raise ValueError(f"{what} must be mono float32 audio at 16 kHz, at least 0.1 s long (got shape {arr.shape})")
    if arr.size > MAX_UTTERANCE_S * SAMPLE_RATE_HZ:
        raise ValueError(f"{what} is {arr.size / SAMPLE_RATE_HZ:.1f} s long; the limit is {MAX_UTTERANCE_S:.0f} s")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} holds NaN or inf samples")
    return arr


class TTS(Protocol):
    """What :class:`Responder` needs of a TTS: the style-controlled synthesis of one reply."""

    def synthesize(self, text: str, voice: str, emotion: str, pitch: str, speed: str): ...


class Responder:
    """Loads an OmniChat export once; ``respond`` is thread-safe (one decode at a time). ``tts``
    voices the reply in the predicted style (:class:`TTS`); ``None`` answers text and style only
    (``audio`` empty)."""

    def __init__(self, export_dir, tts: TTS | None):
        self.model, self.export = load_omnichat(export_dir)
        self.text_tokenizer = self.export.text_tokenizer
        self.tts = tts
        self._lock = threading.Lock()

    def prefix(self, wave: np.ndarray, history: list[dict] | None) -> list[Segment]:
        v, oc = self.model.vocab, self.model.oc
        if oc.input != "audio":
            raise ValueError("this export is the ASR-text baseline (omnichat.input=asr_text): it answers "
                             "transcripts, not audio; serve an audio OmniChat export")
        segs: list[Segment] = []
        hist = list(history or [])
        for i, turn in enumerate(hist):
            role = turn.get("role")
            if role == "user":
                segs += [Segment("ids", [v.special("user_speech")]), Segment("audio", wave=_wave(turn.get("wave"),
                         f"history[{i}].wave")), Segment("ids", [v.special("eot"), v.special("assistant_text")])]
            elif role == "assistant":
                text = str(turn.get("text") or "")
                ids = self.text_tokenizer.encode(text) if text else []
                segs.append(Segment("ids", response_ids(v, ids, check_style(turn.get("style") or {}),
                                                        self.model.oc.style_position)))
            else:
                raise ValueError(f"history[{i}].role must be 'user' or 'assistant', got {role!r}")
        segs += [Segment("ids", [v.special("user_speech")]), Segment("audio", wave=_wave(wave, "wave")),
                 Segment("ids", [v.special("eot"), v.special("assistant_text")])]
        return segs

    def reply_ids(self, wave, history: list[dict] | None = None) -> list[int]:
        with self._lock, torch.no_grad():
            return self.model.generate(self.prefix(wave, history))

    def respond(self, wave, history: list[dict] | None = None, voice: str | None = None) -> dict:
        ids = self.reply_ids(wave, history)
        text_ids, style, complete = parse_response(ids, self.model.vocab)
        text = self.text_tokenizer.decode(text_ids).strip()
        audio = (self.tts.synthesize(text, voice=voice or self.model.oc.voice, **style).wave
                 if text and self.tts is not None else np.zeros(0, np.float32))
        rounds = (list(history or []) + [{"role": "user", "wave": np.asarray(wave, np.float32)},
                                         {"role": "assistant", "text": text, "style": style}])
        keep = 2 * self.model.oc.max_history_turns
        return {"text": text, "style": style, "style_complete": complete, "audio": audio.astype(np.float32),
                "sample_rate_hz": SAMPLE_RATE_HZ, "history": rounds[-keep:] if keep else []}
