"""One curriculum stage as a plain loop: shards → flatten(stage) → pack → DeepSpeed steps.

``train_loop(args, ctx)`` runs the same way inside a Ray Train worker (``jobs/train.py``
supplies rank, world size, ``report`` and the checkpoint to resume from) and in a bare
process (tests: ``LoopContext()``, one rank, reports collected in a list).

Steps of the loop:
  1. distributed set-up (reuse the process group Ray Train made; gloo on CPU)
  2. vocabulary from the data's tokenizers; model from config or the previous stage's export
  3. DeepSpeed engine: ZeRO stage, clipping, accumulation, bf16 — torch AdamW + warmup/cosine
  4. resume: engine checkpoint + loop state (step, RNG) when a checkpoint is given. DeepSpeed's
     ``.pt`` files are read weights-only (:func:`omni.safe_checkpoint.load_engine_checkpoint`): a
     file that would run code on load is refused. The loop's own state is JSON.
  5. loop: micro-batches of packed rows; per-stream losses; metrics every ``log_every``. The
     shards are sha256-verified as they are read; a corrupt one is skipped with a warning and
     counted (``data/corrupt_shards_skipped``, every log step and in the final metrics); so is a
     record the stage's format refuses (``data/records_skipped_error``, see :class:`RecordErrors`),
     and a stream that yields no usable record fails with the reasons instead of looping.
  6. checkpoint every ``checkpoint_every`` steps and at the end (all ranks, via ``report``)
  7. held-out loss per stream; rank 0 exports safetensors + vocab + tokenizers + config

Hot path: a step does only what the step needs. Per-stream loss sums stay tensors until a log
step; MLflow writes run in a separate process (:mod:`omni.mlflow_writer`, waited for at each
checkpoint and at the end);
``jobs/train.py`` hands Ray only the checkpoint reports.
"""
from __future__ import annotations

import importlib
import json
import logging
import math
import os
import random
import signal
import socket
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist

from omni.config import Config
from omni.formats import STREAM_NAMES as _ALL_STREAMS
from omni.formats import STREAM_OTHER, Dialogue, flatten
from omni.mlflow_writer import MlflowLogger
from omni.model import build_model, flops_per_token, save_export
from omni.packing import StreamingPacker, collate, model_inputs, stream_loss_sums
from omni.safe_checkpoint import load_engine_checkpoint
from omni.shards import ShardStream
from omni.speech_tokenizer import load_speech_tokenizer
from omni.text_tokenizer import TextTokenizer
from omni.vocab import Vocab

STREAM_NAMES = {code: name for code, name in enumerate(_ALL_STREAMS) if code != STREAM_OTHER}
"""Streams whose loss is logged (``loss_<name>``); special tokens (``other``) count in ``loss`` only."""
CORRUPT_SHARDS = "data/corrupt_shards_skipped"
RECORD_ERRORS = "data/records_skipped_error"
MAX_RECORDS_WITHOUT_EXAMPLE = 1000
"""A record stream that gives this many records in a row and no example fails (see :func:`stage_examples`)."""
log = logging.getLogger("omni.train")
_MlflowLogger = MlflowLogger  # the old name: omni.omnichat.train imports it from here (until it imports omni.mlflow_writer)


@dataclass
class LoopContext:
    rank: int = 0
    world_size: int = 1
    report: Callable[[dict, str | None], None] | None = None
    """``report(metrics, checkpoint_dir_or_None)``: called by every rank at log/checkpoint steps."""
    resume_dir: str | None = None
    log: list = field(default_factory=list)


def deepspeed_config(cfg: Config, stage: str) -> dict:
    tr, _ = cfg.stage_train(stage)
    zero = {"stage": tr.zero_stage}
    if tr.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": tr.use_gpu}
    ds = {
        "train_micro_batch_size_per_gpu": tr.micro_batch_size,
        "gradient_accumulation_steps": tr.grad_accum,
        "gradient_clipping": tr.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": tr.precision == "bf16"},
        "fp16": {"enabled": tr.precision == "fp16"},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10 ** 9,
        "wall_clock_breakdown": False,
    }
    if tr.offload_optimizer and not tr.use_gpu:
        # the client torch AdamW already runs on the CPU; DeepSpeedCPUAdam would need its C++ op built
        ds["zero_force_ds_cpu_optimizer"] = False
    return ds


def lr_lambda(warmup: int, total: int, floor: float = 0.1) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        p = (step - warmup) / max(1, total - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))
    return f


