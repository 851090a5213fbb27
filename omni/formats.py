"""Flatten formats: every training stage as one token sequence, each with its exact inverse.

Notation: ``S`` speech-unit ids, ``T`` text ids, ``<x>`` special tokens of :mod:`omni.vocab`
(``<us> <ut> <at> <as>`` = user_speech, user_text, assistant_text, assistant_speech).
Every flattener returns :class:`Example` objects: ``input_ids``, ``loss_mask`` (True where the
token is a training *target*) and ``stream`` (0 markers/other, 1 user speech, 2 user text,
3 assistant text, 4 assistant speech), all the same length, plus ``split_points`` (indices
where an over-long example may be cut into windows by :mod:`omni.packing`: chunk starts
for full duplex, which must be respected, round starts for half duplex, which are preferred).

Worked example: a dialogue at 25 Hz with user units ``u0..u5`` (frames 0-5), a user turn
"hi" (frames 0-2, text ``[h]``), an assistant turn "yo ok" (frames 3-5, text ``[y, k]``,
speech ``a3 a4 a5``) and ``speech_chunk=2, text_chunk=1``:

``align`` (one Example per pair)::

    <asr> u0 u1 u2 <text> h <eot>             loss on: h <eot>          (ASR, every turn)
    <tts> <pitch_normal> <speed_normal> <emotion_neutral> y k <speech> a3 a4 a5 <eot>
                                               loss on: a3 a4 a5 <eot>  (TTS, assistant turns)

``half_duplex`` (one Example per dialogue; rounds = user group + assistant group)::

    <us> u0 u1 u2 <ut> h <at> <pitch_normal> <speed_normal> <emotion_neutral> y k <as> a3 a4 a5 <eot>
    loss on: <at> style y k <as> a3 a4 a5 <eot>   (+ <ut> h when user_text_loss)

``full_duplex_3`` (timeline 6 frames -> 3 chunks; ``s`` = silence unit, ``p`` = <text_pad>)::

    chunk 0: u0 u1 | p   | s  s        chunk 1: u2 u3 | y | s  a3
    chunk 2: u4 u5 | k   | a4 a5       chunk 3: s  s  | <eot> | s s   (text outlasted the timeline)

    The assistant text of a turn starts in the chunk where its speech starts
    (``start_frame // speech_chunk``), flows ``text_chunk`` tokens per chunk and ends with
    ``<eot>`` (so turns are recoverable from the text stream); slots with nothing to say are
    ``<text_pad>``. Relaxed alignment: when a turn's text outlasts its speech it keeps
    flowing into the following chunks, a later turn's text waits until it has finished, and
    when text outlasts the whole timeline, silence chunks are appended. Loss on the
    assistant text and speech slots only (including pads and silence).

``full_duplex_2``: chunk i = ``U_i | A_speech_i``; loss on assistant speech only.

Choices the papers leave open (ours): align runs ASR on user *and* assistant turns (more ASR
data) and TTS on assistant turns (the voice the model must learn); style tags condition TTS
and are emitted by the assistant in half_duplex; full-duplex formats carry no style tags.
half_duplex drops backchannels, merges consecutive turns of the same speaker into one
(texts and speech segments concatenated, style of the first), gives a leading assistant
turn an empty user section and drops a trailing user turn (nothing to answer). Turns with
no frames or no text ids are skipped by align and half_duplex (documented skip). A
dialogue with no usable assistant turn raises ValueError in the three dialogue stages.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from omni.config import EMOTIONS, PITCHES, SPEEDS, STAGES, StageConfig
from omni.vocab import Vocab

STREAM_OTHER, STREAM_USER_SPEECH, STREAM_USER_TEXT, STREAM_ASSISTANT_TEXT, STREAM_ASSISTANT_SPEECH = range(5)
STREAM_NAMES = ("other", "user_speech", "user_text", "assistant_text", "assistant_speech")
SPEAKERS = ("user", "assistant")


# ----------------------------------------------------------------------------- data
@dataclass
class Turn:
    speaker: str
    text_ids: np.ndarray
    start_frame: int
    end_frame: int
    emotion: str = "neutral"
    pitch: str = "normal"
    speed: str = "normal"
    kind: str = "turn"
    interrupted: bool = False

    def __post_init__(self):
        if self.speaker not in SPEAKERS:
            raise ValueError(f"turn speaker must be 'user' or 'assistant', got {self.speaker!r}")
        self.text_ids = np.asarray(self.text_ids, dtype=np.int64).reshape(-1)
        for name, val, allowed in (("emotion", self.emotion, EMOTIONS), ("pitch", self.pitch, PITCHES),
                                   ("speed", self.speed, SPEEDS)):
            if val not in allowed:
                raise ValueError(f"turn {name} {val!r} unknown; choose one of {', '.join(allowed)}")
        if not 0 <= self.start_frame <= self.end_frame:
            raise ValueError(f"turn frames [{self.start_frame}, {self.end_frame}) invalid: need 0 <= start <= end")

    @property
    def style(self) -> tuple[str, str, str]:
        return (self.emotion, self.pitch, self.speed)

    @property
    def num_frames(self) -> int:
        return self.end_frame - self.start_frame


@dataclass
class Dialogue:
    """Format-side view of one conversation: turns on a shared frame timeline plus the two
    channels' speech units (``user_units`` and ``assistant_units`` have equal length)."""
    turns: list[Turn]
    user_units: np.ndarray
    assistant_units: np.ndarray
    silence_unit: int = 0
    key: str = ""

    def __post_init__(self):
        self.user_units = _as_units(self.user_units, "user_units")
        self.assistant_units = _as_units(self.assistant_units, "assistant_units")
        if len(self.user_units) != len(self.assistant_units):
            raise ValueError(f"dialogue {self.key!r}: user_units ({len(self.user_units)}) and assistant_units "
                             f"({len(self.assistant_units)}) must have equal length (one shared timeline)")
        n = len(self.user_units)
        for t in self.turns:
            if t.end_frame > n:
                raise ValueError(f"dialogue {self.key!r}: turn frames [{t.start_frame}, {t.end_frame}) run past "
                                 f"the units timeline ({n} frames)")
        self.silence_unit = int(self.silence_unit)

    @property
    def num_frames(self) -> int:
        return len(self.user_units)

    def channel(self, speaker: str) -> np.ndarray:
        return self.user_units if speaker == "user" else self.assistant_units

    def turn_units(self, turn: Turn) -> np.ndarray:
        return self.channel(turn.speaker)[turn.start_frame:turn.end_frame]

    @classmethod
    def from_record(cls, record: dict, frame_rate_hz: float = 25.0, silence_unit: int = 0) -> Dialogue:
        """Build from a dialogue record (docs/architecture.md) after the tokenize step.

        Turn times map to frames ``round(t_s * frame_rate_hz)``; a turn ending up to one frame
        past the units timeline is clipped (rounding), anything further is an error.
        """
        key = str(record.get("key", record.get("meta", {}).get("id", "")))
        meta = record.get("meta")
        if not isinstance(meta, dict) or "turns" not in meta:
            raise ValueError(f"record {key!r} has no meta.turns")
        for name in ("user_units", "assistant_units"):
            if record.get(name) is None:
                raise ValueError(f"record {key!r} has no {name}: run the tokenize step first")
        user = _as_units(record["user_units"], "user_units")
        n = len(user)
        if n == 0:
            raise ValueError(f"record {key!r}: audio shorter than one frame (no speech units)")
        turns = []
        for i, t in enumerate(meta["turns"]):
            if t.get("text_ids") is None:
                raise ValueError(f"record {key!r} turn {i} has no text_ids: run the tokenize step first")
            s = round(float(t["start_s"]) * frame_rate_hz)
            e = round(float(t["end_s"]) * frame_rate_hz)
            if e < s:
                raise ValueError(f"record {key!r} turn {i}: end_s {t['end_s']} < start_s {t['start_s']}")
            if s > n or e > n + 1:
                raise ValueError(f"record {key!r} turn {i} ends at frame {e} but the units timeline has "
                                 f"{n} frames: meta timings and units disagree (frame_rate_hz={frame_rate_hz}?)")
            turns.append(Turn(speaker=t.get("speaker"), text_ids=t["text_ids"], start_frame=min(s, n),
                              end_frame=min(e, n), emotion=t.get("emotion") or "neutral",
                              pitch=t.get("pitch") or "normal", speed=t.get("speed") or "normal",
                              kind=t.get("kind") or "turn", interrupted=bool(t.get("interrupted", False))))
        turns.sort(key=lambda t: (t.start_frame, t.end_frame))
        return cls(turns, user, record["assistant_units"], silence_unit, key)


