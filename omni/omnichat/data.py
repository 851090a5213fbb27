"""OmniChat turn examples from dialogue records, α-mixing over sources, data-scale subsets.

One :class:`TurnExample` per (user turn -> assistant turn) round of a record: the context is up
to ``omnichat.max_history_turns`` previous rounds (user audio, assistant text + style tags)
plus the current user audio; the target is the current assistant response: its text ids,
then the style tags ``<pitch_*> <speed_*> <emotion_*>`` and ``<eot>``. Loss on the target only.

Sequence layout (``[x]`` = special token, ``<audio>`` = Mix-Former tokens of that turn)::

    ([user_speech] <audio> [eot] [assistant_text] text style [eot])*H
    [user_speech] <audio> [eot] [assistant_text] | text style [eot]      <- target after |

ASR baseline (``omnichat.input: asr_text``): ``[user_text] transcript [eot]`` replaces each
``[user_speech] <audio> [eot]``; transcripts come from ``transcribe`` or the references.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from omni.config import EMOTIONS, PITCHES, SPEEDS, ConfigError, OmniChatConfig
from omni.omnichat.precompute import turn_features
from omni.omnichat.turns import MARGIN_S, SAMPLE_RATE_HZ, rounds_of, turn_wave  # noqa: F401 - re-exported
from omni.vocab import Vocab



@dataclass
class Segment:
    kind: str  # "ids" | "audio"
    ids: list[int] = field(default_factory=list)
    wave: np.ndarray | None = None
    loss: bool = False
    cache_key: str | None = None
    """Stable id of the audio (record key + turn): frozen experts' features are cached by it."""
    features: dict | None = None
    """Precomputed expert features of ``wave`` ({expert name: (frames, dim) tensor}), read from the
    shards (:mod:`omni.omnichat.precompute`); the model uses them instead of running that expert."""
    speaker: str | None = None
    """Who speaks in ``wave`` (``omnichat.para_norm: speaker`` normalises per speaker); None = unknown."""


@dataclass
class TurnExample:
    key: str
    source: str
    segments: list[Segment]
    target_text_ids: list[int]
    style: dict  # {"emotion", "pitch", "speed"}


# ------------------------------------------------------------------------- style tags
def style_tag_ids(vocab: Vocab, style: dict) -> list[int]:
    """Tags in the order pitch, speed, emotion (``Vocab.style_ids``)."""
    return vocab.style_ids(emotion=style.get("emotion", "neutral"), pitch=style.get("pitch", "normal"),
                           speed=style.get("speed", "normal"))


def response_ids(vocab: Vocab, text_ids: list[int], style: dict, style_position: str = "after_text") -> list[int]:
    """An assistant reply as tokens: text and style tags in ``omnichat.style_position`` order, then ``<eot>``."""
    tags = style_tag_ids(vocab, style)
    body = tags + list(text_ids) if style_position == "before_text" else list(text_ids) + tags
    return body + [vocab.special("eot")]


def parse_response(ids, vocab: Vocab) -> tuple[list[int], dict, bool]:
    """Generated ids -> (text ids, style, complete), whichever side of the text the tags are on:
    up to ``<eot>``, text ids form the text and the first tag of each group its style; a
    missing tag takes its default (normal / neutral) and ``complete`` is False."""
    ids = [int(i) for i in ids]
    text: list[int] = []
    style: dict = {}
    eot = vocab.special("eot")
    for i in ids:
        if i == eot:
            break
        if vocab.is_text(i):
            text.append(i)
            continue
        if not vocab.is_special(i):
            continue
        name = vocab.special_name(i)
        for group in ("pitch", "speed", "emotion"):
            if name.startswith(group + "_") and group not in style:
                style[group] = name[len(group) + 1:]
    complete = len(style) == 3
    out = {"pitch": style.get("pitch", "normal"), "speed": style.get("speed", "normal"),
           "emotion": style.get("emotion", "neutral")}
    return text, out, complete


def check_style(style: dict) -> dict:
    for name, val, allowed in (("emotion", style.get("emotion"), EMOTIONS), ("pitch", style.get("pitch"), PITCHES),
                               ("speed", style.get("speed"), SPEEDS)):
        if val not in allowed:
            raise ValueError(f"style {name} {val!r} unknown: choose one of {', '.join(allowed)}")
    return {"emotion": style["emotion"], "pitch": style["pitch"], "speed": style["speed"]}


# --------------------------------------------------------------------------- records
def user_turn_ids(vocab: Vocab, transcript_ids: list[int]) -> list[int]:
    return [vocab.special("user_text"), *transcript_ids, vocab.special("eot")]


def turn_speaker(meta: dict, turn: dict) -> str | None:
    """A user turn's speaker id: the turn's ``speaker_id`` (corpora) or the dialogue's user voice
    (synthetic), prefixed by the source; None when the record does not say."""
    spk = turn.get("speaker_id") or (meta.get("voices") or {}).get("user")
    return None if spk is None else f"{meta.get('source', '?')}:{spk}"


