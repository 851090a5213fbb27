"""OmniChat evaluation: generate each held-out response, score text and style.

Metrics (flat, numeric, so every comparison run's metrics line up in one MLflow table):
``emotion_f1_macro``, ``pitch_f1_macro``, ``speed_f1_macro``, ``style_f1_macro`` (their mean),
``emotion_majority_f1_macro`` (always predicting the most frequent training-free reference
label: the baseline), ``bleu``, ``rouge_l`` and, when ``omni.metrics.nlg`` can run them here
(WordNet / local encoder), ``meteor`` and ``bertscore_f1`` (0-100).
"""
from __future__ import annotations

import statistics
import time
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
    """[(reference text, hypothesis text, reference style, predicted style, complete)].

    With ``omnichat.para_norm: speaker`` the examples' audio is first added to their speakers'
    statistics (not to the pooled training statistics): unlabelled speaker adaptation."""
    out = []
    was = model.training
    model.eval()
    with torch.no_grad():
        model.observe(examples, pooled=False)
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


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return 1000 * statistics.median(ts)


def fusion_cost(model, example: TurnExample, repeats: int = 10) -> dict:
    """Compute share of the Mix-Former in answering ``example`` (medians over ``repeats``, this
    process's threads). The experts' features of the prompt's audio turns are computed first (frozen,
    cacheable: reported as ``experts_ms``, not in the share); then ``fusion_ms`` = the Mix-Former
    forward over those turns (batched, as generation does), ``llm_turn_ms`` = greedy generation of
    the reply minus that fusion, ``fusion_compute_share = fusion / (fusion + LLM)``, and the same
    against the prefill alone (``fusion_share_of_prefill``). A model without audio input
    (``omnichat.input: asr_text``) has no fusion: share 0."""
    import dataclasses
    from torch import nn
    prefix = example.segments[:-1]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            audio = [s for s in prefix if s.kind == "audio"]
            t = time.perf_counter()
            feats = [model.expert_features(dataclasses.replace(s, cache_key=None)) for s in audio]
            experts_ms = 1000 * (time.perf_counter() - t)
            it = iter(feats)
            ready = [dataclasses.replace(s, features=next(it)) if s.kind == "audio" else s for s in prefix]
            x, m, _ = model.build_inputs([ready], with_labels=False)
            prefill_ms = _median_ms(lambda: model.llm(inputs_embeds=x, attention_mask=m), repeats)
            gen_ms = _median_ms(lambda: model.generate(ready), max(3, repeats // 4))
            fusion_ms, seconds = 0.0, sum(len(s.wave) for s in audio) / 16000
            if model.mixformer is not None and audio:
                lens = {n: torch.tensor([f[n].shape[0] for f in feats]) for n in model.experts}
                batched = {n: nn.utils.rnn.pad_sequence([f[n] for f in feats], batch_first=True) for n in model.experts}
                fusion_ms = _median_ms(lambda: model.mixformer(batched, lens), repeats)
    finally:
        model.train(was)
    llm_turn_ms = max(gen_ms - fusion_ms, prefill_ms)
    return {"audio_s": seconds, "audio_turns": len(audio), "experts_ms": experts_ms, "fusion_ms": fusion_ms,
            "llm_prefill_ms": prefill_ms, "llm_turn_ms": llm_turn_ms,
            "fusion_ms_per_audio_s": fusion_ms / seconds if seconds else 0.0,
            "fusion_compute_share": fusion_ms / (fusion_ms + llm_turn_ms),
            "fusion_share_of_prefill": fusion_ms / (fusion_ms + prefill_ms)}