@dataclass
class Example:
    """One flattened sequence. ``loss_mask[i]``: token i is a training target."""
    input_ids: np.ndarray
    loss_mask: np.ndarray
    stream: np.ndarray
    split_points: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    task: str = ""
    strict_splits: bool = False
    """True: an over-long example may be cut into windows only at ``split_points`` (chunk starts)."""

    def __post_init__(self):
        self.input_ids = np.asarray(self.input_ids, dtype=np.int64)
        self.loss_mask = np.asarray(self.loss_mask, dtype=bool)
        self.stream = np.asarray(self.stream, dtype=np.int8)
        self.split_points = np.asarray(self.split_points, dtype=np.int64)
        if not (self.input_ids.shape == self.loss_mask.shape == self.stream.shape) or self.input_ids.ndim != 1:
            raise ValueError(f"Example arrays must be 1-D of equal length, got {self.input_ids.shape}, "
                             f"{self.loss_mask.shape}, {self.stream.shape}")

    def __len__(self) -> int:
        return len(self.input_ids)


class _Builder:
    def __init__(self):
        self.ids, self.mask, self.stream, self.splits, self.n = [], [], [], [], 0

    def add(self, ids, stream: int, loss: bool):
        ids = np.atleast_1d(np.asarray(ids, dtype=np.int64))
        self.ids.append(ids)
        self.mask.append(np.full(len(ids), loss))
        self.stream.append(np.full(len(ids), stream, np.int8))
        self.n += len(ids)

    def split_here(self):
        self.splits.append(self.n)

    def build(self, task: str) -> Example:
        return Example(np.concatenate(self.ids), np.concatenate(self.mask), np.concatenate(self.stream),
                       np.asarray(self.splits, np.int64), task)


