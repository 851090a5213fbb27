"""Train one curriculum stage: Ray Train ``TorchTrainer`` + DeepSpeed ZeRO, tracked in MLflow.

    python -m jobs.train --config configs/tiny.yaml --stage align [train.lr=3e-4 ...]
    python -m jobs.train --config configs/tiny.yaml --stage half_duplex --init-from outputs/tiny/checkpoints/align/export
    python -m jobs.train --config configs/omnichat_tiny.yaml --stage omnichat        # OmniChat (Mix-Former)
    ray job submit --working-dir . -- python -m jobs.train --config configs/tiny.yaml --stage align

The loop itself is ``omni.train_loop.train_loop`` (plain Python); this file wires it into
Ray Train: scaling, checkpoints through ``ray.train.report`` (only checkpoint reports go to
Ray; metrics of every log step go to the stage's MLflow run), automatic restart after a worker
dies (``train.max_failures``), and resume from the latest checkpoint of a run with the same
name (read weights-only, see ``omni.train_loop.load_engine_checkpoint``). Weights are exported
to ``<train.output_dir>/<stage>/export``. Shards failing their sha256 are skipped and counted:
``data/corrupt_shards_skipped`` on the stage run and in the returned metrics.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from omni.config import STAGES, Config, ConfigError, flatten_params, save_resolved
from jobs._common import JobError, init_ray, load, mlflow_uri, parse_args, print_summary, run_main, setup_mlflow, start_logs


OMNICHAT = "omnichat"


def stage_settings(cfg: Config, stage: str):
    """The ``train`` section as this stage runs it (per-stage steps, lr, ...)."""
    if stage == OMNICHAT:
        from omni.omnichat.train import omnichat_train_settings
        return omnichat_train_settings(cfg)
    return cfg.stage_train(stage)[0]


def export_dir(cfg: Config, stage: str) -> Path:
    return Path(cfg.train.output_dir).resolve() / stage / "export"


def preflight(cfg: Config, stage: str, init_from: str | None) -> None:
    """Refuse, before any worker starts, what cannot work."""
    from omni.train_loop import load_assets
    from omni.vocab import Vocab

    if stage not in STAGES + (OMNICHAT,):
        raise ConfigError(f"unknown stage {stage!r}: choose one of {', '.join(STAGES + (OMNICHAT,))}")
    manifest = Path(cfg.data.output_dir) / "manifest.json"
    if not manifest.exists():
        raise JobError(f"no prepared data at {cfg.data.output_dir}: run `python -m jobs.prepare_data --config CFG` first")
    m = json.loads(manifest.read_text())
    if not any(s["split"] == "train" and s["samples"] > 0 for s in m["shards"]):
        raise JobError(f"stage {stage}: no training samples in {manifest} (all rows rejected? see rejects.jsonl)")
    vocab, *_ = load_assets(cfg)
    if init_from:
        if not Path(init_from).exists():
            raise JobError(f"--init-from {init_from} does not exist")
        vocab_file = Path(init_from) / "vocab.json"
        if not vocab_file.exists():
            raise JobError(f"--init-from {init_from} is not an omni export (no vocab.json)")
        try:
            Vocab.load(vocab_file).check_compatible(vocab)
        except ValueError as e:
            raise JobError(f"--init-from {init_from}: {e}") from None
    tr = stage_settings(cfg, stage)
    if tr.use_gpu:
        import torch
        if not torch.cuda.is_available():
            raise JobError("train.use_gpu=true but this machine has no CUDA device: set train.use_gpu=false")


def _worker(args: dict) -> None:
    """Runs on every Ray Train worker."""
    import ray.train
    from ray.train import Checkpoint

    from omni.train_loop import LoopContext, train_loop

    c = ray.train.get_context()

    def report(metrics: dict, ckpt_dir: str | None) -> None:
        # Ray gets the checkpoints (with their metrics: the last one is ``result.metrics``); the
        # per-step metrics go to MLflow from rank 0. A metrics-only ``ray.train.report`` is a round
        # trip to Ray Train's synchronisation actor (a barrier over the workers) plus a put on a
        # one-slot queue that the controller drains only when it polls: 3-10 ms a call measured
        # on 2 cores, i.e. 10-30% of a tiny model's step at ``log_every: 1``. Every rank skips
        # the same calls, so the barrier stays matched.
        if ckpt_dir is not None:
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(ckpt_dir))

    loop = train_loop
    if args["stage"] == OMNICHAT:  # OmniChat: experts -> Mix-Former -> LLM, its own plain loop
        from omni.omnichat.train import train_loop_omnichat as loop
    ckpt = ray.train.get_checkpoint()
    if ckpt is None:
        loop(args, LoopContext(c.get_world_rank(), c.get_world_size(), report))
    else:
        with ckpt.as_directory() as d:
            loop(args, LoopContext(c.get_world_rank(), c.get_world_size(), report, resume_dir=d))


def run_stage(cfg: Config, stage: str, init_from: str | None = None, parent_run_id: str | None = None) -> dict:
    """Train ``stage`` on the connected Ray cluster; returns {"export_dir", "metrics", "run_id"}."""
    import mlflow
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    preflight(cfg, stage, init_from)
    tr = stage_settings(cfg, stage)
    out = export_dir(cfg, stage)
    save_resolved(cfg, out.parent)
    exp_id = setup_mlflow(cfg)
    client = mlflow.MlflowClient()
    tags = {"stage": stage, "config_digest": cfg.digest()}
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    run = client.create_run(exp_id, run_name=f"{cfg.name}-{stage}", tags=tags)
    run_id = run.info.run_id
    params = flatten_params(cfg)
    params.update({"stage": stage, "init_from": str(init_from)})
    from mlflow.entities import Param
    items = [Param(k, v[:6000]) for k, v in params.items()]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i:i + 100])
    client.log_artifact(run_id, str(out.parent / "config.resolved.yaml"))
    client.log_artifact(run_id, str(Path(cfg.data.output_dir) / "manifest.json"))

    args = {"config": cfg.model_dump(mode="json"), "stage": stage, "init_from": init_from,
            "export_dir": str(out), "mlflow": {"uri": mlflow_uri(cfg), "run_id": run_id}}
    trainer = TorchTrainer(
        _worker, train_loop_config=args,
        scaling_config=ScalingConfig(num_workers=tr.num_workers, use_gpu=tr.use_gpu,
                                     resources_per_worker={"CPU": tr.cpus_per_worker},
                                     placement_strategy=tr.placement_strategy),
        run_config=RunConfig(name=f"{cfg.name}-{stage}", storage_path=str(Path(tr.storage_path).resolve()),
                             failure_config=FailureConfig(max_failures=tr.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=tr.keep_checkpoints)))
    t0 = time.time()
    try:
        result = trainer.fit()
    except Exception as e:
        client.set_terminated(run_id, "FAILED")
        raise JobError(f"stage {stage} failed: {type(e).__name__}: {str(e).splitlines()[0][:500]}") from e
    metrics = dict(result.metrics or {})
    client.log_metric(run_id, "stage_wall_s", time.time() - t0)
    _log_loss_plot(client, run_id, stage, out.parent)
    client.set_terminated(run_id, "FINISHED")
    if not (out / "export.json").exists():
        raise JobError(f"stage {stage} finished but wrote no export at {out}")
    return {"export_dir": str(out), "metrics": metrics, "run_id": run_id}


def _log_loss_plot(client, run_id: str, stage: str, folder: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in client.get_run(run_id).data.metrics if k.startswith("loss")]
    if not keys:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for k in sorted(keys):
        hist = client.get_metric_history(run_id, k)
        ax.plot([h.step for h in hist], [h.value for h in hist], label=k, marker=".")
    ax.set(xlabel="step", ylabel="cross-entropy (nats)", title=f"{stage}: training loss per stream")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = folder / f"loss_{stage}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    client.log_artifact(run_id, str(path))


USAGE = __doc__ + "\nOptions: --config PATH --stage NAME [--init-from EXPORT_DIR] [key=value ...]"


def main(argv: list[str] | None = None) -> int:
    cfg_path, overrides, flags = parse_args(argv if argv is not None else sys.argv[1:], USAGE,
                                            {"stage": None, "init_from": None})
    if not flags["stage"]:
        raise JobError(f"missing --stage (one of {', '.join(STAGES + (OMNICHAT,))})")
    cfg = load(cfg_path, overrides)
    if flags["stage"] != OMNICHAT:
        cfg.stages.get(flags["stage"])
    start_logs(cfg, "train")
    init_ray()
    init_from = str(Path(flags["init_from"]).resolve()) if flags["init_from"] else None  # workers run elsewhere
    res = run_stage(cfg, flags["stage"], init_from)
    print_summary({"stage": flags["stage"], "export_dir": res["export_dir"], "run_id": res["run_id"],
                   "loss": res["metrics"].get("loss")})
    return 0


if __name__ == "__main__":
    run_main(main)
