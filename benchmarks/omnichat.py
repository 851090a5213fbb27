"""OmniChat benchmark (issues 8, 15), CPU, tiny config, bounded (~4-6 min by default).

1. **Fusion cost**: Mix-Former forward per second of user audio vs the LLM work of the same
   turn (prefill of the turn's sequence + greedy generation of the reply), medians over
   repeats. Goal: fusion < 10 % of the turn's compute (``fusion_fraction_of_turn``).
   The experts' own cost is reported too (frozen, cacheable, not part of the fusion).
2. **Emotion F1**: the tiny model (configs/omnichat_tiny.yaml sizes) trained with plain AdamW
   for a fixed CPU-time budget on espeak-voiced ShareChatX-style emotion dialogues, scored on
   held-out dialogues of the same catalogue: macro-F1 of the reply's emotion tag vs always
   answering the training set's most frequent emotion. Goal: >= 2x the baseline.
3. **Content expert** (issue 15): the same data, seed and number of steps with the Whisper base
   encoder (``omnichat.content_expert: whisper_base``) as the content expert instead of the tiny
   random one. Its features are precomputed once, as data prep does (user turns of the
   FLAC-decoded audio, float16 ``KEY.user_content.npy`` in a shard), the dialogues are read back
   from that shard, and training/evaluation use the stored features (the encoder never runs:
   ``content_encoded_turns_in_training_whisper_base_content`` = 0). Reported per expert: emotion / pitch / speed /
   style macro-F1 and the evaluator's text metrics; precompute seconds and real-time factor.

    python benchmarks/omnichat.py [--train-cpu-budget-s 60] [--dialogues 60] [--repeats 20]
                                  [--content-experts tiny,whisper_base] [--steps N] [--seeds 1]

Last line: one JSON object (units in key names).
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_prep.synth.generate import generate_dialogue  # noqa: E402
from omni.config import load_config  # noqa: E402
from omni.model import build_model  # noqa: E402
from omni.omnichat.data import Segment, turn_examples  # noqa: E402
from omni.omnichat.evaluate import generate_responses, macro_f1  # noqa: E402
from omni.omnichat.model import OmniChatModel  # noqa: E402
from omni.omnichat.synthetic import emotion_records, tiny_vocab  # noqa: E402
from omni.omnichat.train import fit_plain  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "omnichat_tiny.yaml"


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return 1000 * statistics.median(ts)


def fusion_cost(model: OmniChatModel, example, repeats: int) -> dict:
    audio = [s for s in example.segments if s.kind == "audio"][-1]
    seconds = len(audio.wave) / 16000
    feats = {n: e.features(audio.wave) for n, e in model.experts.items()}
    lens = {n: torch.tensor([f.shape[0]]) for n, f in feats.items()}
    batched = {n: f[None] for n, f in feats.items()}
    prefix = example.segments[:-1]
    model.eval()
    with torch.no_grad():
        experts_ms = _median_ms(lambda: [e.features(audio.wave) for e in model.experts.values()], max(3, repeats // 4))
        fusion_ms = _median_ms(lambda: model.mixformer(batched, lens), repeats)
        x, m, _ = model.build_inputs([prefix], with_labels=False)
        prefill_ms = _median_ms(lambda: model.llm(inputs_embeds=x, attention_mask=m), repeats)
        n_new = len(model.generate(prefix))
        gen_ms = _median_ms(lambda: model.generate(prefix), max(3, repeats // 4))
    # generate() includes its own fusion + prefill; the LLM part of the turn is gen - fusion
    llm_turn_ms = max(gen_ms - fusion_ms, prefill_ms)
    return {"turn_audio_s": round(seconds, 3), "turn_tokens": int(x.shape[1]), "reply_tokens": n_new,
            "experts_ms_per_audio_s": experts_ms / seconds, "fusion_ms_per_audio_s": fusion_ms / seconds,
            "fusion_ms": fusion_ms, "llm_prefill_ms": prefill_ms, "llm_turn_ms": llm_turn_ms,
            "fusion_fraction_of_prefill": fusion_ms / (fusion_ms + prefill_ms),
            "fusion_fraction_of_turn": fusion_ms / (fusion_ms + llm_turn_ms)}


def _split(recs, heldout_fraction=0.25):
    train, held = [], []
    for r in recs:
        (held if zlib.crc32(r["key"].encode()) % 1000 < heldout_fraction * 1000 else train).append(r)
    return train, held


def shard_roundtrip(recs, out_dir: Path, content_expert=None, max_turn_s: float = 12.0) -> tuple[list, dict]:
    """Records as training reads them from a shard: audio through FLAC and, with ``content_expert``,
    the content features precomputed from the FLAC-decoded user channel (``KEY.user_content.npy``,
    float16), exactly as ``data_prep.pipeline.Tokenize`` stores them. Returns (records, timing)."""
    from data_prep import shards as S
    from omni.omnichat.precompute import content_features
    samples, t_enc, turns, audio_s = [], 0.0, 0, 0.0
    for r in recs:
        user_flac = S.encode_flac(r["user"])
        meta = json.loads(json.dumps(r["meta"]))
        sample = {"__key__": r["key"].replace(".", "_"), "json": b"", "user.flac": user_flac,
                  "assistant.flac": S.encode_flac(r["assistant"])}
        if content_expert is not None:
            t = time.perf_counter()
            arr, index = content_features(S.decode_flac(user_flac), meta, content_expert, max_turn_s)
            t_enc += time.perf_counter() - t
            meta["omnichat_content"] = index
            turns += len(index["turns"])
            audio_s += sum(x["frames"] for x in index["turns"]) / index["frame_rate_hz"]
            sample["user_content.npy"] = S.encode_npy(arr)
        sample["json"] = json.dumps(meta).encode()
        samples.append(sample)
    entry = S.write_shard(out_dir / "shard-000000.tar", samples)
    back = [S.decode_sample(x, audio=True) for x in S.iter_shard(out_dir / "shard-000000.tar")]
    for b in back:
        b["source_name"] = "synthetic"
    return back, {"precompute_s": t_enc, "turns": turns, "audio_s": audio_s, "shard_mb": entry["bytes"] / 1e6}


def train_and_score(cfg, oc, vocab, tok, train_recs, held_recs, steps: int | None, cpu_budget_s: float,
                    wall_cap_s: float, seed: int = 0) -> dict:
    """Train one OmniChat (plain AdamW; ``steps`` fixed, else the CPU budget) and score held-out turns."""
    from omni.omnichat.evaluate import score
    torch.manual_seed(seed)
    model = OmniChatModel(oc, build_model(cfg.model, vocab, lora=oc.lora), vocab)
    train = [e for r in train_recs for e in turn_examples(r, vocab, oc)]
    held = [e for r in held_recs for e in turn_examples(r, vocab, oc)]
    t1 = time.time()
    for e in train + held:  # frozen experts: features once per turn (cached by the model)
        for s in e.segments:
            if s.kind == "audio":
                model.expert_features(s)
    features_s = time.time() - t1
    rng = random.Random(seed)

    def forever():
        while True:
            order = train[:]
            rng.shuffle(order)
            yield from order
    fit = fit_plain(model, forever(), max_steps=steps or 10 ** 9, lr=oc.lr, micro_batch=oc.micro_batch_size,
                    cpu_budget_s=None if steps else cpu_budget_s, time_budget_s=wall_cap_s)
    res = generate_responses(model, tok, held, max_new_tokens=24)
    metrics = score(res)
    refs = [r[2]["emotion"] for r in res]
    preds = [r[3]["emotion"] for r in res]
    majority = Counter(e.style["emotion"] for e in train).most_common(1)[0][0]
    base = macro_f1(refs, [majority] * len(refs))
    f1 = metrics["emotion_f1_macro"]
    return {"train_turns": len(train), "heldout_turns": len(held), "expert_features_s": features_s,
            "train_steps": fit["steps"], "train_wall_s": fit["wall_s"], "train_cpu_s": fit["cpu_s"],
            "final_train_loss_nats": fit["loss"], "emotion_f1_macro": f1, "majority_emotion": majority,
            "majority_f1_macro": base, "emotion_f1_over_majority_ratio": f1 / base if base > 0 else float("inf"),
            "emotion_accuracy": metrics["emotion_accuracy"], "predicted_emotions": dict(Counter(preds)),
            "expert_weights": model.mixformer.expert_weights(), "feature_counts": dict(model.feature_counts),
            "metrics": metrics}


def emotion_f1(cfg, dialogues: int, cpu_budget_s: float, wall_cap_s: float, seed: int = 0,
               content_experts: tuple[str, ...] = ("tiny", "whisper_base"), steps: int | None = None,
               content_threads: int = 2, seeds: int = 1) -> dict:
    """Emotion F1 of OmniChat per content expert on the same data and number of steps, for model
    seeds ``seed .. seed + seeds - 1`` (LLM / Mix-Former init, tiny expert weights, example order).
    The first run sets the step count (CPU budget) unless ``steps`` is given."""
    import tempfile
    t0 = time.time()
    recs, tok = emotion_records(dialogues, generate_dialogue, seed=seed)
    vocab = tiny_vocab(tok)
    synth_s = time.time() - t0
    runs, info = {}, {"dialogues": len(recs), "synthesis_s": synth_s}
    for kind in content_experts:
        expert = None
        if kind == "whisper_base":
            from omni.omnichat.experts import WhisperBaseContent
            from omni.pretrained import PretrainedMissing
            try:
                expert = WhisperBaseContent(threads=content_threads)
            except PretrainedMissing as e:
                info["whisper_base_content_missing"] = str(e)
                print(f"content expert whisper_base skipped: {e}", flush=True)
                continue
        with tempfile.TemporaryDirectory(prefix="omnichat-bench-") as d:
            back, pre = shard_roundtrip(recs, Path(d), expert, cfg.omnichat.max_turn_s)
        train_recs, held_recs = _split(back)
        runs[kind] = []
        for s in range(seed, seed + seeds):
            oc = cfg.omnichat.model_copy(update={"content_expert": kind, "seed": s})
            run = train_and_score(cfg, oc, vocab, tok, train_recs, held_recs, steps, cpu_budget_s, wall_cap_s, s)
            run["seed"] = s
            if expert is not None:
                run.update({"content_precompute_s": pre["precompute_s"], "content_precompute_turns": pre["turns"],
                            "content_precompute_audio_s": pre["audio_s"],
                            "content_precompute_windows": expert.encode_calls,
                            "content_precompute_rtf": pre["precompute_s"] / max(pre["audio_s"], 1e-9),
                            "shard_mb_with_content": pre["shard_mb"]})
            runs[kind].append(run)
            steps = steps or run["train_steps"]  # every later run trains exactly as many steps
            print(f"content={kind} seed={s}:", json.dumps({k: v for k, v in run.items() if k != "metrics"}),
                  flush=True)
            print(f"content={kind} seed={s} metrics:", json.dumps(run["metrics"]), flush=True)
    return {**info, "runs": runs}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-cpu-budget-s", type=float, default=60.0,
                    help="training budget in CPU seconds of this process (robust to a busy machine)")
    ap.add_argument("--train-wall-cap-s", type=float, default=150.0, help="stop training after this wall time anyway")
    ap.add_argument("--dialogues", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: tiny ops lose to thread sync)")
    ap.add_argument("--content-experts", default="tiny,whisper_base",
                    help="content experts to compare on the same data and steps (first = the headline run)")
    ap.add_argument("--steps", type=int, default=None,
                    help="training steps of every run (default: the first run's CPU budget sets them)")
    ap.add_argument("--content-threads", type=int, default=2, help="CTranslate2 threads of the Whisper base encoder")
    ap.add_argument("--seeds", type=int, default=1,
                    help="model seeds per content expert (same data and steps); F1 keys then hold the mean")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = load_config(CONFIG)
    t0 = time.time()
    kinds = tuple(k.strip() for k in a.content_experts.split(",") if k.strip())
    emo_all = emotion_f1(cfg, a.dialogues, a.train_cpu_budget_s, a.train_wall_cap_s, content_experts=kinds,
                         steps=a.steps, content_threads=a.content_threads, seeds=a.seeds)
    if not emo_all["runs"]:
        raise SystemExit("no content expert could run (see the messages above)")
    emo = next(iter(emo_all["runs"].values()))[0]  # the headline numbers: the first expert's first seed
    # fusion cost on a held-out-like turn of the trained-size model (weights do not change cost)
    recs, tok = emotion_records(2, generate_dialogue, seed=7, start=1000)
    vocab = tiny_vocab(tok)
    model = OmniChatModel(cfg.omnichat, build_model(cfg.model, vocab, lora=cfg.omnichat.lora), vocab)
    ex = max((e for r in recs for e in turn_examples(r, vocab, cfg.omnichat)),
             key=lambda e: len([s for s in e.segments if s.kind == "audio"][-1].wave))
    cost = fusion_cost(model, ex, a.repeats)
    print("fusion:", json.dumps(cost), flush=True)
    out = {"fusion_ms_per_audio_s": round(cost["fusion_ms_per_audio_s"], 3),
           "experts_ms_per_audio_s": round(cost["experts_ms_per_audio_s"], 2),
           "llm_turn_ms": round(cost["llm_turn_ms"], 2), "llm_prefill_ms": round(cost["llm_prefill_ms"], 3),
           "fusion_fraction_of_turn": round(cost["fusion_fraction_of_turn"], 4),
           "fusion_fraction_of_prefill": round(cost["fusion_fraction_of_prefill"], 4),
           "fusion_goal_met": cost["fusion_fraction_of_turn"] < 0.10,
           "headline_content_expert": next(iter(emo_all["runs"])),
           "emotion_f1_macro": round(emo["emotion_f1_macro"], 4), "majority_f1_macro": round(emo["majority_f1_macro"], 4),
           "emotion_f1_over_majority_ratio": round(emo["emotion_f1_over_majority_ratio"], 3),
           "emotion_goal_met": emo["emotion_f1_over_majority_ratio"] >= 2.0,
           "train_cpu_budget_s": a.train_cpu_budget_s, "train_cpu_s": round(emo["train_cpu_s"], 1),
           "train_steps": emo["train_steps"], "dialogues": emo_all["dialogues"],
           "heldout_turns": emo["heldout_turns"]}
    out["seeds"] = a.seeds
    for kind, seed_runs in emo_all["runs"].items():
        sfx, run = f"_{kind}_content", seed_runs[0]
        for k in ("emotion_f1_macro", "pitch_f1_macro", "speed_f1_macro", "style_f1_macro", "emotion_accuracy",
                  "bleu", "rouge_l", "meteor", "bertscore_f1"):
            vals = [float(r["metrics"][k]) for r in seed_runs if k in r["metrics"]]
            if vals:  # mean over seeds (one seed: that run)
                out[k.replace("_macro", "") + sfx] = round(statistics.mean(vals), 4)
                if len(vals) > 1 and k in ("emotion_f1_macro", "style_f1_macro"):
                    out[k.replace("_macro", "") + sfx + "_per_seed"] = [round(v, 4) for v in vals]
                    out[k.replace("_macro", "") + sfx + "_sd"] = round(statistics.stdev(vals), 4)
        out["emotion_majority_f1" + sfx] = round(run["majority_f1_macro"], 4)
        out["train_steps" + sfx] = run["train_steps"]
        out["train_cpu_s" + sfx] = round(statistics.mean(r["train_cpu_s"] for r in seed_runs), 1)
        out["final_train_loss_nats" + sfx] = round(statistics.mean(r["final_train_loss_nats"] for r in seed_runs), 4)
        out["expert_weight_content" + sfx] = round(statistics.mean(r["expert_weights"].get("content", float("nan"))
                                                                   for r in seed_runs), 4)
        if "content_precompute_s" in run:
            out.update({"content_precompute_s" + sfx: round(run["content_precompute_s"], 1),
                        "content_precompute_turns" + sfx: run["content_precompute_turns"],
                        "content_precompute_audio_s" + sfx: round(run["content_precompute_audio_s"], 1),
                        "content_precompute_rtf" + sfx: round(run["content_precompute_rtf"], 3),
                        "content_precompute_s_per_turn" + sfx: round(
                            run["content_precompute_s"] / max(1, run["content_precompute_turns"]), 3),
                        "content_encoded_turns_in_training" + sfx: sum(r["feature_counts"].get("content_encoded", 0)
                                                                       for r in seed_runs),
                        "content_precomputed_turns_read" + sfx: run["feature_counts"].get("content_precomputed", 0)})
    if "whisper_base_content_missing" in emo_all:
        out["whisper_base_content_missing"] = emo_all["whisper_base_content_missing"]
    steps_seen = {r["train_steps"] for rs in emo_all["runs"].values() for r in rs}
    out["same_steps_every_content_expert"] = len(steps_seen) == 1
    out["total_wall_s"] = round(time.time() - t0, 1)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