def _as_units(units, name: str) -> np.ndarray:
    arr = np.asarray(units)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of speech units, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _text(vocab: Vocab, ids: np.ndarray, what: str) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size and not vocab.is_text(ids).all():
        bad = ids[~vocab.is_text(ids)][0]
        raise ValueError(f"{what}: text id {int(bad)} outside the text range [0, {vocab.text_size}) "
                         f"(text tokenizer and vocabulary disagree)")
    return ids


def _style_ids(vocab: Vocab, style: tuple[str, str, str]) -> list[int]:
    emotion, pitch, speed = style
    return vocab.style_ids(emotion=emotion, pitch=pitch, speed=speed)


def _parse_style(vocab: Vocab, ids) -> tuple[str, str, str]:
    try:
        names = [vocab.special_name(int(i)) for i in ids]
    except ValueError as e:
        raise ValueError(f"expected 3 style tags: {e}") from None
    if len(names) != 3 or not (names[0].startswith("pitch_") and names[1].startswith("speed_")
                               and names[2].startswith("emotion_")):
        raise ValueError(f"expected style tags pitch, speed, emotion; got {names}")
    return (names[2][8:], names[0][6:], names[1][6:])


def _usable(t: Turn) -> bool:
    return t.num_frames > 0 and len(t.text_ids) > 0