def make_optimizer(model, tr) -> torch.optim.Optimizer:
    """torch AdamW on CPU (DeepSpeed's CPU path, ``zero_allow_untested_optimizer``); on GPU
    DeepSpeed's FusedAdam when its ops are built, else torch's fused AdamW."""
    params = [p for p in model.parameters() if p.requires_grad]
    kw = dict(lr=tr.lr, weight_decay=tr.weight_decay, betas=(0.9, 0.95))
    if tr.use_gpu and torch.cuda.is_available():
        try:
            from deepspeed.ops.adam import FusedAdam
            return FusedAdam(params, **kw)
        except Exception:  # ops not prebuilt: torch's fused kernel is next best
            return torch.optim.AdamW(params, fused=True, **kw)
    return torch.optim.AdamW(params, **kw)


def maybe_inject_fault(rank: int, step: int) -> None:
    """Fault injection for tests and drills: ``OMNI_FAULT_KILL=RANK:STEP:MARKER`` makes that
    rank SIGKILL itself once, ``OMNI_FAULT_KILL_DELAY_S`` (default 3) seconds after finishing
    STEP (the marker file records that it happened, so the restarted run goes on).

    The delay matters: Ray Train V2's controller registers a reported checkpoint when it next
    polls the workers (every ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``); a worker that dies within
    that window of a report resumes from the checkpoint before it. The drill models a worker
    dying mid-run, not within milliseconds of a checkpoint."""
    spec = os.environ.get("OMNI_FAULT_KILL")
    if not spec:
        return
    r, s, marker = spec.split(":", 2)
    if int(r) == rank and int(s) == step and not os.path.exists(marker):
        Path(marker).write_text(f"killed rank {rank} after step {step}\n")
        time.sleep(float(os.environ.get("OMNI_FAULT_KILL_DELAY_S", "3")))
        os.kill(os.getpid(), signal.SIGKILL)


def load_assets(cfg: Config):
    """Vocab and tokenizers of the prepared data set."""
    tok_dir = Path(cfg.data.output_dir) / "tokenizers"
    if not (tok_dir / "text").exists():
        raise FileNotFoundError(f"no tokenizers in {tok_dir}: run `python -m jobs.prepare_data --config CFG` first")
    speech = load_speech_tokenizer(tok_dir / "speech")
    text = TextTokenizer.load(tok_dir / "text")
    return Vocab(text_size=text.vocab_size, num_units=speech.num_units), text, speech, tok_dir / "speech"


class RecordErrors:
    """Records that could not be flattened (``ValueError`` from the format, e.g. no usable assistant
    turn for this stage): counted per reason, the first of each reason logged as a warning. The
    loop reports ``count`` as ``data/records_skipped_error`` (every log step and at the end), as
    it reports corrupt shards."""

    def __init__(self):
        self.count = 0
        self.reasons: Counter = Counter()

    def add(self, key: str, err: Exception) -> None:
        """Count one refused record; its reason is the error's first line with the key as ``<key>``."""
        reason = (str(err).splitlines() or [type(err).__name__])[0].replace(key, "<key>")[:200]
        self.count += 1
        if not self.reasons[reason]:
            log.warning("skipping record %s: %s", key, reason)
        self.reasons[reason] += 1

    def summary(self, n: int = 3) -> str:
        return "; ".join(f"{r} ({k}x)" for r, k in self.reasons.most_common(n)) or "none"


def stage_examples(cfg: Config, stage: str, vocab, speech, records: Iterator[dict],
                   errors: RecordErrors | None = None,
                   max_without_example: int = MAX_RECORDS_WITHOUT_EXAMPLE) -> Iterator:
    """Records → flattened examples of this stage. A record that cannot form one is skipped:
    a single utterance outside ``align`` silently (it only makes ASR/TTS pairs), a record the
    format refuses (``ValueError``) counted in ``errors``. When ``max_without_example`` records in
    a row give no example, the stream can never feed this stage (an endless stream would loop
    forever): ``ValueError`` naming the stage and the reasons."""
    st = cfg.stages.get(stage)
    errors = errors if errors is not None else RecordErrors()
    since_example, utterances = 0, 0
    for rec in records:
        if stage != "align" and rec["meta"].get("task") == "utterance":
            utterances += 1  # single utterances (manifest, LibriSpeech) only make ASR/TTS pairs
            exs = []
        else:
            try:
                d = Dialogue.from_record(rec, frame_rate_hz=speech.frame_rate_hz, silence_unit=speech.silence_unit)
                exs = flatten(stage, d, vocab, st)
            except ValueError as e:
                errors.add(rec.get("key", "?"), e)
                exs = []
        if exs:
            since_example = 0
            yield from exs
            continue
        since_example += 1
        if since_example >= max_without_example:
            raise ValueError(
                f"stage {stage}: the last {since_example} records gave no training example "
                f"({utterances} single utterances, which only the align stage uses; {errors.count} records "
                f"refused: {errors.summary()}). Check data.sources and the stage order, or re-prepare the data")


