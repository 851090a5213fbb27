"""The one place that knows the token id layout.

Layout (ids are contiguous)::

    [0 .. text_size)                         text tokens (backbone or trained BPE ids)
    [text_size .. text_size + n_specials)    special tokens, in the fixed order SPECIALS
    [unit_offset .. unit_offset + num_units) speech units 0..num_units-1

Text ids keep their pretrained rows; specials and units are appended rows of the
embedding / LM head. The layout is saved with every checkpoint (``vocab.json``) and a
checkpoint whose layout differs from the running code's fails in
:meth:`Vocab.check_compatible`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from omni.config import EMOTIONS, PITCHES, SPEEDS

BASE_SPECIALS = ("pad", "eot", "asr", "tts", "text", "speech", "user_speech", "user_text",
                 "assistant_text", "assistant_speech", "text_pad")
STYLE_SPECIALS = (tuple(f"pitch_{p}" for p in PITCHES) + tuple(f"speed_{s}" for s in SPEEDS)
                  + tuple(f"emotion_{e}" for e in EMOTIONS))
SPECIALS = BASE_SPECIALS + STYLE_SPECIALS
LAYOUT_VERSION = 1


class VocabMismatchError(ValueError):
    """A checkpoint's vocabulary layout differs from the one in use."""


class Vocab:
    """Token layout ``[text][specials][units]``.

    ``text_size``: number of text ids (e.g. ``TextTokenizer.vocab_size``).
    ``num_units``: speech tokenizer codebook size.
    """

    def __init__(self, text_size: int, num_units: int):
        if int(text_size) < 1:
            raise ValueError(f"Vocab text_size must be >= 1, got {text_size}")
        if int(num_units) < 1:
            raise ValueError(f"Vocab num_units must be >= 1, got {num_units}")
        self.text_size = int(text_size)
        self.num_units = int(num_units)
        self.specials: tuple[str, ...] = SPECIALS
        self._special_ids = {name: self.text_size + i for i, name in enumerate(SPECIALS)}
        self.special_offset = self.text_size
        self.unit_offset = self.text_size + len(SPECIALS)
        self.size = self.unit_offset + self.num_units

    # ------------------------------------------------------------------ lookups
    def special(self, name: str) -> int:
        """Id of special token ``name`` (e.g. ``"eot"``, ``"emotion_happy"``)."""
        try:
            return self._special_ids[name]
        except KeyError:
            raise KeyError(f"unknown special token {name!r}; known: {', '.join(SPECIALS)}") from None

    def special_name(self, token_id: int) -> str:
        i = int(token_id) - self.special_offset
        if not 0 <= i < len(SPECIALS):
            raise ValueError(f"id {token_id} is not a special token (specials are "
                             f"[{self.special_offset}, {self.unit_offset}))")
        return SPECIALS[i]

    def style_ids(self, emotion: str = "neutral", pitch: str = "normal", speed: str = "normal") -> list[int]:
        """Ids of the three style tags in the order pitch, speed, emotion."""
        return [self.special(f"pitch_{pitch}"), self.special(f"speed_{speed}"),
                self.special(f"emotion_{emotion}")]

    def unit(self, u: int) -> int:
        """Id of speech unit ``u``."""
        u = int(u)
        if not 0 <= u < self.num_units:
            raise ValueError(f"speech unit {u} out of range [0, {self.num_units}): the speech "
                             f"tokenizer and the vocabulary disagree on num_units")
        return self.unit_offset + u

    def units_to_ids(self, units) -> np.ndarray:
        """Speech units (any int array) -> token ids (int64). Raises on out-of-range units."""
        arr = np.asarray(units)
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"speech units must be integers, got dtype {arr.dtype}")
        arr = arr.astype(np.int64, copy=False)
        bad = (arr < 0) | (arr >= self.num_units)
        if bad.any():
            raise ValueError(f"speech unit {int(arr[bad][0])} out of range [0, {self.num_units}) "
                             f"({int(bad.sum())} bad units): the speech tokenizer and the "
                             f"vocabulary disagree on num_units")
        return arr + self.unit_offset

    def ids_to_units(self, ids) -> np.ndarray:
        """Token ids -> speech units. Raises when any id is not a unit."""
        arr = np.asarray(ids, dtype=np.int64)
        bad = ~self.is_unit(arr)
        if bad.any():
            raise ValueError(f"id {int(arr[bad][0])} is not a speech unit (units are "
                             f"[{self.unit_offset}, {self.size}))")
        return arr - self.unit_offset

    def is_unit(self, ids):
        """Vectorised: True where ``ids`` are speech-unit ids."""
        arr = np.asarray(ids)
        out = (arr >= self.unit_offset) & (arr < self.size)
        return bool(out) if out.ndim == 0 else out

    def is_text(self, ids):
        """Vectorised: True where ``ids`` are text ids."""
        arr = np.asarray(ids)
        out = (arr >= 0) & (arr < self.text_size)
        return bool(out) if out.ndim == 0 else out

    def is_special(self, ids):
        arr = np.asarray(ids)
        out = (arr >= self.special_offset) & (arr < self.unit_offset)
        return bool(out) if out.ndim == 0 else out

    @property
    def new_token_ids(self) -> list[int]:
        """Ids appended to the text vocabulary (specials + units): the rows trained under LoRA."""
        return list(range(self.text_size, self.size))

    # ---------------------------------------------------------- serialisation
    def to_json(self) -> dict:
        return {"layout_version": LAYOUT_VERSION, "text_size": self.text_size,
                "num_units": self.num_units, "specials": list(self.specials),
                "unit_offset": self.unit_offset, "size": self.size}

    @classmethod
    def from_json(cls, obj: dict | str) -> Vocab:
        if isinstance(obj, str):
            obj = json.loads(obj)
        for key in ("text_size", "num_units"):
            if key not in obj:
                raise ValueError(f"vocab json lacks {key!r}: not a vocab.json written by omni.vocab")
        v = cls(obj["text_size"], obj["num_units"])
        saved = cls._layout_of(obj)
        if saved != cls._layout_of(v.to_json()):
            raise VocabMismatchError(
                "checkpoint vocab layout differs: " + _diff(saved, cls._layout_of(v.to_json()))
                + " (the checkpoint was written by a different omni version; re-export it)")
        return v

    @staticmethod
    def _layout_of(obj: dict) -> dict:
        return {k: obj.get(k) for k in ("layout_version", "text_size", "num_units", "specials",
                                        "unit_offset", "size")}

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        if path.is_dir():
            path = path / "vocab.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocab:
        path = Path(path)
        if path.is_dir():
            path = path / "vocab.json"
        if not path.is_file():
            raise FileNotFoundError(f"vocab file not found: {path}")
        return cls.from_json(json.loads(path.read_text()))

    def check_compatible(self, other: Vocab) -> None:
        """Raise :class:`VocabMismatchError` when ``other`` (e.g. a checkpoint's) has another layout."""
        a, b = self._layout_of(self.to_json()), self._layout_of(other.to_json())
        if a != b:
            raise VocabMismatchError("checkpoint vocab layout differs: " + _diff(b, a)
                                     + " (use the tokenizers saved with the checkpoint, or retrain)")

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash((self.text_size, self.num_units, self.specials))

    def __repr__(self) -> str:
        return (f"Vocab(text_size={self.text_size}, specials={len(self.specials)}, "
                f"num_units={self.num_units}, size={self.size})")


def _diff(theirs: dict, ours: dict) -> str:
    parts = []
    for k in ours:
        if theirs.get(k) != ours.get(k):
            if k == "specials":
                parts.append(f"specials {theirs.get(k)} vs expected {ours.get(k)}")
            else:
                parts.append(f"{k} {theirs.get(k)} (checkpoint) vs {ours.get(k)} (expected)")
    return "; ".join(parts) or "unknown difference"
