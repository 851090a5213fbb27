"""OmniChat evaluation: generate each held-out response, score text and style.

Metrics (flat, numeric, so every comparison run's metrics line up in one MLflow table):
``emotion_f1_macro``, ``pitch_f1_macro``, ``speed_f1_macro``, ``style_f1_macro`` (their mean),
``emotion_majority_f1_macro`` (always predicting the most frequent training-free reference
label: the baseline), ``bleu``, ``rouge_l`` and, when ``omni.metrics.nlg`` can run them here
(WordNet / local encoder), ``meteor`` and ``bertscore_f1`` (0-100).
"""
from __future__ import annotations

from collections import Counter

import torch

from omni.omnichat.data import TurnExample, parse_response

STYLE_KEYS = ("emotion", "pitch", "speed")


def macro_f1(refs: list[str], preds: list[str]) -> float:
    """Macro F1 over the labels present in ``refs`` (sklearn), 0-1."""
    from sklearn.metrics import f1_score
    labels = sorted(set(refs))
    return float(f1_score(refs, preds, labels=labels, average="macro", zero_division=0))


def majority_f1(refs: list[str]) -> float:
    top = Counter(refs).most_common(1)[0][0]
    return macro_f1(refs, [top] * len(refs))


def generate_responses(model, text_tokenizer, examples: list[TurnExample], max_new_tokens: int | None = None):
    """[(reference text, hypothesis text, reference style, predicted style, complete)]."""
    out = []
    was = model.training
    model.eval()
    with torch.no_grad():
        for ex in examples:
            ids = model.generate(ex.segments[:-1], max_new_tokens)
            text_ids, style, complete = parse_response(ids, model.vocab)
            out.append((text_tokenizer.decode(ex.target_text_ids), text_tokenizer.decode(text_ids),
                        ex.style, style, complete))
    model.train(was)
    return out


def score(results) -> dict:
    """Flat metric dict from :func:`generate_responses` output."""
    if not results:
        raise ValueError("no held-out turn examples to score: more data or a larger data.heldout_fraction")
    refs = [r[0] for r in results]
    hyps = [r[1] for r in results]
    m: dict = {"eval_turns": float(len(results)),
               "style_complete_fraction": sum(r[4] for r in results) / len(results)}
    for k in STYLE_KEYS:
        rs, ps = [r[2][k] for r in results], [r[3][k] for r in results]
        m[f"{k}_f1_macro"] = macro_f1(rs, ps)
        m[f"{k}_majority_f1_macro"] = majority_f1(rs)
        m[f"{k}_accuracy"] = sum(a == b for a, b in zip(rs, ps)) / len(rs)
    m["style_f1_macro"] = sum(m[f"{k}_f1_macro"] for k in STYLE_KEYS) / 3
    m.update(text_metrics(refs, hyps))
    return m


def text_metrics(refs: list[str], hyps: list[str]) -> dict:
    """BLEU / ROUGE-L (always) and METEOR / BERTScore when ``omni.metrics.nlg`` can run them."""
    out: dict = {}
    try:
        from omni.metrics import nlg
    except ImportError:  # pragma: no cover - nlg is part of the project
        nlg = None
    if nlg is not None:
        out["bleu"] = nlg.bleu(refs, hyps)
        out["rouge_l"] = nlg.rouge_l(refs, hyps)
        for name, fn in (("meteor", nlg.meteor), ("bertscore_f1", lambda r, h: nlg.bertscore(r, h)["f1"])):
            try:
                out[name] = float(fn(refs, hyps))
            except Exception as e:  # MetricUnavailable / missing local model: reported, never 0
                out[f"{name}_missing"] = str(e).splitlines()[0][:200]
        return out
    import sacrebleu  # pragma: no cover
    from rouge_score import rouge_scorer  # pragma: no cover
    out["bleu"] = float(sacrebleu.corpus_bleu(hyps, [refs]).score)  # pragma: no cover
    sc = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)  # pragma: no cover
    out["rouge_l"] = 100 * sum(sc.score(r, h)["rougeL"].fmeasure for r, h in zip(refs, hyps)) / len(refs)
    return out  # pragma: no cover


def evaluate_examples(model, text_tokenizer, examples: list[TurnExample], max_new_tokens: int | None = None) -> dict:
    m = score(generate_responses(model, text_tokenizer, examples, max_new_tokens))
    if model.mixformer is not None:
        m.update({f"expert_weight_{n}": w for n, w in model.mixformer.expert_weights().items()})
    return m
