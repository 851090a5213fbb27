"""Evaluate an export on the held-out split and log the report to MLflow.

    python -m jobs.evaluate --config configs/tiny.yaml                       # the curriculum's final export
    python -m jobs.evaluate --config configs/tiny.yaml --checkpoint models:/omni-duplex-tiny@candidate

Measures (``report.json``, ``report.md``, ``eval_losses.png`` in ``eval.output_dir``):
  * teacher-forced held-out loss per stage and per stream;
  * ASR: the model's own transcripts of held-out turns (align format, greedy) → WER / CER;
  * full duplex: the streaming engine listens to held-out user channels in real-time-sized
    frames; when does it start speaking after each user turn ends (p50/p90), and its RTF.
"""
from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from omni.config import STAGES, Config
from jobs._common import JobError, load, parse_args, run_main, setup_mlflow

USAGE = __doc__ + "\nOptions: --config PATH [--checkpoint DIR|models:/NAME@ALIAS] [key=value ...]"


def teacher_forced_losses(cfg: Config, exp, speech, recs: list[dict]) -> dict:
    from omni.train_loop import packed_batches, stage_examples, stream_losses
    from omni.packing import model_inputs

    out = {}
    for stage in STAGES:
        sums, tot = {}, [0.0, 0]
        exs = stage_examples(cfg, stage, exp.vocab, speech, iter(recs))
        with torch.no_grad():
            for b in packed_batches(exs, cfg.train.seq_len, cfg.train.micro_batch_size, exp.vocab.special("pad")):
                loss, per = stream_losses(exp.model(**model_inputs(b)).logits, b["labels"], b["stream"])
                n = int((b["labels"] != -100).sum())
                tot[0] += loss.item() * n
                tot[1] += n
                for k, (s, c) in per.items():
                    acc = sums.setdefault(k, [0.0, 0])
                    acc[0] += s
                    acc[1] += c
        if tot[1]:
            out[stage] = {"loss": tot[0] / tot[1], **{k: s / c for k, (s, c) in sums.items()}}
    return out


def greedy(model, prompt: list[int], allowed: torch.Tensor, stop_id: int, max_new: int) -> list[int]:
    """Greedy decoding restricted to ``allowed`` token ids (bool mask over the vocab)."""
    ids = torch.tensor([prompt])
    out, past = [], None
    with torch.no_grad():
        for _ in range(max_new):
            res = model(input_ids=ids, past_key_values=past, use_cache=True)
            past = res.past_key_values
            logits = res.logits[0, -1].masked_fill(~allowed, float("-inf"))
            nxt = int(logits.argmax())
            if nxt == stop_id:
                break
            out.append(nxt)
            ids = torch.tensor([[nxt]])
    return out


def asr_eval(cfg: Config, exp, speech, recs: list[dict]) -> dict:
    from omni.formats import Dialogue, align_pairs
    from omni.metrics import cer, wer

    v = exp.vocab
    allowed = torch.zeros(v.size, dtype=torch.bool)
    allowed[: v.text_size] = True
    allowed[v.special("eot")] = True
    refs, hyps = [], []
    for rec in recs:
        d = Dialogue.from_record(rec, frame_rate_hz=speech.frame_rate_hz, silence_unit=speech.silence_unit)
        for p in align_pairs(d, asr_speakers=("user",), tts_speakers=()):
            prompt = [v.special("asr"), *v.units_to_ids(p.units).tolist(), v.special("text")]
            hyp = greedy(exp.model, prompt, allowed, v.special("eot"), cfg.eval.max_new_tokens)
            refs.append(exp.text_tokenizer.decode(p.text_ids.tolist()))
            hyps.append(exp.text_tokenizer.decode(hyp))
    if not refs:
        return {"missing": "no user turns in the held-out records"}
    return {"wer": wer(refs, hyps), "cer": cer(refs, hyps), "utterances": len(refs),
            "examples": [{"ref": r, "hyp": h} for r, h in zip(refs[:3], hyps[:3])]}


