"""Dialogue scripts: the pydantic schema every writer must produce, the seeded template writer,
and the duplex plan (which user turns interrupt).

The OpenAI-compatible writer lives in :mod:`data_prep.synth.llm` and returns the same
:class:`Script`.
"""
from __future__ import annotations

import re
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from omni.config import EMOTIONS, PITCHES, SPEEDS, SynthConfig

from . import catalogue as C

Scenario = Literal["chitchat", "emotion", "event", "music"]
EVENT_TAGS = tuple(C.EVENTS)
KEYS = ("C", "D", "E", "F", "G", "A", "B")


class MusicSpec(BaseModel):
    """The music bed under the user channel (music scenario)."""
    model_config = ConfigDict(extra="forbid")
    tempo_bpm: int = Field(ge=40, le=200)
    key: Literal[KEYS] = "C"
    mode: Literal["major", "minor"] = "major"
    timbre: Literal[tuple(C.MUSIC_TIMBRES)] = "piano"


class ScriptTurn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    speaker: Literal["user", "assistant"]
    text: str = Field(min_length=1, max_length=600)
    emotion: Literal[EMOTIONS] = "neutral"
    pitch: Literal[PITCHES] = "normal"
    speed: Literal[SPEEDS] = "normal"
    event: Literal[EVENT_TAGS] | None = None
    """A sound heard in the user's room just before this turn starts (tag from the catalogue)."""
    interrupts: bool = False
    """user turns only: starts before the previous assistant turn has finished."""
    parts: list[str] | None = None
    """Set by the duplex plan (:func:`plan_turn_shapes`): the turn is voiced in these parts, each on its
    own, with silence between them; ``" ".join(parts) == text``."""
    parts_kind: Literal["pause", "monologue"] | None = None
    """``pause``: a mid-turn pause after a comma; ``monologue``: one sentence per part, with gaps."""

    @field_validator("text")
    @classmethod
    def _has_words(cls, v: str) -> str:
        v = " ".join(v.split())
        if not re.search(r"[A-Za-z]", v):
            raise ValueError("text must contain words")
        return v

    @model_validator(mode="after")
    def _parts(self):
        if (self.parts is None) != (self.parts_kind is None):
            raise ValueError("parts and parts_kind go together")
        if self.parts is not None:
            if self.speaker != "user" or self.interrupts or len(self.parts) < 2:
                raise ValueError("only a user turn that does not interrupt can be voiced in >= 2 parts")
            if " ".join(self.parts) != self.text:
                raise ValueError(f"parts {self.parts} do not join to the turn's text {self.text!r}")
        return self


class Script(BaseModel):
    """One dialogue script: user speaks first, speakers alternate, 2..8 turns."""
    model_config = ConfigDict(extra="forbid")
    scenario: Scenario
    topic: str = ""
    music: MusicSpec | None = None
    turns: list[ScriptTurn] = Field(min_length=2, max_length=8)

    @model_validator(mode="after")
    def _alternate(self):
        for i, t in enumerate(self.turns):
            want = "user" if i % 2 == 0 else "assistant"
            if t.speaker != want:
                raise ValueError(f"turn {i} must be spoken by {want} (user first, then alternate)")
            if t.interrupts and (t.speaker != "user" or i == 0):
                raise ValueError(f"turn {i}: only a user turn after an assistant turn can interrupt")
        if self.scenario == "music" and self.music is None:
            raise ValueError("a music scenario needs a 'music' spec (tempo_bpm, key, mode, timbre)")
        return self


# --------------------------------------------------------------------------- template
class _Slots(dict):
    """Lazily drawn slot values: topic slots stay fixed within a dialogue, phrase slots vary."""
    _FRESH = {"greet", "ack", "filler", "thanks", "bye"}

    def __init__(self, rng: np.random.Generator, extra: dict[str, str] | None = None):
        super().__init__(extra or {})
        self.rng = rng

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def __missing__(self, key: str) -> str:
        base, _, suffix = key.partition("_")
        if suffix == "cap":
            v = self[base]
            return v[0].upper() + v[1:]
        if key in ("activity_ger",):
            return self["activity"]
        if key == "time_past":
            return self.pick(("last week", "yesterday", "this morning", "a few days ago", "last month"))
        if key == "time_now":
            return self.pick(("right now", "tonight", "this afternoon", "at the moment"))
        if key not in C.SLOTS:
            raise KeyError(f"template slot {{{key}}} has no filler in the catalogue")
        v = self.pick(C.SLOTS[key])
        if key not in self._FRESH:
            self[key] = v
        return v


