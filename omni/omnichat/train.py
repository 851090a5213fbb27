"""Stage ``omnichat`` as a plain loop: shards (α-mixed) -> turn examples -> DeepSpeed steps.

``train_loop_omnichat(args, ctx)`` has the shape of :func:`omni.train_loop.train_loop`:
``args = {"config", "stage": "omnichat", "init_from", "export_dir", "mlflow"}``, ``ctx`` an
:class:`omni.train_loop.LoopContext` (rank, world size, ``report``, ``resume_dir``). It runs
inside a Ray Train worker (``jobs.train --stage omnichat``) or in a bare process.

Settings: ``omnichat.max_steps``, ``omnichat.lr``, ``omnichat.micro_batch_size`` (see
:func:`omnichat_train_settings`); ZeRO stage, clipping, accumulation, precision, warm-up from
``train``. Sources are sampled with :func:`omni.omnichat.data.alpha_weights` (α over synthetic
vs real). Logged every ``train.log_every`` steps: loss, lr, grad norm, examples/s, the
synthetic fraction of the examples seen, and each expert's Mix-Former weight. At the end:
held-out generation metrics (rank 0), checkpoint through ``report``, export.
"""
from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from omni.config import STAGES, Config, ConfigError, TrainConfig
from omni.omnichat.data import alpha_weights, example_stream
from omni.omnichat.shards import ShardStream, load_manifest, mixed_records

STAGE = "omnichat"


def omnichat_train_settings(cfg: Config) -> TrainConfig:
    """``train`` with the OmniChat stage's step count, learning rate and micro-batch size."""
    oc = cfg.omnichat
    return cfg.train.model_copy(update={"max_steps": oc.max_steps, "lr": oc.lr, "micro_batch_size": oc.micro_batch_size})


def source_weights(cfg: Config, data_dir: str | None = None) -> dict[str, float]:
    """Per-source sampling weights of the training split after α (``omnichat.alpha``)."""
    m = load_manifest(data_dir or cfg.data.output_dir)
    names = sorted({e["source"] for e in m["shards"] if e["split"] == "train"})
    base = {n: info.get("weight", 1.0) for n, info in m.get("sources", {}).items()}
    return alpha_weights(names, cfg.omnichat.alpha, cfg.omnichat.synthetic_sources, base)


def batches(examples: Iterator, micro_batch: int) -> Iterator[list]:
    buf = []
    for ex in examples:
        buf.append(ex)
        if len(buf) == micro_batch:
            yield buf
            buf = []
    if buf:
        yield buf


def heldout_examples(cfg: Config, vocab, limit: int, transcribe=None) -> list:
    try:
        recs = ShardStream(cfg.data.output_dir, "heldout", seed=0, shuffle_buffer=1, loop=False, audio=True)
    except ValueError:
        return []
    out = []
    for ex in example_stream(iter(recs), vocab, cfg.omnichat.model_copy(update={"data_fraction": 1.0}), transcribe):
        out.append(ex)
        if len(out) >= limit:
            break
    return out


def make_transcriber(cfg: Config, speech):
    """ASR baseline: transcribe a user turn with the aligned model at ``omnichat.asr_model``
    (``<asr> units <text>`` → greedy text), or None (reference transcripts)."""
    oc = cfg.omnichat
    if oc.input != "asr_text" or not oc.asr_model:
        return None
    from omni.model import load_export
    exp = load_export(oc.asr_model)
    v = exp.vocab
    from omni.train_loop import load_assets
    load_assets(cfg)[0].check_compatible(v)  # the aligned model must share this data's tokenizers
    allowed = torch.zeros(v.size, dtype=torch.bool)
    allowed[: v.text_size] = True
    allowed[v.special("eot")] = True

    def transcribe(wave: np.ndarray, turn: dict) -> list[int]:
        units = speech.encode(wave)
        from omni.model import greedy_decode
        prompt = [v.special("asr"), *v.units_to_ids(np.asarray(units)).tolist(), v.special("text")]
        return greedy_decode(exp.model, prompt, allowed, v.special("eot"), oc.max_new_tokens)
    return transcribe


