"""Evaluation rows -> report dict -> Markdown, MLflow metrics and plots (plain Python + matplotlib).

A metric that cannot be measured is ``{"missing": reason}`` in the report, listed under
``report["missing"]``, left out of the MLflow metrics and shown as "missing" in the Markdown:
never a 0 that looks like a result.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from omni.metrics.duplex import duplex_metrics
from omni.metrics.judge import judge_dialogues
from omni.metrics.nlg import MetricUnavailable, bertscore, bleu, meteor, rouge_l
from omni.metrics.style import style_metrics
from omni.metrics.text import error_rates

STREAMS = ("user_speech", "user_text", "assistant_text", "assistant_speech")


def _try(fn, *args, **kw):
    """``fn(...)``, or ``{"missing": reason}`` when it cannot run: bad or no input, missing data or
    model, or a crash inside a metric library (one metric failing must not sink the others)."""
    try:
        return fn(*args, **kw)
    except (ValueError, MetricUnavailable, OSError) as e:
        return {"missing": str(e).splitlines()[0]}
    except Exception as e:  # noqa: BLE001
        return {"missing": f"{getattr(fn, '__name__', 'metric')} failed: {type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''}"}


def _losses(rows: list[dict]) -> dict:
    acc: dict = {}
    for r in rows:
        for stage, d in r["losses"].items():
            for k, (s, c) in d.items():
                a = acc.setdefault(stage, {}).setdefault(k, [0.0, 0])
                a[0] += s
                a[1] += c
    return {st: {k: s / c for k, (s, c) in d.items() if c} for st, d in acc.items()}


def _dialogue(pairs: list[dict], cfg) -> dict:
    if not pairs:
        return {"missing": "no user turn followed by an assistant turn in the held-out records"}
    refs, hyps = [p["ref"] for p in pairs], [p["hyp"] for p in pairs]
    out: dict = {"sentences": len(pairs)}
    fns = {"bleu": bleu, "rouge_l": rouge_l, "meteor": meteor}
    for name in ("bleu", "rouge_l", "meteor"):
        out[name] = _try(fns[name], refs, hyps) if name in cfg.text_metrics else {"missing": "off (eval.text_metrics)"}
    if "bertscore" in cfg.text_metrics:
        b = _try(bertscore, refs, hyps, cfg.bertscore_model)
        out["bertscore_f1"] = b.get("f1", b) if "missing" not in b else b
    else:
        out["bertscore_f1"] = {"missing": "off (eval.text_metrics)"}
    out["examples"] = [{"ref": p["ref"], "hyp": p["hyp"]} for p in pairs[:3]]
    return out


def summarize(rows: list[dict], eval_cfg, api_key: str | None = None) -> dict:
    """Pool per-record rows (``omni.metrics.model_eval``) into the report sections."""
    rows = sorted(rows, key=lambda r: r["key"])
    asr = [p for r in rows for p in r["asr"]]
    tts = [p for r in rows for p in r["tts"]]
    resp = [p for r in rows for p in r["respond"]]
    conv = [r["duplex"] for r in rows if r.get("duplex")]
    rep: dict = {"losses": _losses(rows)}
    rep["asr"] = (_try(error_rates, [p["ref"] for p in asr], [p["hyp"] for p in asr]) if asr
                  else {"missing": "no user turns in the held-out records"})
    if "wer" in rep["asr"]:
        rep["asr"]["examples"] = [{"ref": p["ref"], "hyp": p["hyp"]} for p in asr[:3]]
    tts_missing = next((r["tts_missing"] for r in rows if r.get("tts_missing")), None)
    rep["tts"] = ({"missing": tts_missing} if tts_missing else
                  _try(error_rates, [p["text"] for p in tts], [p["hyp"] for p in tts]) if tts
                  else {"missing": "no assistant turns in the held-out records"})
    if "wer" in rep["tts"]:
        rep["tts"].update(asr=eval_cfg.tts_asr or "the checkpoint's own ASR",
                          units_generated=sum(p["units"] for p in tts))
    rep["dialogue"] = _dialogue(resp, eval_cfg)
    rep["style"] = (_try(style_metrics, [p["ref_style"] for p in resp], [p["pred_style"] for p in resp]) if resp
                    else {"missing": "no assistant replies"})
    rep["judge"] = judge_dialogues([{"context": p["context"], "reference": p["ref"], "response": p["hyp"]}
                                    for p in resp], eval_cfg.judge_endpoint, eval_cfg.judge_model, api_key)
    if conv:
        compute, audio = sum(c["compute_s"] for c in conv), sum(c["duration_s"] for c in conv)
        steps = [m for c in conv for m in c["step_ms"]]
        rep["duplex"] = {"conversations": len(conv), "rtf": compute / audio,
                         "step_ms_p50": float(np.percentile(steps, 50)) if steps else None,
                         "model": _try(duplex_metrics, conv),
                         "reference": _try(duplex_metrics, [{**c, "assistant": c["reference_assistant"]} for c in conv]),
                         "timelines": [{"user": [[t["start_s"], t["end_s"]] for t in c["user_turns"]],
                                        "assistant": c["assistant"], "duration_s": c["duration_s"]} for c in conv]}
    else:
        rep["duplex"] = {"conversations": 0, "missing": "eval.duplex_conversations is 0 or no held-out records"}
    rep["missing"] = missing_list(rep)
    return rep


def missing_list(rep: dict, prefix: str = "") -> list[str]:
    """``section.metric: reason`` for every missing entry of the report."""
    out = []
    for k, v in rep.items():
        if not isinstance(v, dict):
            continue
        if set(v) == {"missing"}:
            out.append(f"{prefix}{k}: {v['missing']}")
        else:
            if "missing" in v:
                out.append(f"{prefix}{k}: {v['missing']}")
            out += missing_list(v, f"{prefix}{k}.")
    return out


def flat_metrics(rep: dict) -> dict[str, float]:
    """MLflow metrics ``eval_*`` (measured numbers only)."""
    out = {f"eval_{st}_{k}": v for st, d in rep["losses"].items() for k, v in d.items()}
    for sec in ("asr", "tts"):
        out.update({f"eval_{sec}_{k}": rep[sec][k] for k in ("wer", "cer") if k in rep[sec]})
    for k in ("bleu", "rouge_l", "meteor", "bertscore_f1"):
        if isinstance(rep["dialogue"].get(k), float):
            out[f"eval_dialogue_{k}"] = rep["dialogue"][k]
    for key, d in rep["style"].items():
        if isinstance(d, dict) and "macro_f1" in d:
            out[f"eval_style_{key}_macro_f1"], out[f"eval_style_{key}_weighted_f1"] = d["macro_f1"], d["weighted_f1"]
    if "score_mean" in rep["judge"]:
        out["eval_judge_score"] = rep["judge"]["score_mean"]
    d = rep["duplex"]
    if d.get("conversations"):
        out["eval_duplex_rtf"] = d["rtf"]
        for k, v in d["model"].items():
            if k.endswith(("_s", "_rate", "_ratio", "_per_min")) and isinstance(v, float) and k != "duration_s":
                out[f"eval_duplex_{k}"] = v
    return {k: float(v) for k, v in out.items()}


def _fmt(v, spec: str = ".3f") -> str:
    if isinstance(v, dict) and "missing" in v:
        return f"missing ({v['missing']})"
    return format(v, spec) if isinstance(v, (int, float)) else "–"


def markdown(r: dict) -> str:
    """The report as a readable Markdown page."""
    L = [f"# Evaluation of `{r.get('checkpoint')}`", "", f"Held-out records: {r.get('heldout_records')}", "",
         "## Held-out loss (nats/token)", "", "| stage | loss | " + " | ".join(STREAMS) + " |", "|---" * 6 + "|"]
    for st, d in r["losses"].items():
        L.append(f"| {st} | {d['loss']:.3f} | " + " | ".join(_fmt(d.get(k)) for k in STREAMS) + " |")
    L += ["", "## Recognition and synthesis", ""]
    for sec, what in (("asr", "ASR (own, greedy)"), ("tts", "TTS intelligibility (own ASR on own speech)")):
        a = r[sec]
        L.append(f"- {what}: WER {_fmt(a['wer'])}, CER {_fmt(a['cer'])} on {a['utterances']} utterances"
                 if "wer" in a else f"- {what}: missing ({a['missing']})")
    d = r["dialogue"]
    L += ["", "## Dialogue replies (half duplex, 0-100)", ""]
    if "missing" in d:
        L.append(f"missing ({d['missing']})")
    else:
        L += [f"- {k}: {_fmt(d[k], '.2f')}" for k in ("bleu", "rouge_l", "meteor", "bertscore_f1")]
        L.append(f"- LLM judge (0-10): {_fmt(r['judge'].get('score_mean', r['judge']), '.2f')}")
    L += ["", "## Style F1", "", "| style | macro F1 | weighted F1 | accuracy | n |", "|---|---|---|---|---|"]
    for k, s in (r["style"].items() if "missing" not in r["style"] else []):
        L.append(f"| {k} | {_fmt(s.get('macro_f1', s))} | {_fmt(s.get('weighted_f1'))} | {_fmt(s.get('accuracy'))} "
                 f"| {s.get('count', '–')} |")
    dx = r["duplex"]
    L += ["", "## Full duplex (streaming engine, simulated real time)", ""]
    if not dx.get("conversations"):
        L.append(f"missing ({dx.get('missing')})")
    else:
        L += [f"{dx['conversations']} conversations, RTF {dx['rtf']:.3f}, step p50 {_fmt(dx['step_ms_p50'], '.1f')} ms",
              "", "| metric | model | reference data |", "|---|---|---|"]
        for k in ("response_latency_p50_s", "response_latency_p90_s", "stop_latency_p50_s", "turn_taking_success_rate",
                  "response_rate", "yield_rate", "false_barge_in_rate", "overlap_ratio", "silence_ratio"):
            L.append(f"| {k} | {_fmt(dx['model'].get(k, {'missing': 'no event'}))} | "
                     f"{_fmt(dx['reference'].get(k, {'missing': 'no event'}))} |")
    if r.get("missing"):
        L += ["", "## Missing", ""] + [f"- {m}" for m in r["missing"]]
    return "\n".join(L) + "\n"


def plot_all(r: dict, out_dir: Path, history: dict | None = None) -> list[str]:
    """Write the plots that have data; returns their file names."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=110)
        plt.close(fig)
        made.append(name)

    losses = r["losses"]
    if losses:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        w = 0.8 / len(STREAMS)
        for j, s in enumerate(STREAMS):
            xs = [i + j * w for i, st in enumerate(losses) if s in losses[st]]
            ax.bar(xs, [losses[st][s] for st in losses if s in losses[st]], width=w, label=s)
        ax.set_xticks([i + 0.4 - w / 2 for i in range(len(losses))], list(losses), fontsize=8)
        ax.set(ylabel="held-out cross-entropy (nats)", title="Held-out loss per stage and stream")
        ax.legend(fontsize=7)
        save(fig, "eval_losses.png")
    m = r["duplex"].get("model") or {}
    lat = [("response latency (s)", m.get("response_latencies_s") or []), ("stop latency (s)", m.get("stop_latencies_s") or [])]
    if any(v for _, v in lat):
        fig, axs = plt.subplots(1, 2, figsize=(8, 3))
        for ax, (name, v) in zip(axs, lat):
            ax.hist(v, bins=20) if v else ax.text(0.5, 0.5, "no events", ha="center")
            ax.set(xlabel=name, ylabel="count")
        save(fig, "eval_latency_hist.png")
    styles = {k: s for k, s in r["style"].items() if isinstance(s, dict) and "confusion" in s}
    if styles:
        fig, axs = plt.subplots(1, len(styles), figsize=(4 * len(styles), 3.6))
        for ax, (k, s) in zip(np.atleast_1d(axs), styles.items()):
            ax.imshow(np.array(s["confusion"]), cmap="Blues")
            ax.set_xticks(range(len(s["labels"])), s["labels"], rotation=60, fontsize=7)
            ax.set_yticks(range(len(s["labels"])), s["labels"], fontsize=7)
            ax.set(title=f"{k} (rows: reference)", xlabel="predicted")
        save(fig, "eval_style_confusion.png")
    if history:
        fig, axs = plt.subplots(1, len(history), figsize=(5 * len(history), 3.2))
        for ax, (metric, runs) in zip(np.atleast_1d(axs), history.items()):
            for run_name, pts in runs.items():
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=run_name)
            ax.set(xlabel="step", ylabel=metric, title=f"{metric} vs step")
            ax.legend(fontsize=7)
        save(fig, "eval_history.png")
    return made