_ALT = re.compile(r"\[([^\[\]]*\|[^\[\]]*)\]")


def _fill(template: str, slots: _Slots) -> str:
    """Expand inline alternations ``[a|b|c]`` (one drawn each), then ``{slots}``."""
    template = _ALT.sub(lambda m: slots.pick(m.group(1).split("|")), template)
    text = template.format_map(slots)
    text = " ".join(text.split())
    return text[0].upper() + text[1:]


def _decap(text: str) -> str:
    """Lower-case the first letter unless it starts the pronoun I or a name-like token."""
    return text if text.startswith(("I ", "I'")) else text[0].lower() + text[1:]


def _draw(rng, pool, used: set):
    """A template from ``pool`` not used yet in this dialogue (when possible)."""
    free = [t for t in pool if t not in used] or list(pool)
    t = free[int(rng.integers(len(free)))]
    used.add(t)
    return t


def _style(rng, emotion="neutral") -> dict:
    return {"emotion": emotion,
            "pitch": str(rng.choice(PITCHES, p=[0.2, 0.6, 0.2])),
            "speed": str(rng.choice(SPEEDS, p=[0.2, 0.6, 0.2]))}


class TemplateWriter:
    """Seeded template writer: ``write(rng, scenario, n_turns) -> Script`` (no network)."""

    hesitation_prob = 0.25
    lead_prob = 0.4  # emotion scenario: an empathic lead before the assistant's reply
    tail_prob = 0.4  # a closing sentence after an assistant turn
    user_tail_prob = 0.25  # a short remark after a user turn

    def write(self, rng: np.random.Generator, scenario: str, n_turns: int) -> Script:
        if not 2 <= n_turns <= 8:
            raise ValueError(f"n_turns must be in 2..8 (got {n_turns})")
        used: set = set()
        slots = _Slots(rng)
        make = getattr(self, f"_{scenario}", None)
        if make is None:
            raise ValueError(f"unknown scenario {scenario!r}: choose chitchat, emotion, event or music")
        turns, topic, music = make(rng, n_turns, slots, used)
        self._compose(rng, scenario, turns, slots)
        for t in turns:
            if t["speaker"] == "user" and rng.random() < self.hesitation_prob:
                t["text"] = f"{slots.pick(C.SLOTS['filler'])} {_decap(t['text'])}"
                t["text"] = t["text"][0].upper() + t["text"][1:]
        return Script(scenario=scenario, topic=topic, music=music, turns=[ScriptTurn(**t) for t in turns])

    def _compose(self, rng, scenario, turns, slots):
        """Attach independently drawn optional parts (a lead and/or a tail sentence) to turns, so
        that dialogues built from the same templates still differ. Closing turns are left alone."""
        n = len(turns)
        closing = {n - 2, n - 1} if n >= 6 else set()
        emo = scenario == "emotion"
        tone = C.EMOTION_TONE.get(turns[0]["emotion"], "neutral")
        for i, t in enumerate(turns):
            if i in closing:
                continue
            if t["speaker"] == "assistant":
                if emo and rng.random() < self.lead_prob:
                    t["text"] = f"{_fill(slots.pick(C.EMPATHY_LEADS[tone]), slots)} {t['text']}"
                if rng.random() < self.tail_prob:
                    pool = C.EMPATHY_TAILS[tone] if emo else C.ASSISTANT_TAILS
                    t["text"] = f"{t['text']} {_fill(slots.pick(pool), slots)}"
            elif not t.get("event") and rng.random() < self.user_tail_prob:  # not on the reaction to a sound
                pool = C.EMOTION_USER_TAILS if emo else C.USER_TAILS
                t["text"] = f"{t['text']} {_fill(slots.pick(pool), slots)}"

    # each builder returns (turns, topic, music)
    def _closing(self, rng, i, n, slots, used, user_pool, asst_pool, user_style, asst_style):
        last_pair = i >= n - 2 and n >= 6
        if i % 2 == 0:
            pool = C.SLOTS["thanks"] if last_pair else user_pool
            return {"speaker": "user", "text": _fill(_draw(rng, pool, used), slots), **user_style()}
        pool = C.SLOTS["bye"] if last_pair and i == n - 1 else asst_pool
        return {"speaker": "assistant", "text": _fill(_draw(rng, pool, used), slots), **asst_style()}

    def _chitchat(self, rng, n, slots, used):
        family = str(rng.choice(list(C.CHITCHAT_FAMILIES)))
        fam = C.CHITCHAT_FAMILIES[family]
        u_style = lambda: _style(rng, str(rng.choice(["neutral", "happy"], p=[0.7, 0.3])))
        a_style = lambda: _style(rng, str(rng.choice(["neutral", "happy"], p=[0.8, 0.2])))
        turns = [{"speaker": "user", "text": _fill(_draw(rng, fam["user_open"], used), slots), **u_style()}]
        for i in range(1, n):
            asst = fam["assistant"] if i == 1 else fam["assistant_follow"]
            turns.append(self._closing(rng, i, n, slots, used, fam["user_follow"], asst, u_style, a_style))
        topic = next((slots[k] for k in ("activity", "place", "food", "thing", "show", "task") if k in slots), family)
        return turns, f"{family}:{topic}", None

    def _emotion(self, rng, n, slots, used):
        emo = str(rng.choice(list(C.EMOTION)))
        situations, replies, (a_emo, a_pitch, a_speed) = C.EMOTION[emo]
        u_style = lambda: {"emotion": emo, "pitch": str(rng.choice(PITCHES)), "speed": str(rng.choice(SPEEDS))}
        a_style = lambda: {"emotion": a_emo, "pitch": a_pitch, "speed": a_speed}
        turns = [{"speaker": "user", "text": _fill(_draw(rng, situations, used), slots), **u_style()}]
        for i in range(1, n):
            turns.append(self._closing(rng, i, n, slots, used, C.EMOTION_FOLLOW, replies + C.EMOTION_SUPPORT,
                                       u_style, a_style))
        return turns, f"emotion:{emo}", None

    def _event(self, rng, n, slots, used):
        tag = str(rng.choice(EVENT_TAGS))
        spec = C.EVENTS[tag]
        slots["desc"] = slots.pick(spec["desc"])
        at = 0 if n < 4 else 2  # the user turn that reacts to the sound
        react = "fearful" if tag in ("alarm", "siren", "thunder") else str(rng.choice(["surprised", "neutral"]))
        turns = []
        for i in range(n):
            if i == at:
                turns.append({"speaker": "user", "text": _fill(_draw(rng, C.EVENT_USER, used), slots),
                              "event": tag, **_style(rng, react)})
            elif i == at + 1:
                text = _fill(_draw(rng, spec["advice"], used), slots)
                if rng.random() < 0.5:
                    text = f"{_fill(slots.pick(C.EVENT_NOTICE), slots)} {text}"
                turns.append({"speaker": "assistant", "text": text, **_style(rng)})
            elif i == 0:
                turns.append({"speaker": "user", "text": _fill(_draw(rng, C.EVENT_OPEN, used), slots), **_style(rng)})
            elif i == 1:
                turns.append({"speaker": "assistant", "text": _fill(_draw(rng, C.EVENT_OPEN_REPLY, used), slots),
                              **_style(rng)})
            else:
                turns.append(self._closing(rng, i, n, slots, used, C.EVENT_FOLLOW, C.EVENT_FOLLOW_REPLY,
                                           lambda: _style(rng), lambda: _style(rng)))
        return turns, f"event:{tag}", None

    def _music(self, rng, n, slots, used):
        tempo_word, lo, hi = C.MUSIC_TEMPO[int(rng.integers(len(C.MUSIC_TEMPO)))]
        bpm = int(rng.integers(lo, hi + 1))
        mode = str(rng.choice(["major", "minor"]))
        timbre = str(rng.choice(list(C.MUSIC_TIMBRES)))
        key = str(rng.choice(KEYS))
        slots.update(tempo_word=tempo_word, bpm_words=C.number_words(bpm), mode=mode, key=key,
                     timbre=C.MUSIC_TIMBRES[timbre], mood=slots.pick(C.MUSIC_MODES[mode]))
        a_style = lambda: _style(rng, "happy" if mode == "major" else "neutral")
        turns = [{"speaker": "user", "text": _fill(_draw(rng, C.MUSIC_USER, used), slots), **_style(rng)},
                 {"speaker": "assistant", "text": _fill(_draw(rng, C.MUSIC_ASSISTANT, used), slots), **a_style()}]
        for i in range(2, n):
            turns.append(self._closing(rng, i, n, slots, used, C.MUSIC_FOLLOW, C.MUSIC_ANSWER,
                                       lambda: _style(rng), a_style))
        return turns[:n], f"music:{tempo_word}-{mode}-{timbre}", MusicSpec(tempo_bpm=bpm, key=key, mode=mode, timbre=timbre)


