"""Training and inference speed of SmolLM2-135M (real backbone) vs the tiny Qwen2 (embedded default),
measured in the same run on the same random batches.

    python benchmarks/backbones.py [--seq-len 128] [--batch 1] [--steps 1] [--threads 2] [--full]

Per backbone: train tokens/s (forward + backward + AdamW step; SmolLM2 with LoRA as
configs/smollm2_135m.yaml trains it; ``--full``: also full fine-tune), forward-only tokens/s, achieved
GFLOP/s (omni.model.flops_per_token), parameters and build time. One warm-up step is not
timed; small models repeat steps for at least ``--min-time-s``. JSON object on the last line with the SmolLM2 / tiny ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from omni.config import ModelConfig, load_config  # noqa: E402
from omni.model import build_model, flops_per_token  # noqa: E402
from omni.vocab import Vocab  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(name: str, cfg: ModelConfig, vocab: Vocab, lora: bool, a) -> dict:
    t0 = time.perf_counter()
    model = build_model(cfg, vocab, lora=lora)
    build_s = time.perf_counter() - t0
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, vocab.size, (a.batch, a.seq_len), generator=g) for _ in range(4)]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    times: list[float] = []
    i = 0
    # step 0 is the warm-up; then at least --steps steps, more (up to 50) until --min-time-s has passed
    while i <= a.steps or (sum(times) < a.min_time_s and i <= 50):
        ids = batches[i % len(batches)]
        t = time.perf_counter()
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
        if i:
            times.append(time.perf_counter() - t)
        i += 1
    model.eval()
    n_fwd = 0
    with torch.no_grad():
        t = time.perf_counter()
        while n_fwd < len(times) or (time.perf_counter() - t < a.min_time_s and n_fwd < 50):
            model(input_ids=batches[n_fwd % len(batches)])
            n_fwd += 1
        fwd_s = time.perf_counter() - t
    train_tps = a.batch * a.seq_len * len(times) / sum(times)
    out = {"backbone": name, "lora": lora, "params": model.omni_info["params"], "timed_train_steps": len(times),
           "trainable_params": model.omni_info["trainable_params"], "build_s": round(build_s, 2),
           "train_tokens_per_s": round(train_tps, 1), "forward_tokens_per_s": round(a.batch * a.seq_len * n_fwd / fwd_s, 1),
           "train_gflops_per_s": round(train_tps * flops_per_token(model, a.seq_len) / 1e9, 2)}
    print(json.dumps(out))
    del model, opt
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-time-s", type=float, default=3.0, help="time each measurement at least this long")
    ap.add_argument("--full", action="store_true", help="also measure SmolLM2 full fine-tuning (slow on CPU)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t_start = time.perf_counter()
    tiny_cfg = load_config(os.path.join(ROOT, "configs", "tiny.yaml")).model
    smol_cfg = load_config(os.path.join(ROOT, "configs", "smollm2_135m.yaml")).model
    tiny = measure("tiny_qwen2", tiny_cfg, Vocab(384, 128), False, a)
    smol_vocab = Vocab(49152, 128)
    lora = measure("smollm2-135m", smol_cfg, smol_vocab, True, a)
    full = None if not a.full else measure("smollm2-135m", smol_cfg, smol_vocab, False, a)
    result = {"benchmark": "backbones", "seq_len": a.seq_len, "batch": a.batch, "min_timed_steps": a.steps,
              "threads": a.threads, "tiny_train_tokens_per_s": tiny["train_tokens_per_s"],
              "smollm2_lora_train_tokens_per_s": lora["train_tokens_per_s"],
              "smollm2_full_train_tokens_per_s": full and full["train_tokens_per_s"],
              "tiny_forward_tokens_per_s": tiny["forward_tokens_per_s"],
              "smollm2_forward_tokens_per_s": lora["forward_tokens_per_s"],
              "tiny_to_smollm2_lora_train_speed_ratio": round(tiny["train_tokens_per_s"] / lora["train_tokens_per_s"], 1),
              "tiny_to_smollm2_forward_speed_ratio": round(tiny["forward_tokens_per_s"] / lora["forward_tokens_per_s"], 1),
              "lora_to_full_train_speed_ratio": full and round(lora["train_tokens_per_s"] / full["train_tokens_per_s"], 2),
              "smollm2_params": lora["params"], "smollm2_lora_trainable_params": lora["trainable_params"],
              "tiny_params": tiny["params"], "smollm2_build_s": lora["build_s"],
              "wall_s": round(time.perf_counter() - t_start, 1)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
