"""Text tokenizer: byte-level BPE trained on the data set's texts, or a backbone's tokenizer.

Both kinds are held as one ``tokenizers.Tokenizer`` and saved as ``tokenizer.json`` plus
``text_tokenizer.json`` (kind, source). Ids are ``[0, vocab_size)``; the project's own
special tokens are *not* text tokens: they live in :mod:`omni.vocab` after the text ids.
``encode`` never adds BOS/EOS. Byte-level BPE encodes any unicode string; a pretrained
tokenizer that maps a character to its unknown token raises ``ValueError`` instead of
silently producing ``<unk>``.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

META_FILE = "text_tokenizer.json"


class TextTokenizer:
    def __init__(self, tokenizer: Tokenizer, kind: str = "bpe", source: str | None = None):
        self._tok = tokenizer
        self.kind = kind
        self.source = source
        self._unk_id = None
        model = tokenizer.model
        unk = getattr(model, "unk_token", None)
        if unk:
            self._unk_id = tokenizer.token_to_id(unk)

    # ---------------------------------------------------------------- building
    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, seed: int = 0) -> TextTokenizer:
        """Train byte-level BPE (case kept) with at most ``vocab_size`` ids.

        ``vocab_size`` must exceed 256 (the byte alphabet). Training is deterministic for the
        same texts in the same order; ``seed`` is recorded for provenance only (the
        ``tokenizers`` BPE trainer has no randomness).
        """
        if vocab_size <= 256:
            raise ValueError(f"text vocab_size must be > 256 for byte-level BPE (256 byte "
                             f"symbols), got {vocab_size}; raise tokenizer.text_vocab_size")
        texts = [t for t in texts if t]
        if not texts:
            raise ValueError("TextTokenizer.train got no non-empty texts")
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=int(vocab_size), min_frequency=2,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False, special_tokens=[])
        tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
        return cls(tok, kind="bpe", source=f"trained:seed={seed}")

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> TextTokenizer:
        """Backbone tokenizer from a local folder (``tokenizer.json``, else
        ``transformers.AutoTokenizer(local_files_only=True)``); ``pretrained:NAME`` resolves
        through :func:`omni.pretrained.resolve_path`. Never downloads."""
        from omni.pretrained import resolve_path
        p = Path(resolve_path(path))
        if not p.is_dir():
            raise FileNotFoundError(f"tokenizer folder not found: {p} (set tokenizer.text_path to "
                                    f"a local folder with tokenizer.json; nothing is downloaded)")
        if (p / "tokenizer.json").is_file():
            return cls(Tokenizer.from_file(str(p / "tokenizer.json")), kind="pretrained", source=str(p))
        try:
            from transformers import AutoTokenizer
            hf = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
        except Exception as e:
            raise ValueError(f"cannot load a tokenizer from {p}: {e}") from e
        backend = getattr(hf, "backend_tokenizer", None)
        if backend is None:
            raise ValueError(f"tokenizer at {p} is not a fast tokenizer; convert it to tokenizer.json")
        return cls(backend, kind="pretrained", source=str(p))

    # --------------------------------------------------------------------- use
    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode expects str, got {type(text).__name__}")
        ids = self._tok.encode(text, add_special_tokens=False).ids
        if self._unk_id is not None and self._unk_id in ids:
            enc = self._tok.encode(text, add_special_tokens=False)
            pos = enc.ids.index(self._unk_id)
            s, e = enc.offsets[pos]
            raise ValueError(f"text tokenizer cannot encode {text[s:e]!r} (maps to the unknown "
                             f"token) in {text[:60]!r}: clean the text or use a byte-level tokenizer")
        return ids

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"text id {bad[0]} out of range [0, {self.vocab_size})")
        return self._tok.decode(ids, skip_special_tokens=False)

    # --------------------------------------------------------------- storage
    def save(self, directory: str | os.PathLike) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self._tok.save(str(d / "tokenizer.json"))
        (d / META_FILE).write_text(json.dumps({"kind": self.kind, "source": self.source,
                                               "vocab_size": self.vocab_size}, indent=1))
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike) -> TextTokenizer:
        d = Path(directory)
        f = d / "tokenizer.json"
        if not f.is_file():
            raise FileNotFoundError(f"no tokenizer.json in {d}: not a saved TextTokenizer")
        meta = json.loads((d / META_FILE).read_text()) if (d / META_FILE).is_file() else {}
        tok = cls(Tokenizer.from_file(str(f)), kind=meta.get("kind", "pretrained"), source=meta.get("source"))
        if "vocab_size" in meta and meta["vocab_size"] != tok.vocab_size:
            raise ValueError(f"{d}: tokenizer.json has {tok.vocab_size} ids but {META_FILE} says "
                             f"{meta['vocab_size']}: the folder is inconsistent")
        return tok

    def __repr__(self) -> str:
        return f"TextTokenizer(kind={self.kind!r}, vocab_size={self.vocab_size})"