def turn_examples(record: dict, vocab: Vocab, oc: OmniChatConfig,
                  transcribe: Callable[[np.ndarray, dict], list[int]] | None = None) -> list[TurnExample]:
    """All turn examples of one record (needs audio: ``ShardStream(..., audio=True)``)."""
    key = str(record.get("key") or record.get("meta", {}).get("id", "?"))
    meta = record.get("meta") or {}
    if oc.input == "audio" and record.get("user") is None:
        raise ValueError(f"record {key!r} has no user audio: read shards with ShardStream(..., audio=True)")
    user = record.get("user")
    sp = vocab.special
    rounds = rounds_of(meta)
    stored = {}
    if oc.input == "audio":
        stored = turn_features(record, oc)
    out = []
    for k, (_, a_turn) in enumerate(rounds):
        segs: list[Segment] = []
        for j in range(max(0, k - oc.max_history_turns), k + 1):
            u, a = rounds[j]
            if oc.input == "audio":
                wave = turn_wave(user, float(u["start_s"]), float(u["end_s"]), oc.max_turn_s)
                pre = stored.get((float(u["start_s"]), float(u["end_s"])))
                segs += [Segment("ids", [sp("user_speech")]),
                         Segment("audio", wave=wave, cache_key=f"{key}/{u['start_s']}",
                                 features=None if pre is None else {"content": pre}, speaker=turn_speaker(meta, u)),
                         Segment("ids", [sp("eot"), sp("assistant_text")])]
            else:
                ids = (transcribe(turn_wave(user, float(u["start_s"]), float(u["end_s"]), oc.max_turn_s), u)
                       if transcribe is not None else list(u.get("text_ids") or []))
                segs += [Segment("ids", user_turn_ids(vocab, ids) + [sp("assistant_text")])]
            style = {"emotion": a.get("emotion") or "neutral", "pitch": a.get("pitch") or "normal",
                     "speed": a.get("speed") or "normal"}
            resp = response_ids(vocab, [int(i) for i in a["text_ids"]], style, oc.style_position)
            bad = [i for i in a["text_ids"] if not 0 <= int(i) < vocab.text_size]
            if bad:
                raise ValueError(f"record {key!r}: text id {bad[0]} outside the text vocabulary "
                                 f"[0, {vocab.text_size}) (tokenizer and vocab disagree)")
            segs.append(Segment("ids", resp, loss=(j == k)))
        style = {"emotion": a_turn.get("emotion") or "neutral", "pitch": a_turn.get("pitch") or "normal",
                 "speed": a_turn.get("speed") or "normal"}
        out.append(TurnExample(key, str(record.get("source_name") or meta.get("source", "?")), segs,
                               [int(i) for i in a_turn["text_ids"]], style))
    return out


# ---------------------------------------------------------------------------- mixing
def alpha_weights(source_names: list[str], alpha: float | None, synthetic: list[str],
                  base: dict[str, float] | None = None) -> dict[str, float]:
    """Sampling weights per source so that synthetic sources together get probability ``alpha``
    (split by their ``base`` weights), the others ``1 - alpha``. ``alpha=None``: ``base``."""
    base = {n: float((base or {}).get(n, 1.0)) for n in source_names}
    if alpha is None:
        return base
    syn = [n for n in source_names if n in synthetic]
    real = [n for n in source_names if n not in synthetic]
    if alpha > 0 and not syn:
        raise ConfigError(f"omnichat.alpha={alpha} but no source is synthetic (sources {source_names}, "
                          f"omnichat.synthetic_sources {synthetic}): add one or set alpha to 0")
    if alpha < 1 and not real:
        raise ConfigError(f"omnichat.alpha={alpha} leaves {1 - alpha:.2f} for real data but every source "
                          f"({source_names}) is synthetic: add a real source or set omnichat.alpha=1")
    out = {}
    for group, mass in ((syn, alpha), (real, 1.0 - alpha)):
        tot = sum(base[n] for n in group)
        for n in group:
            out[n] = mass * base[n] / tot if tot else 0.0
    return out


def keep_for_scale(key: str, fraction: float) -> bool:
    """Stable subset of dialogues: keep when crc32(key) falls in the first ``fraction``."""
    return fraction >= 1.0 or (zlib.crc32(key.encode()) % 100_000) < fraction * 100_000


def example_stream(records: Iterator[dict], vocab: Vocab, oc: OmniChatConfig, transcribe=None,
                   skipped: dict | None = None) -> Iterator[TurnExample]:
    """Records -> turn examples (data-scale subset applied; records that form none are counted)."""
    for rec in records:
        key = str(rec.get("key") or "")
        if not keep_for_scale(key, oc.data_fraction):
            continue
        exs = turn_examples(rec, vocab, oc, transcribe)
        if not exs and skipped is not None:
            skipped[key] = "no (user, assistant) round"
        yield from exs