def plan_interruptions(script: Script, rng: np.random.Generator, interrupt_prob: float) -> Script:
    """Mark user turns that interrupt the preceding assistant turn (probability ``interrupt_prob``)
    and prefix them with an interjection. Turns already marked by the writer are kept."""
    turns = [t.model_copy() for t in script.turns]
    for i in range(1, len(turns)):
        t, prev = turns[i], turns[i - 1]
        closing = len(turns) >= 6 and i >= len(turns) - 2  # "thanks" turns: no interruption
        if t.speaker != "user" or len(prev.text.split()) < 4 or closing:
            continue
        if rng.random() < interrupt_prob and not t.interrupts:
            lead = C.INTERJECTIONS[int(rng.integers(len(C.INTERJECTIONS)))]
            t.text, t.interrupts = f"{lead} {_decap(t.text)}", True
    return script.model_copy(update={"turns": turns})


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")


def split_for_pause(text: str, rng: np.random.Generator) -> list[str] | None:
    """``[first, second]``: ``text`` cut at a word boundary, the first part ending with a comma, as
    ``data_prep.fdb_tasks``' pause-handling clips are (cut after word 2..n-3); None under 5 words."""
    words = text.split()
    if len(words) < 5:
        return None
    cut = int(rng.integers(2, len(words) - 2))
    return [" ".join(words[:cut]).rstrip(",.?!;:") + ",", " ".join(words[cut:])]