def duplex_eval(cfg: Config, export_dir: Path, recs: list[dict]) -> dict:
    from omni.duplex import DuplexEngine
    from omni.metrics import response_latencies, voiced_segments

    engine = DuplexEngine(str(export_dir), cfg.serve)
    frame = 1280  # 80 ms frames, as a microphone would send them
    lat_all, rtf_num, rtf_den, convs = [], 0.0, 0.0, []
    for rec in recs[: cfg.eval.duplex_conversations]:
        user, pcm = rec["user"], []
        t0 = time.perf_counter()
        with engine.session() as s:
            for i in range(0, len(user), frame):
                pcm += [ev["pcm"] for ev in s.feed(user[i:i + frame]) if ev["type"] == "audio"]
        rtf_num += time.perf_counter() - t0
        rtf_den += len(user) / 16000
        # the assistant's timeline = its output audio laid end to end; voiced = 40 ms frames above -45 dBFS
        out_audio = np.concatenate(pcm) if pcm else np.zeros(0, np.float32)
        hop = 640
        n = len(out_audio) // hop
        rms = np.sqrt(np.mean(out_audio[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12) if n else np.zeros(0)
        voiced = np.where(20 * np.log10(rms) > -45, 1, 0)
        segs = voiced_segments(voiced, 0, 16000 / hop)
        ends = [t["end_s"] for t in rec["meta"]["turns"] if t["speaker"] == "user"]
        r = response_latencies(ends, segs)
        convs.append({"key": rec["key"], "assistant_voiced_s": float(voiced.sum() * hop / 16000), **r})
        if "latency_p50_s" in r:
            lat_all.append(r["latency_p50_s"])
    out = {"conversations": len(convs), "rtf": rtf_num / max(rtf_den, 1e-9), "per_conversation": convs}
    if convs:
        out["response_rate"] = float(np.mean([c["response_rate"] for c in convs]))
    if lat_all:
        out["latency_p50_s"] = float(np.median(lat_all))
    return out


def _plot(losses: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    streams = sorted({k for v in losses.values() for k in v if k != "loss"})
    fig, ax = plt.subplots(figsize=(7, 3.5))
    w = 0.8 / max(1, len(streams))
    for j, s in enumerate(streams):
        xs = [i + j * w for i, st in enumerate(losses) if s in losses[st]]
        ax.bar(xs, [losses[st][s] for st in losses if s in losses[st]], width=w, label=s)
    ax.set_xticks([i + 0.4 - w / 2 for i in range(len(losses))], list(losses), fontsize=8)
    ax.set(ylabel="held-out cross-entropy (nats)", title="Held-out loss per stage and stream")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def evaluate(cfg: Config, checkpoint: str | None = None) -> dict:
    import mlflow

    from data_prep.reader import ShardStream
    from omni.model import load_export
    from omni.registry import resolve_export
    from omni.speech_tokenizer import load_speech_tokenizer

    setup_mlflow(cfg)
    state_file = Path(cfg.train.output_dir).resolve() / "curriculum.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    spec = checkpoint or state.get("final_export")
    if not spec:
        raise JobError(f"no --checkpoint given and no finished curriculum at {state_file}")
    export_dir = resolve_export(spec)
    exp = load_export(export_dir)
    speech = load_speech_tokenizer(exp.speech_tokenizer_dir)
    try:
        stream = ShardStream(cfg.data.output_dir, "heldout", shuffle_buffer=1, loop=False, audio=True)
    except (ValueError, FileNotFoundError) as e:
        raise JobError(str(e)) from None
    recs = list(itertools.islice(iter(stream), cfg.eval.max_samples))
    t0 = time.time()
    report = {"checkpoint": str(spec), "export_dir": str(export_dir), "heldout_records": len(recs),
              "losses": teacher_forced_losses(cfg, exp, speech, recs),
              "asr": asr_eval(cfg, exp, speech, recs),
              "duplex": duplex_eval(cfg, export_dir, recs)}
    report["seconds"] = round(time.time() - t0, 2)
    out = Path(cfg.eval.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    _plot(report["losses"], out / "eval_losses.png")
    (out / "report.md").write_text(_markdown(report))
    run_id = state.get("parent_run_id")
    client = mlflow.MlflowClient()
    if run_id is None:
        run_id = client.create_run(mlflow.get_experiment_by_name(cfg.mlflow.experiment).experiment_id,
                                   run_name=f"{cfg.name}-evaluate").info.run_id
    flat = {f"eval_{st}_{k}": v for st, d in report["losses"].items() for k, v in d.items()}
    flat.update({f"eval_asr_{k}": report["asr"][k] for k in ("wer", "cer") if k in report["asr"]})
    flat.update({f"eval_duplex_{k}": report["duplex"][k] for k in ("rtf", "latency_p50_s", "response_rate")
                 if k in report["duplex"]})
    for k, v in flat.items():
        client.log_metric(run_id, k, float(v))
    for f in ("report.json", "report.md", "eval_losses.png"):
        client.log_artifact(run_id, str(out / f), artifact_path="eval")
    report["mlflow_run_id"] = run_id
    return report


def _markdown(r: dict) -> str:
    lines = [f"# Evaluation of `{r['checkpoint']}`", "", f"Held-out records: {r['heldout_records']}", "",
             "| stage | loss | " + " | ".join(["user_speech", "user_text", "assistant_text", "assistant_speech"]) + " |",
             "|---|---|---|---|---|---|"]
    for st, d in r["losses"].items():
        cells = [f"{d[k]:.3f}" if k in d else "–" for k in ("user_speech", "user_text", "assistant_text",
                                                             "assistant_speech")]
        lines.append(f"| {st} | {d['loss']:.3f} | " + " | ".join(cells) + " |")
    a = r["asr"]
    lines += ["", f"ASR (model's own, greedy): WER {a['wer']:.3f}, CER {a['cer']:.3f} on {a['utterances']} turns"
              if "wer" in a else f"ASR: missing ({a.get('missing')})"]
    d = r["duplex"]
    lines += [f"Full duplex: {d['conversations']} conversations, RTF {d['rtf']:.3f}, response rate "
              f"{d.get('response_rate', float('nan')):.2f}, latency p50 {d.get('latency_p50_s', float('nan')):.2f} s"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    cfg_path, overrides, flags = parse_args(argv if argv is not None else sys.argv[1:], USAGE, {"checkpoint": None})
    cfg = load(cfg_path, overrides)
    r = evaluate(cfg, flags["checkpoint"])
    print(json.dumps({"report": str(Path(cfg.eval.output_dir).resolve() / "report.json"),
                      "losses": {k: round(v["loss"], 4) for k, v in r["losses"].items()},
                      "asr_wer": r["asr"].get("wer"), "duplex_rtf": r["duplex"]["rtf"]}))
    return 0


if __name__ == "__main__":
    run_main(main)
