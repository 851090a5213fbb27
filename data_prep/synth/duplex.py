"""Duplex assembly: from voiced turns to a two-channel (user, assistant) timeline.

* Pauses between turns ~ Normal(pause_mean_s, pause_std_s) clipped at 0, measured between
  voiced regions (silence that a listener hears), not between padded waves.
* A user turn marked ``interrupts`` starts while the assistant is still speaking: the
  assistant voices its first ``k`` words, the user starts ``react_s`` ~ U(0.2, 0.6) s before the
  end of word ``k``, and the assistant audio is cut right after that word (20 ms fade). The
  assistant's ``spoken_text`` is the script text up to that word, so text and audio agree.
* With ``backchannel_prob`` per turn, the listener says a short "mm-hm" (``kind="backchannel"``)
  in a gap between two of the speaker's words, on the listener's own channel.

Duplex behaviours (:class:`Behaviours`, from ``synth.*``; all off by default):

* A user turn voiced in parts (``ScriptTurn.parts``, planned by ``scripts.plan_turn_shapes``) is
  laid out as one turn: its parts one after another with silence between them, a *mid-turn pause*
  (``pause_s``) after a comma, or the *gaps of a monologue* (``monologue_gap_s``). Its turn dict
  keeps one user turn and records ``pauses`` ([start_s, end_s] of each silence) and ``parts_kind``.
  Nothing of the assistant's is placed inside a pause; in a monologue gap the assistant says a
  short backchannel with ``monologue_backchannel_prob`` (voiced <= ``backchannel_max_s``, wholly
  inside the gap, which is then drawn from the part of the range long enough to hold it).
* ``response_delay``: the assistant's reply starts ~ Normal(mean, std) clipped to [lo, hi] after
  the user's voiced end (instead of the generic pause).
* ``react_s``: the range of ``react_s`` of interruptions above (default 0.2-0.6 s).

:func:`count_behaviours` counts, from the rendered turn timings, how often each behaviour occurs.

All times are seconds on the shared timeline; turn spans are the voiced region of the audio.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from omni import vad

from .catalogue import BACKCHANNELS, SHORT_BACKCHANNELS
from .scripts import ScriptTurn
from .tts import SAMPLE_RATE_HZ as SR, Speech, Word

FADE_S = 0.02
TAIL_S = 0.3


def voiced_span(wave: np.ndarray, frame_ms: float = 5.0, thresh_db: float = -40.0) -> tuple[float, float]:
    """(onset_s, offset_s) of a clean TTS utterance: the region above ``thresh_db`` relative to the
    loudest ``frame_ms`` frame (:func:`omni.vad.voiced_span`, the project's one VAD module)."""
    return vad.voiced_span(wave, SR, frame_ms=frame_ms, rel_db=thresh_db)


BC_LEAD_S = (0.05, 0.15)   # a monologue backchannel starts this long into its gap (uniform)
BC_MARGIN_S = 0.05         # and ends at least this long before the next sentence


@dataclass(frozen=True)
class Behaviours:
    """Duplex behaviour settings of :func:`assemble` (see the module docstring); the defaults are the
    generator's behaviour before issue 19."""
    response_delay: tuple[float, float, float, float] | None = None  # mean, std, lo, hi (seconds)
    react_s: tuple[float, float] = (0.2, 0.6)
    pause_s: tuple[float, float] = (0.5, 2.2)
    monologue_gap_s: tuple[float, float] = (0.3, 0.8)
    monologue_backchannel_prob: float = 0.0
    backchannel_max_s: float = 0.7

    @classmethod
    def from_config(cls, cfg) -> "Behaviours":
        """From a :class:`omni.config.SynthConfig`."""
        delay = None
        if cfg.response_delay_mean_s is not None:
            delay = (cfg.response_delay_mean_s, cfg.response_delay_std_s, *cfg.response_delay_range_s)
        return cls(response_delay=delay, react_s=tuple(cfg.interrupt_react_s), pause_s=tuple(cfg.mid_turn_pause_s),
                   monologue_gap_s=tuple(cfg.monologue_gap_s),
                   monologue_backchannel_prob=cfg.monologue_backchannel_prob,
                   backchannel_max_s=cfg.backchannel_max_s)


@dataclass
class _Composite:
    """A turn voiced in parts, laid out on its own local timeline (wave sample 0 = time 0)."""
    speech: Speech
    onset_s: float
    offset_s: float
    pauses: list[tuple[float, float]]
    backchannels: list[tuple[Speech, str, float, float, float]]  # speech, text, local start, onset, offset


def _compose(turn: ScriptTurn, parts: list[Speech], rng: np.random.Generator, beh: Behaviours,
             backchannel_tts: Callable[[str, str], Speech] | None) -> _Composite:
    spans = [voiced_span(sp.wave) for sp in parts]
    lo0, hi0 = beh.pause_s if turn.parts_kind == "pause" else beh.monologue_gap_s
    at = [0]                                  # sample where each part's wave starts
    pauses, bcs = [], []
    for i in range(1, len(parts)):
        prev_off = at[i - 1] / SR + spans[i - 1][1]
        lo, bc = lo0, None
        if (turn.parts_kind == "monologue" and backchannel_tts is not None and beh.monologue_backchannel_prob > 0
                and rng.random() < beh.monologue_backchannel_prob):
            text = SHORT_BACKCHANNELS[int(rng.integers(len(SHORT_BACKCHANNELS)))]
            sp = backchannel_tts("assistant" if turn.speaker == "user" else "user", text)
            b_on, b_off = voiced_span(sp.wave)
            lead = float(rng.uniform(*BC_LEAD_S))
            need = lead + (b_off - b_on) + BC_MARGIN_S
            if b_off - b_on <= beh.backchannel_max_s and need <= hi0:
                lo, bc = max(lo0, need), (sp, text, lead, b_on, b_off)
        gap = float(rng.uniform(lo, hi0))
        on_i = prev_off + gap
        at.append(int(round((on_i - spans[i][0]) * SR)))
        pauses.append((prev_off, at[i] / SR + spans[i][0]))
        if bc is not None:
            sp, text, lead, b_on, b_off = bc
            bcs.append((sp, text, prev_off + lead, b_on, b_off))
    n = max(a + len(sp.wave) for a, sp in zip(at, parts))
    wave = np.zeros(n, np.float32)
    words, char0 = [], 0
    for a, sp, text in zip(at, parts, turn.parts):
        wave[a:a + len(sp.wave)] += sp.wave
        words += [Word(w.text, w.start_s + a / SR, w.end_s + a / SR, w.char_start + char0, w.char_end + char0)
                  for w in sp.words]
        char0 += len(text) + 1
    timing = "estimated" if any(sp.timing == "estimated" for sp in parts) else parts[0].timing
    return _Composite(Speech(wave=wave, words=words, timing=timing), spans[0][0], at[-1] / SR + spans[-1][1],
                      pauses, bcs)


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
    pauses: list[tuple[float, float]] | None = None  # composite turns: silences, wave-local seconds


def assemble(voiced: list[tuple[ScriptTurn, Speech | list[Speech]]], rng: np.random.Generator, *,
             pause_mean_s: float, pause_std_s: float, backchannel_prob: float = 0.0, lead_in_s: float = 0.2,
             backchannel_tts: Callable[[str, str], Speech] | None = None,
             min_pause_before_s: dict[int, float] | None = None, behaviours: Behaviours | None = None) -> dict:
    """Lay ``voiced`` turns on a timeline. ``backchannel_tts(listener, text) -> Speech`` voices
    backchannels; ``min_pause_before_s[i]`` reserves room (e.g. for an event sound) before turn i.
    A turn with ``parts`` comes with one Speech per part. Returns ``{"user", "assistant", "turns",
    "duration_s"}`` (turn dicts in time order)."""
    if not voiced:
        raise ValueError("assemble needs at least one voiced turn")
    beh = behaviours or Behaviours()
    placed: list[_Placed] = []
    gap_bcs: list[_Placed] = []
    min_pause_before_s = min_pause_before_s or {}
    for i, (turn, sp) in enumerate(voiced):
        comp = None
        if isinstance(sp, list):
            if turn.parts is None or len(sp) != len(turn.parts):
                raise ValueError(f"turn {i}: {len(sp)} voiced parts for parts {turn.parts}")
            comp = _compose(turn, sp, rng, beh, backchannel_tts)
            sp, (on, off) = comp.speech, (comp.onset_s, comp.offset_s)
        else:
            on, off = voiced_span(sp.wave)
        p = _Placed(turn, sp, 0.0, on, off, spoken_text=turn.text, pauses=comp.pauses if comp else None)
        prev = placed[-1] if placed else None
        if prev is None:
            p.at_s = max(lead_in_s, min_pause_before_s.get(0, 0.0)) - on
        elif turn.interrupts and prev.turn.speaker == "assistant" and len(prev.speech.words) >= 2:
            words = prev.speech.words
            k = int(rng.integers(max(1, len(words) // 3), len(words)))  # assistant voices words[:k]
            cut_local = words[k - 1].end_s
            react_s = float(rng.uniform(*beh.react_s))
            user_on = prev.at_s + max(words[0].start_s + 0.05, cut_local - react_s)
            prev.offset_s, prev.n_words, prev.interrupted = cut_local, k, True
            prev.spoken_text = prev.turn.text[: words[k - 1].char_end]
            prev.interrupted_by = p
            p.at_s = user_on - on
        else:
            if beh.response_delay is not None and turn.speaker == "assistant" and prev.turn.speaker == "user":
                mean, std, lo, hi = beh.response_delay
                gap = float(np.clip(rng.normal(mean, std), lo, hi))
            else:
                gap = float(rng.normal(pause_mean_s, pause_std_s))
            pause = max(0.0, gap, min_pause_before_s.get(i, 0.0))
            p.at_s = prev.at_s + prev.offset_s + pause - on
        placed.append(p)
        for bc, text, start, b_on, b_off in (comp.backchannels if comp else []):
            listener = "assistant" if turn.speaker == "user" else "user"
            gap_bcs.append(_Placed(ScriptTurn(speaker=listener, text=text), bc, p.at_s + start - b_on, b_on, b_off,
                                   kind="backchannel", spoken_text=text))
    placed += gap_bcs
    if backchannel_tts is not None and backchannel_prob > 0:
        placed += _backchannels(placed, rng, backchannel_prob, backchannel_tts)
    return _render(placed)


def _busy(placed: list[_Placed], speaker: str, a_s: float, b_s: float) -> bool:
    return any(p.turn.speaker == speaker and p.at_s + p.onset_s < b_s and a_s < p.at_s + p.offset_s for p in placed)


def _backchannels(placed, rng, prob, tts) -> list[_Placed]:
    out: list[_Placed] = []
    for p in list(placed):
        if p.kind != "turn" or p.pauses is not None:  # a pause stays silent; a monologue has its own
            continue
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
        if p.pauses is not None:
            d["parts_kind"] = p.turn.parts_kind
            d["pauses"] = [[round(float(a / SR + x), 4), round(float(a / SR + y), 4)] for x, y in p.pauses]
        turns.append(d)
    return {"user": chans["user"], "assistant": chans["assistant"], "turns": turns, "duration_s": round(n / SR, 4)}


# ------------------------------------------------------------------------ behaviour counts
BEHAVIOURS = ("mid_turn_pause", "monologue", "monologue_gap", "backchannel_no_takeover", "answer_after_turn_end",
              "yield_to_interruption", "keep_turn_through_backchannel")
"""Keys of ``meta["behaviours"]`` (see :func:`count_behaviours`)."""


def _overlaps(t: dict, a: float, b: float) -> bool:
    return t["start_s"] < b and a < t["end_s"]


def count_behaviours(turns: list[dict], react_max_s: float = 0.6) -> dict[str, int]:
    """How often each duplex behaviour occurs in a rendered dialogue (its meta turns), judged from
    the timings, not from the plan:

    * ``mid_turn_pause``: pauses inside user turns (``parts_kind="pause"``) during which the assistant
      makes no sound at all;
    * ``monologue`` / ``monologue_gap``: user monologue turns / their gaps with no assistant turn
      (backchannels allowed);
    * ``backchannel_no_takeover``: assistant backchannels that start and end inside a user turn (the
      user keeps talking after them);
    * ``answer_after_turn_end``: assistant turns (not backchannels) that start at or after the end of
      the user turn before them;
    * ``yield_to_interruption``: interrupted assistant turns whose voice ends within ``react_max_s``
      after the interrupting user's onset;
    * ``keep_turn_through_backchannel``: user backchannels inside an assistant turn that goes on.
    """
    n = dict.fromkeys(BEHAVIOURS, 0)
    asst = [t for t in turns if t["speaker"] == "assistant"]
    for t in turns:
        if t["speaker"] == "user" and t["kind"] == "turn" and t.get("pauses"):
            if t.get("parts_kind") == "pause":
                n["mid_turn_pause"] += sum(not any(_overlaps(a, x, y) for a in asst) for x, y in t["pauses"])
            elif t.get("parts_kind") == "monologue":
                n["monologue"] += 1
                n["monologue_gap"] += sum(not any(_overlaps(a, x, y) for a in asst if a["kind"] == "turn")
                                          for x, y in t["pauses"])
    users = [t for t in turns if t["speaker"] == "user" and t["kind"] == "turn"]
    for t in turns:
        if t["kind"] == "backchannel":
            hosts = asst if t["speaker"] == "user" else users
            inside = any(h["kind"] == "turn" and h["start_s"] <= t["start_s"] and t["end_s"] < h["end_s"] for h in hosts)
            n["backchannel_no_takeover" if t["speaker"] == "assistant" else "keep_turn_through_backchannel"] += inside
    for a in asst:
        if a["kind"] != "turn":
            continue
        before = [u for u in users if u["start_s"] < a["start_s"]]
        if before and a["start_s"] >= before[-1]["end_s"]:
            n["answer_after_turn_end"] += 1
        if a["interrupted"] and "interrupt_at_s" in a and 0 <= a["end_s"] - a["interrupt_at_s"] <= react_max_s + 1e-3:
            n["yield_to_interruption"] += 1
    return n
