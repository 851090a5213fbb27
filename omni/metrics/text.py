"""Recognition error rates with ``jiwer`` after a light, documented normalisation
(lower-case, punctuation removed, whitespace collapsed)."""
from __future__ import annotations

import re

import jiwer

_PUNCT = re.compile(r"[^\w\s']")


def normalize(text: str) -> str:
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def _pairs(refs: list[str], hyps: list[str]) -> tuple[list[str], list[str]]:
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses: lengths must match")
    r, h = [normalize(x) for x in refs], [normalize(x) for x in hyps]
    keep = [i for i, x in enumerate(r) if x]
    if not keep:
        raise ValueError("every reference is empty after normalisation: nothing to score")
    return [r[i] for i in keep], [h[i] for i in keep]


def wer(refs: list[str], hyps: list[str]) -> float:
    """Corpus word error rate (empty references are dropped; an empty hypothesis counts as deletions)."""
    r, h = _pairs(refs, hyps)
    return float(jiwer.wer(r, h))


def cer(refs: list[str], hyps: list[str]) -> float:
    r, h = _pairs(refs, hyps)
    return float(jiwer.cer(r, h))