# ---------------------------------------------------------------------------- align
@dataclass
class AlignPair:
    task: str  # "asr" | "tts"
    units: np.ndarray
    text_ids: np.ndarray
    style: tuple[str, str, str] | None = None  # tts only


def align_pairs(d: Dialogue, asr_speakers=("user", "assistant"), tts_speakers=("assistant",)) -> list[AlignPair]:
    """The ASR/TTS pairs of ``d`` in flatten order (turn order; ASR before TTS per turn)."""
    pairs = []
    for t in d.turns:
        if not _usable(t):
            continue
        if t.speaker in asr_speakers:
            pairs.append(AlignPair("asr", d.turn_units(t), t.text_ids))
        if t.speaker in tts_speakers:
            pairs.append(AlignPair("tts", d.turn_units(t), t.text_ids, t.style))
    return pairs


def flatten_align_pair(p: AlignPair, vocab: Vocab) -> Example:
    b, sp = _Builder(), vocab.special
    units, text = vocab.units_to_ids(p.units), _text(vocab, p.text_ids, "align")
    if p.task == "asr":
        b.add(sp("asr"), STREAM_OTHER, False); b.add(units, STREAM_USER_SPEECH, False)
        b.add(sp("text"), STREAM_OTHER, False); b.add(text, STREAM_USER_TEXT, True)
    else:
        b.add(sp("tts"), STREAM_OTHER, False); b.add(_style_ids(vocab, p.style), STREAM_OTHER, False)
        b.add(text, STREAM_ASSISTANT_TEXT, False); b.add(sp("speech"), STREAM_OTHER, False)
        b.add(units, STREAM_ASSISTANT_SPEECH, True)
    b.add(sp("eot"), STREAM_OTHER, True)
    return b.build(p.task)


def flatten_align(d: Dialogue, vocab: Vocab, asr_speakers=("user", "assistant"),
                  tts_speakers=("assistant",)) -> list[Example]:
    """ASR pairs ``<asr> S <text> T <eot>`` and TTS pairs ``<tts> style T <speech> S <eot>``."""
    pairs = align_pairs(d, asr_speakers, tts_speakers)
    if not pairs:
        raise ValueError(f"dialogue {d.key!r} has no turn with both speech frames and text ids: nothing to align")
    return [flatten_align_pair(p, vocab) for p in pairs]


def deflatten_align(ids, vocab: Vocab) -> AlignPair:
    ids = np.asarray(ids, dtype=np.int64)
    sp = vocab.special
    if len(ids) < 4 or ids[-1] != sp("eot"):
        raise ValueError("align sequence must start with <asr>/<tts> and end with <eot>")
    if ids[0] == sp("asr"):
        k = _find(ids, sp("text"), "align/asr")
        return AlignPair("asr", vocab.ids_to_units(ids[1:k]), _text(vocab, ids[k + 1:-1], "asr text"))
    if ids[0] == sp("tts"):
        style = _parse_style(vocab, ids[1:4])
        k = _find(ids, sp("speech"), "align/tts")
        return AlignPair("tts", vocab.ids_to_units(ids[k + 1:-1]), _text(vocab, ids[4:k], "tts text"), style)
    raise ValueError(f"align sequence starts with id {int(ids[0])}, expected <asr> or <tts>")


def _find(ids: np.ndarray, token: int, what: str, start: int = 0) -> int:
    hits = np.flatnonzero(ids[start:] == token)
    if not len(hits):
        raise ValueError(f"{what}: marker id {token} not found after position {start}")
    return start + int(hits[0])


# ---------------------------------------------------------------------- half duplex
@dataclass
class Round:
    user_units: np.ndarray
    user_text: np.ndarray
    assistant_text: np.ndarray
    assistant_units: np.ndarray
    style: tuple[str, str, str] = ("neutral", "normal", "normal")


