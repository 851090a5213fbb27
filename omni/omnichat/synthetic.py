"""In-process OmniChat data for tests and benchmarks (no Ray, no shards, no downloads).

``emotion_records(n, generate)`` voices ``n`` ShareChatX-style emotion dialogues with the
dialogue generator the caller passes in (``omni`` does not import ``data_prep``; callers pass
``data_prep.synth.generate.generate_dialogue``: espeak-ng, ~0.2 s each) and sets each turn's
``text_ids`` with a byte-level BPE fitted on their texts (or a given tokenizer). The records have
the shard reader's shape (``key``, ``meta``, ``user``, ``assistant``), so
:func:`omni.omnichat.data.turn_examples` takes them unchanged.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from omni.config import SynthConfig
from omni.text_tokenizer import TextTokenizer
from omni.vocab import Vocab

log = logging.getLogger("omni.omnichat")


Generator = Callable[[int, SynthConfig], dict]
"""``generate(index, synth_config) -> record`` (``data_prep.synth.generate.generate_dialogue``)."""


def emotion_records(n: int, generate: Generator, seed: int = 0, text_tokenizer: TextTokenizer | None = None,
                    start: int = 0, scenarios: tuple[str, ...] = ("emotion",), text_vocab_size: int = 400):
    """(records, text_tokenizer) for dialogues ``start .. start + n - 1`` of the seeded catalogue."""
    cfg = SynthConfig(num_dialogues=max(1, n), seed=seed, min_turns=2, max_turns=4, scenarios=list(scenarios),
                      interrupt_prob=0.0)
    recs = []
    for i in range(start, start + n):
        try:
            rec = generate(i, cfg)
        except ValueError as e:  # a synthesiser failure on one index must not sink a benchmark
            log.warning("skipping synthetic dialogue %d (seed %d): %s", i, seed, e)
            continue
        if rec["meta"]["qc"]["passed"]:
            recs.append(rec)
    if text_tokenizer is None:
        texts = [t["text"] for r in recs for t in r["meta"]["turns"]]
        text_tokenizer = TextTokenizer.train(texts * 4, text_vocab_size, seed=seed)
    for r in recs:
        for t in r["meta"]["turns"]:
            t["text_ids"] = text_tokenizer.encode(t["text"])
    return recs, text_tokenizer


def tiny_vocab(text_tokenizer: TextTokenizer, num_units: int = 16) -> Vocab:
    """OmniChat reads audio, not units: a small unit block keeps the tiny LLM small."""
    return Vocab(text_size=text_tokenizer.vocab_size, num_units=num_units)