def monologue_sentences(text: str, k: int, hi: int, rng: np.random.Generator) -> list[str]:
    """``text`` as a monologue of at least ``k`` (at most ``hi``) sentences: its own sentences, plus
    catalogue sentences (:data:`catalogue.MONOLOGUE_SENTENCES`) inserted before a closing question
    (appended otherwise); sentences past ``hi`` are merged into the last one."""
    sents = _SENTENCE_END.split(text)
    if len(sents) < k:
        used: set = set()
        slots = _Slots(rng)
        extra = [_fill(_draw(rng, C.MONOLOGUE_SENTENCES, used), slots) for _ in range(k - len(sents))]
        at = len(sents) - 1 if sents[-1].endswith("?") else len(sents)
        sents = sents[:at] + extra + sents[at:]
    if len(sents) > hi:
        sents = sents[:hi - 1] + [" ".join(sents[hi - 1:])]
    return sents


def plan_turn_shapes(script: Script, rng: np.random.Generator, cfg: SynthConfig) -> Script:
    """Duplex plan, after :func:`plan_interruptions`: each user turn that does not interrupt becomes,
    with ``synth.mid_turn_pause_prob``, a turn with a mid-turn pause (two parts, the first ending with
    a comma) or, with ``synth.monologue_prob``, a monologue of ``synth.monologue_sentences`` sentences.
    The text of such a turn is its parts joined by spaces. Draws nothing when both are 0, so corpora
    without these behaviours are unchanged."""
    if cfg.mid_turn_pause_prob <= 0 and cfg.monologue_prob <= 0:
        return script
    turns = [t.model_copy() for t in script.turns]
    lo, hi = cfg.monologue_sentences
    for t in turns:
        if t.speaker != "user" or t.interrupts or t.parts is not None:
            continue
        u = rng.random()
        parts, kind = None, None
        if u < cfg.mid_turn_pause_prob:
            parts, kind = split_for_pause(t.text, rng), "pause"
        elif u < cfg.mid_turn_pause_prob + cfg.monologue_prob:
            parts, kind = monologue_sentences(t.text, int(rng.integers(lo, hi + 1)), hi, rng), "monologue"
        if parts and len(parts) >= 2:
            t.text, t.parts, t.parts_kind = " ".join(parts), parts, kind
    return script.model_copy(update={"turns": [ScriptTurn(**t.model_dump()) for t in turns]})


def draw_outline(index: int, cfg: SynthConfig, rng: np.random.Generator) -> tuple[str, int]:
    """(scenario, n_turns) for one dialogue: scenarios cycle by index so that each appears evenly."""
    scenario = cfg.scenarios[index % len(cfg.scenarios)]
    return scenario, int(rng.integers(cfg.min_turns, cfg.max_turns + 1))