def half_duplex_rounds(d: Dialogue) -> list[Round]:
    """Group the dialogue into (user, assistant) rounds; see the module docstring for the rules."""
    groups: list[tuple[str, list[Turn]]] = []
    for t in d.turns:
        if t.kind == "backchannel" or not _usable(t):
            continue
        if groups and groups[-1][0] == t.speaker:
            groups[-1][1].append(t)
        else:
            groups.append((t.speaker, [t]))
    rounds, pending = [], None
    for speaker, turns in groups:
        units = np.concatenate([d.turn_units(t) for t in turns])
        text = np.concatenate([t.text_ids for t in turns])
        if speaker == "user":
            pending = (units, text)
        else:
            u_units, u_text = pending if pending is not None else (np.zeros(0, np.int64), np.zeros(0, np.int64))
            rounds.append(Round(u_units, u_text, text, units, turns[0].style))
            pending = None
    if not rounds:
        raise ValueError(f"dialogue {d.key!r} has no assistant turn with speech and text: "
                         f"half_duplex needs at least one (use the align stage for ASR-only data)")
    return rounds


def flatten_rounds(rounds: list[Round], vocab: Vocab, user_text_loss: bool = False,
                   style_tags: bool = True) -> Example:
    b, sp = _Builder(), vocab.special
    for r in rounds:
        b.split_here()
        b.add(sp("user_speech"), STREAM_OTHER, False)
        b.add(vocab.units_to_ids(r.user_units), STREAM_USER_SPEECH, False)
        b.add(sp("user_text"), STREAM_OTHER, user_text_loss)
        b.add(_text(vocab, r.user_text, "user text"), STREAM_USER_TEXT, user_text_loss)
        b.add(sp("assistant_text"), STREAM_OTHER, True)
        if style_tags:
            b.add(_style_ids(vocab, r.style), STREAM_ASSISTANT_TEXT, True)
        b.add(_text(vocab, r.assistant_text, "assistant text"), STREAM_ASSISTANT_TEXT, True)
        b.add(sp("assistant_speech"), STREAM_OTHER, True)
        b.add(vocab.units_to_ids(r.assistant_units), STREAM_ASSISTANT_SPEECH, True)
        b.add(sp("eot"), STREAM_OTHER, True)
    return b.build("half_duplex")


def flatten_half_duplex(d: Dialogue, vocab: Vocab, user_text_loss: bool = False,
                        style_tags: bool = True) -> list[Example]:
    """Per round ``<us> S_u <ut> T_u <at> [style] T_a <as> S_a <eot>``; one Example per dialogue."""
    return [flatten_rounds(half_duplex_rounds(d), vocab, user_text_loss, style_tags)]


def deflatten_half_duplex(ids, vocab: Vocab, style_tags: bool = True) -> list[Round]:
    ids = np.asarray(ids, dtype=np.int64)
    sp = vocab.special
    rounds, i = [], 0
    while i < len(ids):
        if ids[i] != sp("user_speech"):
            raise ValueError(f"half_duplex: expected <user_speech> at position {i}, got id {int(ids[i])}")
        ut = _find(ids, sp("user_text"), "half_duplex", i)
        at = _find(ids, sp("assistant_text"), "half_duplex", ut)
        as_ = _find(ids, sp("assistant_speech"), "half_duplex", at)
        eot = _find(ids, sp("eot"), "half_duplex", as_)
        t0, style = at + 1, ("neutral", "normal", "normal")
        if style_tags:
            style, t0 = _parse_style(vocab, ids[at + 1:at + 4]), at + 4
        rounds.append(Round(vocab.ids_to_units(ids[i + 1:ut]), _text(vocab, ids[ut + 1:at], "user text"),
                            _text(vocab, ids[t0:as_], "assistant text"), vocab.ids_to_units(ids[as_ + 1:eot]),
                            style))
        i = eot + 1
    return rounds


