"""Duplex assembly: from voiced turns to a two-channel (user, assistant) timeline.

* Pauses between turns ~ Normal(pause_mean_s, pause_std_s) clipped at 0, measured between
  voiced regions (silence that a listener hears), not between padded waves.
* A user turn marked ``interrupts`` starts while the assistant is still speaking: the
  assistant voices its first ``k`` words, the user starts ``react_s`` ~ U(0.2, 0.6) s before the
  end of word ``k``, and the assistant audio is cut right after that word (20 ms fade). The
  assistant's ``spoken_text`` is the script text up to that word, so text and audio agree.
* With ``backchannel_prob`` per turn, the listener says a short "mm-hm" (``kind="backchannel"``)
  in a gap between two of the speaker's words, on the listener's own channel.

All times are seconds on the shared timeline; turn spans are the voiced region of the audio.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from omni import vad

from .catalogue import BACKCHANNELS
from .scripts import ScriptTurn
from .tts import SAMPLE_RATE_HZ as SR, Speech

FADE_S = 0.02
TAIL_S = 0.3


def voiced_span(wave: np.ndarray, frame_ms: float = 5.0, thresh_db: float = -40.0) -> tuple[float, float]:
    """(onset_s, offset_s) of a clean TTS utterance: the region above ``thresh_db`` relative to the
    loudest ``frame_ms`` frame (:func:`omni.vad.voiced_span`, the project's one VAD module)."""
    return vad.voiced_span(wave, SR, frame_ms=frame_ms, rel_db=thresh_db)


@dataclass
class _Placed:
    turn: ScriptTurn
    speech: Speech
    at_s: float            # where wave[0] lands on the timeline
    onset_s: float         # voiced region inside the wave
    offset_s: float
    kind: str = "turn"
    spoken_text: str = ""
    interrupted: bool = False
    interrupted_by: "_Placed | None" = None
    n_words: int | None = None  # words voiced (None = all)


def assemble(voiced: list[tuple[ScriptTurn, Speech]], rng: np.random.Generator, *, pause_mean_s: float,
             pause_std_s: float, backchannel_prob: float = 0.0, lead_in_s: float = 0.2,
             backchannel_tts: Callable[[str, str], Speech] | None = None,
             min_pause_before_s: dict[int, float] | None = None) -> dict:
    """Lay ``voiced`` turns on a timeline. ``backchannel_tts(listener, text) -> Speech`` voices
    backchannels; ``min_pause_before_s[i]`` reserves room (e.g. for an event sound) before turn i.
    Returns ``{"user", "assistant", "turns", "duration_s"}`` (turn dicts in time order)."""
    if not voiced:
        raise ValueError("assemble needs at least one voiced turn")
    placed: list[_Placed] = []
    min_pause_before_s = min_pause_before_s or {}
    for i, (turn, sp) in enumerate(voiced):
        on, off = voiced_span(sp.wave)
        p = _Placed(turn, sp, 0.0, on, off, spoken_text=turn.text)
        prev = placed[-1] if placed else None
        if prev is None:
            p.at_s = max(lead_in_s, min_pause_before_s.get(0, 0.0)) - on
        elif turn.interrupts and prev.turn.speaker == "assistant" and len(prev.speech.words) >= 2:
            words = prev.speech.words
            k = int(rng.integers(max(1, len(words) // 3), len(words)))  # assistant voices words[:k]
            cut_local = words[k - 1].end_s
            react_s = float(rng.uniform(0.2, 0.6))
            user_on = prev.at_s + max(words[0].start_s + 0.05, cut_local - react_s)
            prev.offset_s, prev.n_words, prev.interrupted = cut_local, k, True
            prev.spoken_text = prev.turn.text[: words[k - 1].char_end]
            prev.interrupted_by = p
            p.at_s = user_on - on
        else:
            pause = max(0.0, float(rng.normal(pause_mean_s, pause_std_s)), min_pause_before_s.get(i, 0.0))
            p.at_s = prev.at_s + prev.offset_s + pause - on
        placed.append(p)
    if backchannel_tts is not None and backchannel_prob > 0:
        placed += _backchannels(placed, rng, backchannel_prob, backchannel_tts)
    return _render(placed)


def _busy(placed: list[_Placed], speaker: str, a_s: float, b_s: float) -> bool:
    return any(p.turn.speaker == speaker and p.at_s + p.onset_s < b_s and a_s < p.at_s + p.offset_s for p in placed)


def _backchannels(placed, rng, prob, tts) -> list[_Placed]:
    out: list[_Placed] = []
    for p in list(placed):
        words = p.speech.words[: p.n_words] if p.n_words else p.speech.words
        if len(words) < 5 or rng.random() >= prob:
            continue
        listener = "assistant" if p.turn.speaker == "user" else "user"
        text = BACKCHANNELS[int(rng.integers(len(BACKCHANNELS)))]
        j = int(rng.integers(1, len(words) - 2))  # after word j, well before the turn's end
        bc = tts(listener, text)
        on, off = voiced_span(bc.wave)
        start = p.at_s + words[j].end_s + float(rng.uniform(0.0, 0.15))
        end = start + (off - on)
        if end > p.at_s + p.offset_s or _busy(placed + out, listener, start - 0.1, end + 0.1):
            continue
        turn = ScriptTurn(speaker=listener, text=text)
        out.append(_Placed(turn, bc, start - on, on, off, kind="backchannel", spoken_text=text))
    return out


def _render(placed: list[_Placed]) -> dict:
    shift = -min(min(p.at_s for p in placed), 0.0)  # never place audio before t=0
    for p in placed:
        p.at_s += shift
    total = max(p.at_s + len(p.speech.wave) / SR for p in placed) + TAIL_S
    n = int(np.ceil(total * SR))
    chans = {"user": np.zeros(n, np.float32), "assistant": np.zeros(n, np.float32)}
    turns = []
    onset = {id(p): round(float(int(round(p.at_s * SR)) / SR + p.onset_s), 4) for p in placed}
    for p in sorted(placed, key=lambda q: (q.at_s + q.onset_s, q.kind)):
        wave = p.speech.wave
        if p.interrupted:  # cut right after the last voiced word, with a short fade
            cut = int((p.offset_s + FADE_S) * SR)
            wave = wave[:cut].copy()
            f = min(int(FADE_S * SR), len(wave))
            wave[len(wave) - f:] *= np.linspace(1, 0, f, dtype=np.float32)
        a = int(round(p.at_s * SR))
        chans[p.turn.speaker][a:a + len(wave)] += wave[: n - a]
        words = p.speech.words[: p.n_words] if p.n_words else p.speech.words
        d = {"speaker": p.turn.speaker, "text": p.turn.text, "spoken_text": p.spoken_text,
             "start_s": onset[id(p)], "end_s": round(float(a / SR + p.offset_s), 4),
             "emotion": p.turn.emotion, "pitch": p.turn.pitch, "speed": p.turn.speed,
             "kind": p.kind, "interrupted": p.interrupted,
             "words": [{"word": w.text, "start_s": round(float(a / SR + w.start_s), 4),
                       "end_s": round(float(a / SR + w.end_s), 4)}
                       for w in words],
             "word_timing": p.speech.timing}
        if p.interrupted_by is not None:
            d["interrupt_at_s"] = onset[id(p.interrupted_by)]
        if p.turn.interrupts:
            d["interrupts"] = True
        if p.turn.event:
            d["event"] = p.turn.event
        turns.append(d)
    return {"user": chans["user"], "assistant": chans["assistant"], "turns": turns, "duration_s": round(n / SR, 4)}