def packed_batches(examples: Iterator, seq_len: int, micro_batch: int, pad_id: int,
                   pool: int = 32) -> Iterator[dict]:
    """Best-fit pack the example stream (rows stay open across pools, see
    ``omni.packing.StreamingPacker``); yield collated micro-batches of ``micro_batch`` rows."""
    packer = StreamingPacker(seq_len, pad_id)
    pending: list = []
    rows: list = []
    for ex in examples:
        pending.append(ex)
        if len(pending) >= pool:
            rows += packer.add(pending)
            pending = []
        while len(rows) >= micro_batch:
            yield collate(rows[:micro_batch])
            rows = rows[micro_batch:]
    if pending:
        rows += packer.add(pending)
    rows += packer.flush()
    while rows:
        yield collate(rows[:micro_batch])
        rows = rows[micro_batch:]


def per_stream(sums: torch.Tensor, counts: torch.Tensor) -> dict[str, tuple[float, int]]:
    """``{stream name: (CE sum, tokens)}`` for the streams present (one host read)."""
    s, c = sums.tolist(), counts.tolist()
    return {name: (s[code], int(c[code])) for code, name in STREAM_NAMES.items() if c[code]}


def stream_losses(logits: torch.Tensor, labels: torch.Tensor, stream: torch.Tensor):
    """Mean CE over loss tokens, plus ``{stream: (CE sum, tokens)}`` for the streams present."""
    total, sums, counts = stream_loss_sums(logits, labels, stream)
    return total, per_stream(sums, counts)


def worker_setup(tr, ctx: LoopContext) -> None:
    """Per-rank seeds (torch, random, numpy), torch threads = ``tr.cpus_per_worker``, the process group;
    on CPU, no DeepSpeed op compilation (:func:`skip_deepspeed_cpu_ops`)."""
    torch.manual_seed(tr.seed + ctx.rank)
    random.seed(tr.seed + ctx.rank)
    np.random.seed(tr.seed + ctx.rank)
    torch.set_num_threads(max(1, int(tr.cpus_per_worker)))
    if not tr.use_gpu:
        skip_deepspeed_cpu_ops()
    _ensure_dist(ctx)


def skip_deepspeed_cpu_ops() -> None:
    """Keep ``deepspeed.initialize`` on CPU from JIT-compiling its shared-memory all-reduce op.

    DeepSpeed's torch comm backend builds that op whenever the accelerator is the CPU: it probes
    every op builder's compatibility (compiler subprocesses), then compiles C++ (~44 s the first
    time, its compiler lines on the console). The op serves only DeepSpeed *inference*'s tensor
    parallelism (``inference_all_reduce``); ZeRO training reduces through ``torch.distributed``
    (gloo), so nothing here uses it. Without it the backend takes its own documented fallback."""
    # import_module, not ``import deepspeed.comm.torch as m``: deepspeed.comm re-exports the torch
    # package under that name. (DeepSpeed costs seconds to import; training imports it next anyway.)
    ds_torch = importlib.import_module("deepspeed.comm.torch")
    if hasattr(ds_torch, "build_shm_op"):
        ds_torch.build_shm_op = lambda: None
    else:  # a DeepSpeed that reorganised its comm module: training still works, it may compile the op
        log.warning("deepspeed.comm.torch.build_shm_op not found: DeepSpeed may compile its shm op on CPU")


def _ensure_dist(ctx: LoopContext) -> None:
    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        if "MASTER_PORT" not in os.environ:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                os.environ["MASTER_PORT"] = str(s.getsockname()[1])
        dist.init_process_group("gloo", rank=ctx.rank, world_size=ctx.world_size)
    os.environ.setdefault("RANK", str(ctx.rank))
    os.environ.setdefault("WORLD_SIZE", str(ctx.world_size))
    os.environ.setdefault("LOCAL_RANK", "0")