# ---------------------------------------------------------------------- full duplex
@dataclass
class DuplexStreams:
    """De-flattened full-duplex streams on the chunk grid (padded to whole chunks).

    ``text_slots``: (num_chunks, text_chunk) ids of the assistant text stream (None for
    full_duplex_2); ``assistant_texts``: per assistant turn, its text ids (split at <eot>).
    """
    user_units: np.ndarray
    assistant_units: np.ndarray
    text_slots: np.ndarray | None = None
    assistant_texts: list[np.ndarray] | None = None

    @property
    def num_chunks(self) -> int:
        return 0 if self.user_units is None else len(self.user_units)


def assistant_text_slots(d: Dialogue, vocab: Vocab, text_chunk: int, speech_chunk: int) -> np.ndarray:
    """Flat text stream: each assistant turn's text + <eot> from its start chunk, <text_pad> elsewhere."""
    pad, eot = vocab.special("text_pad"), vocab.special("eot")
    slots: list[int] = []
    for t in d.turns:
        if t.speaker != "assistant" or len(t.text_ids) == 0:
            continue
        start = (t.start_frame // speech_chunk) * text_chunk
        slots.extend([pad] * max(0, start - len(slots)))
        slots.extend(_text(vocab, t.text_ids, "assistant text").tolist())
        slots.append(eot)
    return np.asarray(slots, dtype=np.int64)


def _check_chunks(d: Dialogue, speech_chunk: int, text_chunk: int | None = None):
    if speech_chunk < 1 or (text_chunk is not None and text_chunk < 1):
        raise ValueError(f"chunk sizes must be >= 1 (speech_chunk={speech_chunk}, text_chunk={text_chunk})")
    if d.num_frames == 0:
        raise ValueError(f"dialogue {d.key!r}: audio shorter than one frame")
    if not any(t.speaker == "assistant" and t.num_frames > 0 for t in d.turns):
        raise ValueError(f"dialogue {d.key!r} has no assistant turn: full-duplex stages need one")


def _pad_to(arr: np.ndarray, n: int, value: int) -> np.ndarray:
    return np.concatenate([arr, np.full(n - len(arr), value, np.int64)]) if len(arr) < n else arr


def _interleave(parts: list[tuple[np.ndarray, int, bool]], task: str) -> Example:
    """parts: (ids of shape (n_chunks, width), stream, loss) in chunk order."""
    n = parts[0][0].shape[0]
    ids = np.concatenate([p[0] for p in parts], axis=1)
    stream = np.concatenate([np.full(p[0].shape, p[1], np.int8) for p in parts], axis=1)
    mask = np.concatenate([np.full(p[0].shape, p[2]) for p in parts], axis=1)
    return Example(ids.ravel(), mask.ravel(), stream.ravel(), np.arange(n, dtype=np.int64) * ids.shape[1], task,
                   strict_splits=True)


def flatten_full_duplex_3(d: Dialogue, vocab: Vocab, text_chunk: int, speech_chunk: int) -> list[Example]:
    """Chunk i = ``U_i (speech_chunk) | A_text_i (text_chunk) | A_speech_i (speech_chunk)``."""
    _check_chunks(d, speech_chunk, text_chunk)
    slots = assistant_text_slots(d, vocab, text_chunk, speech_chunk)
    n = max(-(-d.num_frames // speech_chunk), -(-len(slots) // text_chunk))
    sil = vocab.unit(d.silence_unit) - vocab.unit_offset
    user = vocab.units_to_ids(_pad_to(d.user_units, n * speech_chunk, sil)).reshape(n, speech_chunk)
    asst = vocab.units_to_ids(_pad_to(d.assistant_units, n * speech_chunk, sil)).reshape(n, speech_chunk)
    text = _pad_to(slots, n * text_chunk, vocab.special("text_pad")).reshape(n, text_chunk)
    return [_interleave([(user, STREAM_USER_SPEECH, False), (text, STREAM_ASSISTANT_TEXT, True),
                         (asst, STREAM_ASSISTANT_SPEECH, True)], "full_duplex_3")]


def flatten_full_duplex_2(d: Dialogue, vocab: Vocab, speech_chunk: int) -> list[Example]:
    """Chunk i = ``U_i (speech_chunk) | A_speech_i (speech_chunk)``."""
    _check_chunks(d, speech_chunk)
    n = -(-d.num_frames // speech_chunk)
    sil = vocab.unit(d.silence_unit) - vocab.unit_offset
    user = vocab.units_to_ids(_pad_to(d.user_units, n * speech_chunk, sil)).reshape(n, speech_chunk)
    asst = vocab.units_to_ids(_pad_to(d.assistant_units, n * speech_chunk, sil)).reshape(n, speech_chunk)
    return [_interleave([(user, STREAM_USER_SPEECH, False), (asst, STREAM_ASSISTANT_SPEECH, True)], "full_duplex_2")]


def _chunks(ids, width: int, what: str) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) == 0 or len(ids) % width:
        raise ValueError(f"{what}: length {len(ids)} is not a positive multiple of the chunk width {width} "
                         f"(wrong text_chunk/speech_chunk?)")
    return ids.reshape(-1, width)


def deflatten_full_duplex_3(ids, vocab: Vocab, text_chunk: int, speech_chunk: int) -> DuplexStreams:
    c = _chunks(ids, 2 * speech_chunk + text_chunk, "full_duplex_3")
    text = c[:, speech_chunk:speech_chunk + text_chunk]
    flat = text.ravel()
    if vocab.is_unit(flat).any():
        raise ValueError("full_duplex_3: a speech unit sits in a text slot (wrong chunk sizes?)")
    keep = flat[flat != vocab.special("text_pad")]
    ends = np.flatnonzero(keep == vocab.special("eot"))
    texts = [_text(vocab, s[:-1], "assistant text") for s in np.split(keep, ends + 1)[:len(ends)]]
    if len(keep) and (len(ends) == 0 or ends[-1] != len(keep) - 1):
        raise ValueError("full_duplex_3: assistant text stream ends without <eot>")
    return DuplexStreams(vocab.ids_to_units(c[:, :speech_chunk].ravel()),
                         vocab.ids_to_units(c[:, speech_chunk + text_chunk:].ravel()), text.copy(), texts)


def deflatten_full_duplex_2(ids, vocab: Vocab, speech_chunk: int) -> DuplexStreams:
    c = _chunks(ids, 2 * speech_chunk, "full_duplex_2")
    return DuplexStreams(vocab.ids_to_units(c[:, :speech_chunk].ravel()),
                         vocab.ids_to_units(c[:, speech_chunk:].ravel()))


# ----------------------------------------------------------------------- dispatcher
STAGE_FLATTENERS: dict[str, Callable] = {
    "align": lambda d, vocab, cfg: flatten_align(d, vocab),
    "half_duplex": lambda d, vocab, cfg: flatten_half_duplex(d, vocab, user_text_loss=cfg.user_text_loss),
    "full_duplex_3": lambda d, vocab, cfg: flatten_full_duplex_3(d, vocab, cfg.text_chunk, cfg.speech_chunk),
    "full_duplex_2": lambda d, vocab, cfg: flatten_full_duplex_2(d, vocab, cfg.speech_chunk),
}


def flatten(stage: str, d: Dialogue, vocab: Vocab, stage_cfg=None) -> list[Example]:
    """Flatten ``d`` for ``stage`` with chunk sizes/loss options from ``stage_cfg``
    (:class:`omni.config.StageConfig`, the one place chunk sizes are set; None = its defaults)."""
    if stage not in STAGE_FLATTENERS:
        raise ValueError(f"unknown stage {stage!r}: choose one of {', '.join(STAGES)}")
    if stage_cfg is None:
        stage_cfg = StageConfig()
    return STAGE_FLATTENERS[stage](d, vocab, stage_cfg)
