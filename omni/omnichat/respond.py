"""Serving hook: one user utterance (+ optional history) -> reply text, style, voiced audio.

    chat = Responder("outputs/omnichat_tiny/checkpoints/omnichat/export")
    out = chat.respond(wave_16k)                   # {"text", "style", "audio", "sample_rate_hz", "history"}
    out2 = chat.respond(next_wave, history=out["history"])

``history`` is a list of turns, oldest first: ``{"role": "user", "wave": float32 16 kHz}`` or
``{"role": "assistant", "text": str, "style": {"emotion", "pitch", "speed"}}``; the reply's
``history`` is the input history plus this round (cut to ``omnichat.max_history_turns``
rounds). The reply is voiced by ``data_prep.synth.tts`` (espeak-ng, style-controlled).
"""
from __future__ import annotations

import threading

import numpy as np
import torch

from omni.omnichat.data import Segment, check_style, parse_response, style_tag_ids

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


class Responder:
    """Loads an OmniChat export once; ``respond`` is thread-safe (one decode at a time)."""

    def __init__(self, export_dir, tts=None):
        from omni.omnichat.model import load_omnichat
        self.model, self.export = load_omnichat(export_dir)
        self.text_tokenizer = self.export.text_tokenizer
        self._tts = tts
        self._lock = threading.Lock()

    @property
    def tts(self):
        if self._tts is None:
            from data_prep.synth.tts import get_tts
            self._tts = get_tts("espeak")
        return self._tts

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
                segs.append(Segment("ids", ids + style_tag_ids(v, check_style(turn.get("style") or {}))
                                    + [v.special("eot")]))
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
                 if text else np.zeros(0, np.float32))
        rounds = (list(history or []) + [{"role": "user", "wave": np.asarray(wave, np.float32)},
                                         {"role": "assistant", "text": text, "style": style}])
        keep = 2 * self.model.oc.max_history_turns
        return {"text": text, "style": style, "style_complete": complete, "audio": audio.astype(np.float32),
                "sample_rate_hz": SAMPLE_RATE_HZ, "history": rounds[-keep:] if keep else []}


_RESPONDERS: dict[str, Responder] = {}


def respond(wave, history: list[dict] | None = None, export_dir: str | None = None) -> dict:
    """Module-level hook for ``POST /v1/respond``: cached :class:`Responder` per export folder.
    ``export_dir`` defaults to ``$OMNICHAT_EXPORT``."""
    import os
    d = export_dir or os.environ.get("OMNICHAT_EXPORT")
    if not d:
        raise ValueError("no OmniChat export: pass export_dir or set OMNICHAT_EXPORT to an export folder")
    if d not in _RESPONDERS:
        _RESPONDERS[d] = Responder(d)
    return _RESPONDERS[d].respond(wave, history)
