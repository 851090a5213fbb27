"""Speech tokenizers: the import point for the rest of omni.

* :class:`SpeechTokenizer` - the protocol (16 kHz float32 audio <-> ``np.int64`` units;
  ``encode`` gives ``len(wave) // hop_samples`` units, ``decode`` gives
  ``len(units) * hop_samples`` samples, ``silence_unit`` for padding, streaming objects).
* :class:`MelKMeansTokenizer` - built-in default (log-mel k-means, 25 Hz), see
  :mod:`omni.speech.mel_kmeans`.
* :class:`S3Tokenizer`, :class:`MimiTokenizer` - adapters for real tokenizers loaded from a
  local path (optional packages, imported lazily), see :mod:`omni.speech.adapters`.
* :func:`load_speech_tokenizer` - load any saved tokenizer folder (``speech_tokenizer.json``).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from omni.speech.base import (
    SAMPLE_RATE_HZ,
    TOKENIZER_JSON,
    SpeechTokenizer,
    SpeechTokenizerError,
    StreamDecoder,
    StreamEncoder,
    check_units,
    check_wave,
    read_descriptor,
)
from omni.speech.mel_kmeans import MelKMeansTokenizer

if TYPE_CHECKING:  # imported lazily at run time (torch / transformers / s3tokenizer)
    from omni.speech.adapters import MimiTokenizer, S3Tokenizer

__all__ = [
    "SAMPLE_RATE_HZ",
    "TOKENIZER_JSON",
    "MelKMeansTokenizer",
    "MimiTokenizer",
    "S3Tokenizer",
    "SpeechTokenizer",
    "SpeechTokenizerError",
    "StreamDecoder",
    "StreamEncoder",
    "check_units",
    "check_wave",
    "load_speech_tokenizer",
]


def __getattr__(name):  # adapters import torch/transformers lazily
    if name in ("S3Tokenizer", "MimiTokenizer"):
        from omni.speech import adapters
        return getattr(adapters, name)
    raise AttributeError(name)


def load_speech_tokenizer(directory: str | Path) -> SpeechTokenizer:
    """Load the tokenizer saved in ``directory`` (kind read from ``speech_tokenizer.json``)."""
    from omni.pretrained import resolve_path
    directory = resolve_path(directory)   # ``pretrained:phone-units`` -> its cache folder
    info = read_descriptor(directory)
    kind = info["kind"]
    if kind == "phonetic":
        from omni.speech.phonetic import PhoneticTokenizer
        return PhoneticTokenizer.load(directory)
    if kind == "mel_kmeans":
        return MelKMeansTokenizer.load(directory)
    if kind == "s3":
        from omni.speech.adapters import S3Tokenizer
        return S3Tokenizer.load(directory)
    if kind == "mimi":
        from omni.speech.adapters import MimiTokenizer
        return MimiTokenizer.load(directory)
    raise SpeechTokenizerError(
        f"{Path(directory) / TOKENIZER_JSON}: unknown kind {kind!r}; "
        "expected one of phonetic, mel_kmeans, s3, mimi")