def heldout_loss(engine, cfg: Config, stage: str, vocab, speech) -> dict:
    max_batches = cfg.train.eval_batches
    try:
        recs = ShardStream(cfg.data.output_dir, "heldout", seed=0, shuffle_buffer=1, loop=False, verify=True)
    except ValueError:
        return {}
    sums: dict[str, list] = {}
    tot = [0.0, 0]
    engine.eval()
    with torch.no_grad():
        for i, b in enumerate(packed_batches(stage_examples(cfg, stage, vocab, speech, iter(recs)),
                                             cfg.train.seq_len, cfg.train.micro_batch_size, vocab.special("pad"))):
            if i >= max_batches:
                break
            out = engine(**model_inputs(b))
            loss, per = stream_losses(out.logits, b["labels"], b["stream"])
            n = int((b["labels"] != -100).sum())
            tot[0] += loss.item() * n
            tot[1] += n
            for k, (s, c) in per.items():
                acc = sums.setdefault(k, [0.0, 0])
                acc[0] += s
                acc[1] += c
    engine.train()
    out = {f"heldout_loss_{k}": s / c for k, (s, c) in sums.items()}
    if tot[1]:
        out["heldout_loss"] = tot[0] / tot[1]
    out["data/heldout_corrupt_shards_skipped"] = len(recs.skipped)
    return out


def data_counters(records, errors: RecordErrors, ctx: LoopContext) -> dict:
    """Over all ranks: distinct shards the training readers skipped (unreadable, undecodable or
    failing sha256; each rank reads its own slots, and a shard may come round to another rank next
    epoch) and records refused by the format. A collective: every rank calls it at the same steps."""
    if ctx.world_size == 1:
        return {CORRUPT_SHARDS: len(records.skipped), RECORD_ERRORS: errors.count}
    parts: list = [None] * ctx.world_size
    dist.all_gather_object(parts, (sorted(records.skipped), errors.count))
    return {CORRUPT_SHARDS: len({p for skipped, _ in parts for p in skipped}),
            RECORD_ERRORS: sum(n for _, n in parts)}


def train_loop(args: dict, ctx: LoopContext | None = None) -> dict:
    """``args``: {"config": resolved config dict, "stage": name, "init_from": export dir or None,
    "export_dir": where to export, "mlflow": {"uri", "run_id"} or None}. Returns final metrics."""
    ctx = ctx or LoopContext()
    # rank 0's MLflow writer process starts first: its imports overlap the set-up below
    mlf = MlflowLogger(args.get("mlflow")) if ctx.rank == 0 else None
    try:
        return _train_stage(args, ctx, mlf)
    except BaseException:
        if mlf is not None:
            mlf.abort()
        raise


