"""Recognition error rates (``jiwer``) after one shared, documented text normaliser.

``normalize`` is the single normaliser of the project (evaluation, data QC and ASR import it):

* lower-case; ``&`` → "and", ``%`` → "percent";
* numbers spelt out: integers ("21" → "twenty one", "1,000" → "one thousand"), decimals
  ("3.5" → "three point five"), ordinals ("2nd" → "second"), up to 999 999 999 999;
* punctuation → space, except apostrophes inside words ("don't" stays, quotes go);
  hyphens split words ("well-known" → "well known");
* whitespace collapsed.

WER/CER are corpus rates: total edits / total reference words (characters). An empty
reference has no defined error rate: such pairs are dropped and counted; when every reference
is empty the functions raise ``ValueError`` saying so.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import jiwer
import numpy as np

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = ((10 ** 9, "billion"), (10 ** 6, "million"), (1000, "thousand"))
_ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
            "nine": "ninth", "twelve": "twelfth"}
_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(st|nd|rd|th)?(?![\w])")
_PUNCT = re.compile(r"[^\w\s']|_")
_QUOTE = re.compile(r"(?<!\w)'|'(?!\w)")


def number_to_words(n: int) -> str:
    """Spell a non-negative integer < 10**12 in English words ("105" → "one hundred five")."""
    if n < 0 or n >= 10 ** 12:
        raise ValueError(f"number_to_words handles 0 .. 999999999999, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + number_to_words(rest))
    for size, name in _SCALES:
        if n >= size:
            rest = n % size
            return number_to_words(n // size) + " " + name + ("" if rest == 0 else " " + number_to_words(rest))
    raise AssertionError(n)


def _ordinal(words: str) -> str:
    head, _, last = words.rpartition(" ")
    if last in _ORDINAL:
        last = _ORDINAL[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return (head + " " + last).strip()


def _spell(m: re.Match) -> str:
    digits, frac, suffix = m.group(1).replace(",", ""), m.group(2), m.group(3)
    if len(digits) > 12:
        return " ".join(_ONES[int(d)] for d in digits)  # an id or phone number: digit by digit
    words = number_to_words(int(digits))
    if frac is not None:
        words += " point " + " ".join(_ONES[int(d)] for d in frac)
    elif suffix:
        words = _ordinal(words)
    return f" {words} "


def normalize(text: str) -> str:
    """Normalise ``text`` for scoring (see the module docstring for the exact rules)."""
    if not isinstance(text, str):
        raise TypeError(f"normalize expects a str, got {type(text).__name__}")
    t = text.lower().replace("&", " and ").replace("%", " percent ").replace("’", "'")
    t = _NUMBER.sub(_spell, t)
    t = _PUNCT.sub(" ", t)
    t = _QUOTE.sub(" ", t)
    return " ".join(t.split())


def _pairs(refs: Sequence[str], hyps: Sequence[str]) -> tuple[list[str], list[str], int]:
    if isinstance(refs, str) or isinstance(hyps, str):
        raise TypeError("pass lists of sentences, not single strings (wrap them: [ref], [hyp])")
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses: lengths must match")
    r, h = [normalize(x) for x in refs], [normalize(x) for x in hyps]
    keep = [i for i, x in enumerate(r) if x]
    if not keep:
        raise ValueError(f"all {len(refs)} references are empty after normalisation: nothing to score")
    return [r[i] for i in keep], [h[i] for i in keep], len(r) - len(keep)


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct-n: unique word n-grams / all word n-grams over ``texts`` (lower-cased, whitespace split)."""
    grams, total = set(), 0
    for t in texts:
        w = t.lower().split()
        g = [tuple(w[i:i + n]) for i in range(len(w) - n + 1)]
        grams.update(g)
        total += len(g)
    return len(grams) / max(total, 1)


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus word error rate (fraction; empty references dropped; an empty hypothesis = all deletions)."""
    r, h, _ = _pairs(refs, hyps)
    return float(jiwer.wer(r, h))


def cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus character error rate (fraction) on the normalised text, spaces included."""
    r, h, _ = _pairs(refs, hyps)
    return float(jiwer.cer(r, h))


def error_rates(refs: Sequence[str], hyps: Sequence[str]) -> dict:
    """WER, CER and their edit counts: ``{"wer", "cer", "substitutions", "deletions", "insertions",
    "reference_words", "utterances", "skipped_empty_references"}``."""
    r, h, skipped = _pairs(refs, hyps)
    o = jiwer.process_words(r, h)
    return {"wer": float(o.wer), "cer": float(jiwer.cer(r, h)), "substitutions": o.substitutions,
            "deletions": o.deletions, "insertions": o.insertions,
            "reference_words": sum(len(x.split()) for x in r), "utterances": len(r),
            "skipped_empty_references": skipped}


def tts_intelligibility(texts: Sequence[str], waves: Sequence[np.ndarray],
                        asr: Callable[[np.ndarray], str], sample_rate_hz: int = 16000) -> dict:
    """TTS intelligibility: WER of ``asr(wave16k) -> str`` on synthesised speech vs the input text.

    ``asr`` is any recogniser (the aligned checkpoint's own ASR, a Whisper from a local path).
    Returns :func:`error_rates` plus ``transcripts``; raises ``ValueError`` on a non-16 kHz rate.
    """
    if sample_rate_hz != 16000:
        raise ValueError(f"tts_intelligibility expects 16 kHz audio, got {sample_rate_hz} Hz: resample first")
    if len(texts) != len(waves):
        raise ValueError(f"{len(texts)} texts but {len(waves)} waves: lengths must match")
    hyps = [str(asr(np.asarray(w, np.float32))) if np.asarray(w).size else "" for w in waves]
    out = error_rates(list(texts), hyps)
    out["transcripts"] = hyps
    return out
