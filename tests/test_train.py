"""The stage loop without Ray: loss falls on a small fixed set; checkpoints round-trip (read
weights-only: a pickle payload is refused); corrupt shards are skipped and counted in MLflow."""
import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from omni.config import load_config, resolve_paths
from omni.mlflow_writer import MlflowLogger
from omni.safe_checkpoint import UnsafeCheckpointError, safe_torch_load
from omni.train_loop import (
    CORRUPT_SHARDS,
    LoopContext,
    deepspeed_config,
    lr_lambda,
    stream_losses,
    train_loop,
)

ROOT = Path(__file__).resolve().parents[1]


def _cfg(tiny_data, tmp_path, *overrides):
    return resolve_paths(load_config(ROOT / "configs" / "tiny.yaml", [
        f"data.output_dir={tiny_data}", f"train.output_dir={tmp_path}/ckpt", "train.num_workers=1",
        "train.seq_len=256", "train.micro_batch_size=2", *overrides]))


def _args(cfg, stage, export_dir=None):
    return {"config": cfg.model_dump(mode="json"), "stage": stage, "init_from": None, "export_dir": export_dir}


def test_lr_schedule_warms_up_then_decays_to_floor():
    f = lr_lambda(warmup=4, total=20, floor=0.1)
    assert [round(f(i), 3) for i in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(12) < f(8) < 1.0 and f(20) == pytest.approx(0.1) and f(100) == pytest.approx(0.1)


def test_deepspeed_config_follows_train_section(tiny_data, tmp_path):
    ds = deepspeed_config(_cfg(tiny_data, tmp_path, "train.zero_stage=3", "train.precision=bf16",
                               "train.grad_accum=4", "train.offload_optimizer=true"), "align")
    assert ds["zero_optimization"]["stage"] == 3 and ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert ds["bf16"]["enabled"] and not ds["fp16"]["enabled"] and ds["gradient_accumulation_steps"] == 4
    assert ds["zero_allow_untested_optimizer"] is True


def test_loss_falls_on_a_small_fixed_set(tiny_data, tmp_path):
    """12 dialogues seen over and over: the align stage must fit them (loss well below start)."""
    cfg = _cfg(tiny_data, tmp_path, "stages.align.max_steps=45", "train.lr=5e-3", "train.warmup_steps=2")
    ctx = LoopContext()
    train_loop(_args(cfg, "align"), ctx)
    losses = [m["loss"] for m in ctx.log]
    assert len(losses) == 45 and [m["step"] for m in ctx.log] == list(range(1, 46))
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert first > 5.0, first                      # ~ln(vocab) at random init
    assert last < 0.8 * first, (first, last)       # measured 2026-11-25: 6.00 -> 4.25 (0.71x) after 45 steps
    pad = [m["padding_fraction"] for m in ctx.log]
    assert sum(pad) / len(pad) < 0.05, pad            # packer over the run (one batch may reach ~0.06)
    assert "heldout_loss" in ctx.log[-1] and "loss_assistant_speech" in ctx.log[-1]


def test_checkpoint_round_trip_and_resume(tiny_data, tmp_path):
    cfg = _cfg(tiny_data, tmp_path, "stages.half_duplex.max_steps=4", "train.checkpoint_every=2")
    saved = {}

    def keep(metrics, ckpt_dir):
        if ckpt_dir:
            saved[metrics["step"]] = shutil.copytree(ckpt_dir, tmp_path / f"ckpt{metrics['step']}")

    full = LoopContext(report=keep)
    train_loop(_args(cfg, "half_duplex", str(tmp_path / "export_a")), full)
    assert sorted(saved) == [2, 4]
    assert (saved[2] / "loop_state_rank0.json").exists()

    # resume from step 2: steps continue at 3, end at 4
    resumed = LoopContext(resume_dir=str(saved[2]))
    train_loop(_args(cfg, "half_duplex"), resumed)
    assert [m["step"] for m in resumed.log] == [3, 4]

    # resume from the final checkpoint: no step left, the exported weights are exactly the saved ones
    done = LoopContext(resume_dir=str(saved[4]))
    train_loop(_args(cfg, "half_duplex", str(tmp_path / "export_b")), done)
    assert done.log == []
    a, b = load_file(tmp_path / "export_a" / "model.safetensors"), load_file(tmp_path / "export_b" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class _Payload:
    """Unpickling this runs ``os.mkdir(marker)``: the stand-in for code hidden in a checkpoint."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_resume_refuses_a_pickle_payload_checkpoint(tiny_data, tmp_path):
    """DeepSpeed reads its .pt files with torch.load(weights_only=False); resume must not: a checkpoint
    whose model-states file carries a pickle payload is refused by name and the payload never runs."""
    marker = tmp_path / "payload_ran"
    evil = tmp_path / "evil"
    (evil / "ckpt").mkdir(parents=True)
    torch.save({"module": {"w": torch.zeros(2)}, "extra": _Payload(marker)}, evil / "ckpt" / "mp_rank_00_model_states.pt")
    (evil / "loop_state_rank0.json").write_text(json.dumps({"step": 1, "stage": "align", "py_rng": [3, [0] * 625, None]}))

    # the payload is real: an unrestricted load runs it
    torch.load(evil / "ckpt" / "mp_rank_00_model_states.pt", weights_only=False)
    assert marker.exists()
    marker.rmdir()

    cfg = _cfg(tiny_data, tmp_path, "stages.align.max_steps=2")
    with pytest.raises(UnsafeCheckpointError, match=r"mp_rank_00_model_states\.pt: it is not weights-only.*posix\.mkdir"):
        train_loop(_args(cfg, "align"), LoopContext(resume_dir=str(evil)))
    assert not marker.exists(), "the pickle payload ran during resume"

    # the optimizer-states file goes through the same loader
    optim = evil / "ckpt" / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    torch.save({"optimizer_state_dict": {"state": {}, "x": _Payload(marker)}}, optim)
    with pytest.raises(UnsafeCheckpointError, match="not weights-only"):
        safe_torch_load(optim, map_location="cpu")
    assert not marker.exists()


def test_stream_losses_sums_and_counts_per_stream():
    labels = torch.tensor([[1, -100, 2, 0, 3]])
    stream = torch.tensor([[3, 0, 4, 4, 9]])   # code 9: not a stream, counted in no stream
    logits = torch.zeros(1, 5, 5)
    total, per = stream_losses(logits, labels, stream)
    ln5 = float(torch.log(torch.tensor(5.0)))
    assert float(total) == pytest.approx(ln5) and set(per) == {"assistant_text", "assistant_speech"}
    assert per["assistant_text"] == (pytest.approx(ln5), 1) and per["assistant_speech"] == (pytest.approx(2 * ln5), 2)


def _flip_payload_byte(shard: Path) -> None:
    """Change one unit inside an .npy member: the tar and the array still parse, only sha256 sees it."""
    data = bytearray(shard.read_bytes())
    i = data.index(b"\x93NUMPY") + 200
    data[i] ^= 0xFF
    shard.write_bytes(bytes(data))


def test_corrupt_shards_are_skipped_and_counted_in_mlflow(tiny_data, tmp_path, caplog):
    from mlflow import MlflowClient

    data = shutil.copytree(tiny_data, tmp_path / "data")
    train = sorted((data / "shards" / "train").glob("*.tar"))
    assert len(train) >= 3
    _flip_payload_byte(train[0])                              # flipped bytes: only the checksum catches it
    train[-1].write_bytes(train[-1].read_bytes()[:3000])      # truncated mid-member
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("corrupt", artifact_location=(tmp_path / "mlruns").as_uri())
    run_id = client.create_run(exp).info.run_id
    cfg = _cfg(data, tmp_path, "stages.align.max_steps=2", "data.shuffle_buffer=64")  # every shard read up front
    args = {**_args(cfg, "align"), "mlflow": {"uri": uri, "run_id": run_id}}

    ctx = LoopContext()
    with caplog.at_level(logging.WARNING, logger="omni.reader"):
        final = train_loop(args, ctx)
    warned = " ".join(r.getMessage() for r in caplog.records if r.name == "omni.reader")
    assert train[0].name in warned and "sha256 mismatch" in warned and train[-1].name in warned
    assert final[CORRUPT_SHARDS] == 2 and [m[CORRUPT_SHARDS] for m in ctx.log] == [2, 2]
    assert final["data/heldout_corrupt_shards_skipped"] == 0 and final["loss"] > 0
    hist = client.get_metric_history(run_id, CORRUPT_SHARDS)
    assert sorted((h.step, h.value) for h in hist) == [(1, 2.0), (2, 2.0)]
    assert {h.step for h in client.get_metric_history(run_id, "loss")} == {1, 2}


def test_mlflow_writer_process_logs_in_order_and_surfaces_errors(tmp_path):
    """Metrics are written by a separate process: every batch sent is in MLflow after flush(), and a
    store that refuses a write fails the run at the next flush instead of losing metrics silently."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("w", artifact_location=(tmp_path / "a").as_uri())).info.run_id
    mlf = MlflowLogger({"uri": uri, "run_id": run_id})
    for step in range(1, 6):
        mlf.log({"step": step, "loss": 1.0 / step, "skipped": float("nan"), "note": "not a number"})
    mlf.flush()
    assert [(h.step, h.value) for h in client.get_metric_history(run_id, "loss")] == [(s, 1.0 / s) for s in range(1, 6)]
    mlf.close()
    assert "skipped" not in client.get_run(run_id).data.metrics

    bad = MlflowLogger({"uri": uri, "run_id": "0" * 32})   # no such run
    bad.log({"step": 1, "loss": 1.0})
    with pytest.raises(RuntimeError, match="MLflow logging to run 0+ failed"):
        bad.flush()
    bad.abort()
    MlflowLogger(None).log({"step": 1, "loss": 1.0})          # logging off: a no-op