def _train_stage(args: dict, ctx: LoopContext, mlf) -> dict:
    import deepspeed  # here, not at the top: its import costs seconds, and only a training run needs it

    cfg = Config.model_validate(args["config"])
    stage = args["stage"]
    tr, st = cfg.stage_train(stage)

    # 1-2. seeds, threads, distributed; vocab, model
    worker_setup(tr, ctx)
    vocab, text_tok, speech, speech_dir = load_assets(cfg)
    mcfg = cfg.model.model_copy(update={"lora": st.lora if st.lora is not None else cfg.model.lora})
    if args.get("init_from"):
        mcfg = mcfg.model_copy(update={"backbone": "pretrained", "path": args["init_from"]})
    model = build_model(mcfg, vocab)
    fpt = flops_per_token(model, tr.seq_len)

    # 3. engine
    opt = make_optimizer(model, tr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(tr.warmup_steps, tr.max_steps))
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=opt, lr_scheduler=sched,
                                           config=deepspeed_config(cfg, stage))

    # 4. resume (weights-only: a checkpoint file carrying a pickle payload is refused)
    step = 0
    if ctx.resume_dir:
        load_engine_checkpoint(engine, ctx.resume_dir, tag="ckpt")
        state = json.loads((Path(ctx.resume_dir) / f"loop_state_rank{ctx.rank}.json").read_text())
        step = state["step"]
        version, internal, gauss = state["py_rng"]
        random.setstate((version, tuple(internal), gauss))
        torch.manual_seed(tr.seed + ctx.rank + step)

    # 5. data stream (a resumed run re-seeds by step: no batch is repeated exactly)
    #    (sha256-verified as read: a corrupt shard is skipped with a warning and counted)
    records = ShardStream(cfg.data.output_dir, "train", ctx.rank, ctx.world_size, seed=tr.seed + step,
                          shuffle_buffer=cfg.data.shuffle_buffer, verify=True)
    pad_id = vocab.special("pad")
    errors = RecordErrors()
    batches = packed_batches(stage_examples(cfg, stage, vocab, speech, iter(records), errors), tr.seq_len,
                             tr.micro_batch_size, pad_id)
    t_last, tok_since, pad_since, rows_since = time.time(), 0, 0, 0
    agg_sum = agg_cnt = None  # per-stream CE sums / token counts since the last log step (on the device)
    metrics: dict = {}
    while step < tr.max_steps:
        for _ in range(tr.grad_accum):
            b = next(batches)
            out = engine(**model_inputs(b))
            loss, sums, counts = stream_loss_sums(out.logits, b["labels"], b["stream"])
            engine.backward(loss)
            engine.step()
            real = int((b["input_ids"] != pad_id).sum())
            tok_since += real
            pad_since += b["input_ids"].numel() - real
            rows_since += b["input_ids"].numel()
            if agg_sum is None:
                agg_sum, agg_cnt = sums.double(), counts
            else:
                agg_sum, agg_cnt = agg_sum + sums, agg_cnt + counts
        step += 1
        ckpt_now = step == tr.max_steps or (tr.checkpoint_every and step % tr.checkpoint_every == 0)
        if step % tr.log_every == 0 or ckpt_now:
            dt = max(time.time() - t_last, 1e-9)
            metrics = {"step": step, "loss": loss.item(), "lr": sched.get_last_lr()[0],
                       "grad_norm": float(engine.get_global_grad_norm() or 0.0),
                       "tokens_per_s": tok_since * ctx.world_size / dt,
                       "padding_fraction": pad_since / max(rows_since, 1),
                       "achieved_tflops": fpt * tok_since * ctx.world_size / dt / 1e12}
            peak = float(os.environ.get("OMNI_PEAK_TFLOPS", "0") or 0)
            if peak:
                metrics["mfu"] = metrics["achieved_tflops"] / (peak * ctx.world_size)
            metrics.update({f"loss_{k}": s / max(c, 1) for k, (s, c) in per_stream(agg_sum, agg_cnt).items()})
            metrics.update(data_counters(records, errors, ctx))
            agg_sum = agg_cnt = None
            t_last, tok_since, pad_since, rows_since = time.time(), 0, 0, 0
        if step == tr.max_steps or (tr.eval_every and step % tr.eval_every == 0):
            metrics.update(heldout_loss(engine, cfg, stage, vocab, speech))
        if ckpt_now:
            # 6. checkpoint: every rank writes its part, report() hands it to Ray
            with tempfile.TemporaryDirectory(prefix=f"ckpt-{stage}-") as d:
                engine.save_checkpoint(d, tag="ckpt")
                st_rng = random.getstate()
                (Path(d) / f"loop_state_rank{ctx.rank}.json").write_text(json.dumps(
                    {"step": step, "stage": stage, "py_rng": [st_rng[0], list(st_rng[1]), st_rng[2]],
                     "records_seen": records.position["records"]}))
                _report(ctx, metrics, d, mlf)
        elif step % tr.log_every == 0:
            _report(ctx, metrics, None, mlf)
        maybe_inject_fault(ctx.rank, step)
    if mlf is not None:
        mlf.close()

    # 7. export (ZeRO-3 gathers the shards onto every rank first)
    export_dir = args.get("export_dir")
    if export_dir:
        _export(engine, cfg, vocab, text_tok, speech_dir, export_dir, ctx, stage, metrics, tr.zero_stage)
    if ctx.world_size > 1:
        torch.distributed.barrier()
    return metrics


def _report(ctx: LoopContext, metrics: dict, ckpt_dir: str | None, mlf) -> None:
    """Every log step: the context's log, MLflow (rank 0, handed to the writer process) and
    ``ctx.report``. A checkpoint report first waits until MLflow has every metric sent so far."""
    ctx.log.append(dict(metrics))
    if mlf is not None:
        mlf.log(metrics)
        if ckpt_dir is not None:
            mlf.flush()
    if ctx.report is not None:
        ctx.report(metrics, ckpt_dir)


def _export(engine, cfg, vocab, text_tok, speech_dir, export_dir, ctx, stage, metrics, zero_stage) -> None:
    module = engine.module
    if zero_stage == 3:
        import deepspeed
        with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
            if ctx.rank == 0:
                save_export(export_dir, module, vocab, text_tok, speech_dir, cfg,
                            {"stage": stage, "final_metrics": metrics})
    elif ctx.rank == 0:
        save_export(export_dir, module, vocab, text_tok, speech_dir, cfg, {"stage": stage, "final_metrics": metrics})