def train_loop_omnichat(args: dict, ctx=None) -> dict:
    """See module docstring. Returns the final metrics (rank 0 adds held-out metrics)."""
    import deepspeed

    from omni.omnichat.evaluate import evaluate_examples
    from omni.omnichat.model import build_omnichat, save_omnichat
    from omni.train_loop import (
        LoopContext,
        _MlflowLogger,
        _report,
        deepspeed_config,
        load_assets,
        load_engine_checkpoint,
        lr_lambda,
        worker_setup,
    )

    ctx = ctx or LoopContext()
    cfg = Config.model_validate(args["config"])
    if args.get("stage", STAGE) != STAGE:
        raise ConfigError(f"train_loop_omnichat runs stage 'omnichat', got {args.get('stage')!r}")
    tr, oc = omnichat_train_settings(cfg), cfg.omnichat
    if tr.zero_stage == 3:
        raise ConfigError("stage omnichat supports train.zero_stage 0-2 (the Mix-Former export needs full weights)")
    worker_setup(tr, ctx)
    vocab, text_tok, speech, speech_dir = load_assets(cfg)
    model = build_omnichat(cfg, vocab, args.get("init_from"))

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=tr.lr, weight_decay=tr.weight_decay, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(tr.warmup_steps, tr.max_steps))
    ds = deepspeed_config(cfg, STAGES[0])  # reads only train.* (zero, clip, accum, precision)
    ds["train_micro_batch_size_per_gpu"] = tr.micro_batch_size
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=opt, lr_scheduler=sched, config=ds)

    step = 0
    if ctx.resume_dir:
        load_engine_checkpoint(engine, ctx.resume_dir, tag="ckpt")  # weights_only: no pickle runs
        step = json.loads((Path(ctx.resume_dir) / f"loop_state_rank{ctx.rank}.json").read_text())["step"]

    weights = source_weights(cfg)
    if engine.module.speaker_norm is not None:  # speaker statistics of the training audio, before step 1
        seen = ShardStream(cfg.data.output_dir, "train", seed=0, shuffle_buffer=1, loop=False, audio=True)
        n = engine.module.observe(example_stream(iter(seen), vocab, oc.model_copy(update={"data_fraction": 1.0})))
        if n == 0:
            raise ConfigError("omnichat.para_norm=speaker but the training split has no audio turns to observe")
    records = mixed_records(cfg.data.output_dir, "train", weights, rank=ctx.rank, world_size=ctx.world_size,
                            seed=tr.seed + step, shuffle_buffer=cfg.data.shuffle_buffer, audio=True)
    transcribe = make_transcriber(cfg, speech)
    stream = batches(example_stream(iter(records), vocab, oc, transcribe), tr.micro_batch_size)
    mlf = _MlflowLogger(args.get("mlflow")) if ctx.rank == 0 else None
    t_last, n_since, syn_since, metrics = time.time(), 0, 0, {}
    while step < tr.max_steps:
        for _ in range(tr.grad_accum):
            b = next(stream)
            loss = engine(b)
            engine.backward(loss)
            engine.step()
            n_since += len(b)
            syn_since += sum(e.source in oc.synthetic_sources for e in b)
        step += 1
        last = step == tr.max_steps
        if step % tr.log_every == 0 or last:
            dt = max(time.time() - t_last, 1e-9)
            metrics = {"step": step, "loss": loss.item(), "lr": sched.get_last_lr()[0],
                       "grad_norm": float(engine.get_global_grad_norm() or 0.0),
                       "examples_per_s": n_since * ctx.world_size / dt, "synthetic_fraction": syn_since / n_since}
            if engine.module.mixformer is not None:
                metrics.update({f"expert_weight_{n}": w for n, w in engine.module.mixformer.expert_weights().items()})
            t_last, n_since, syn_since = time.time(), 0, 0
        if last:
            if ctx.rank == 0:
                held = heldout_examples(cfg, vocab, oc.eval_max_samples, transcribe)
                if held:
                    metrics.update(evaluate_examples(engine.module, text_tok, held, oc.max_new_tokens))
            with tempfile.TemporaryDirectory(prefix="ckpt-omnichat-") as d:
                engine.save_checkpoint(d, tag="ckpt")
                (Path(d) / f"loop_state_rank{ctx.rank}.json").write_text(json.dumps({"step": step, "stage": STAGE}))
                _report(ctx, metrics, d, mlf)
        elif step % tr.log_every == 0:
            _report(ctx, metrics, None, mlf)
    if mlf is not None:
        mlf.close()

    if args.get("export_dir") and ctx.rank == 0:
        save_omnichat(args["export_dir"], engine.module, text_tok, speech_dir, cfg,
                      {"stage": STAGE, "final_metrics": metrics, "source_weights": weights})
    if ctx.world_size > 1:
        torch.distributed.barrier()
    return metrics


def fit_plain(model, examples: Iterator, max_steps: int, lr: float, micro_batch: int = 2,
              time_budget_s: float | None = None, cpu_budget_s: float | None = None) -> dict:
    """Plain AdamW steps without DeepSpeed (benchmarks, tests): stops at ``max_steps``, when
    ``time_budget_s`` of wall time or ``cpu_budget_s`` of this process's CPU time is spent.
    Returns {"steps", "loss", "wall_s", "cpu_s"}."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95))
    model.train()
    t0, c0, step, loss = time.time(), time.process_time(), 0, float("nan")
    for b in batches(examples, micro_batch):
        out = model(b)
        opt.zero_grad()
        out.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step, loss = step + 1, out.item()
        if step >= max_steps or (time_budget_s is not None and time.time() - t0 >= time_budget_s) \
                or (cpu_budget_s is not None and time.process_time() - c0 >= cpu_budget_s):
            break
    return {"steps": step, "loss": loss, "wall_s": time.time() - t0, "cpu_s": time.process_time() - c0}
