"""Records the stage's format refuses: counted (warned once per reason, logged into MLflow and the
final metrics), and a stream that yields nothing usable fails with the reason instead of looping."""
import itertools
import json
import logging
import shutil
from pathlib import Path

import pytest

from omni.config import load_config, resolve_paths
from omni.shards import ShardStream, iter_shard, write_shard
from omni.train_loop import (
    RECORD_ERRORS,
    LoopContext,
    RecordErrors,
    load_assets,
    stage_examples,
    train_loop,
)

ROOT = Path(__file__).resolve().parents[1]


def _cfg(data, tmp_path, *overrides):
    return resolve_paths(load_config(ROOT / "configs" / "tiny.yaml", [
        f"data.output_dir={data}", f"train.output_dir={tmp_path}/ckpt", "train.num_workers=1",
        "train.seq_len=256", "train.micro_batch_size=2", *overrides]))


def _break(rec: dict) -> dict:
    """A record no stage can use: no turns (the format raises ValueError)."""
    return {**rec, "meta": {**rec["meta"], "turns": []}}


def _break_shards(data: Path, keep: int) -> int:
    """Rewrite the train shards so that only the first ``keep`` records (in key order) stay usable;
    the manifest's sha256 follows, so training's verification passes. Returns records broken."""
    manifest = json.loads((data / "manifest.json").read_text())
    broken, seen = 0, 0
    for e in manifest["shards"]:
        if e["split"] != "train":
            continue
        samples = []
        for raw in iter_shard(data / e["path"]):
            meta = json.loads(raw["json"])
            if seen >= keep:
                meta["turns"] = []
                broken += 1
            seen += 1
            samples.append({**raw, "json": json.dumps(meta).encode()})
        e["sha256"] = write_shard(data / e["path"], samples)["sha256"]
    (data / "manifest.json").write_text(json.dumps(manifest))
    return broken


def test_refused_records_are_counted_and_warned_once_per_reason(tiny_data, tmp_path, caplog):
    cfg = _cfg(tiny_data, tmp_path)
    vocab, _, speech, _ = load_assets(cfg)
    good = list(ShardStream(tiny_data, "train", loop=False, shuffle_buffer=1))
    bad = [_break(r) for r in good[:3]]
    errors = RecordErrors()
    with caplog.at_level(logging.WARNING, logger="omni.train"):
        exs = list(stage_examples(cfg, "half_duplex", vocab, speech, iter(bad + good), errors))
    assert errors.count == 3 and len(exs) > 0
    (reason, n), = errors.reasons.items()                         # one reason, the record key taken out
    assert n == 3 and reason.startswith("dialogue '<key>' has no assistant turn") and "half_duplex" in reason
    warned = [r.getMessage() for r in caplog.records if r.name == "omni.train"]
    assert warned == [f"skipping record {bad[0]['key']}: {reason}"]   # warned once per reason, naming a record


def test_a_stream_of_only_refused_records_fails_with_the_reason(tiny_data, tmp_path):
    cfg = _cfg(tiny_data, tmp_path)
    vocab, _, speech, _ = load_assets(cfg)
    bad = [_break(r) for r in ShardStream(tiny_data, "train", loop=False, shuffle_buffer=1)]
    endless = itertools.cycle(bad)                      # like a looping ShardStream: never ends by itself
    with pytest.raises(ValueError, match=r"stage half_duplex: the last 50 records gave no training example "
                                         r"\(0 single utterances.*50 records refused: dialogue '<key>' has no "
                                         r"assistant turn .* \(50x\)"):
        next(stage_examples(cfg, "half_duplex", vocab, speech, endless, max_without_example=50))
    # single utterances outside align are no error, but a stream of only them cannot feed the stage either
    utterances = itertools.cycle([{**r, "meta": {**r["meta"], "task": "utterance"}} for r in bad])
    with pytest.raises(ValueError, match=r"last 20 records gave no training example \(20 single utterances"):
        next(stage_examples(cfg, "full_duplex_2", vocab, speech, utterances, max_without_example=20))


def test_training_logs_refused_records_to_mlflow_and_final_metrics(tiny_data, tmp_path):
    from mlflow import MlflowClient

    data = shutil.copytree(tiny_data, tmp_path / "data")
    assert _break_shards(data, keep=4) > 0
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("rec", artifact_location=(tmp_path / "m").as_uri())).info.run_id
    cfg = _cfg(data, tmp_path, "stages.align.max_steps=2", "data.shuffle_buffer=64")
    args = {"config": cfg.model_dump(mode="json"), "stage": "align", "init_from": None, "export_dir": None,
            "mlflow": {"uri": uri, "run_id": run_id}}
    ctx = LoopContext()
    final = train_loop(args, ctx)
    counts = [m[RECORD_ERRORS] for m in ctx.log]
    assert final[RECORD_ERRORS] == counts[-1] > 0 and counts == sorted(counts)
    assert [h.value for h in sorted(client.get_metric_history(run_id, RECORD_ERRORS), key=lambda h: h.step)] == counts


def test_training_on_only_refused_records_fails_instead_of_looping(tiny_data, tmp_path):
    data = shutil.copytree(tiny_data, tmp_path / "data")
    _break_shards(data, keep=0)
    cfg = _cfg(data, tmp_path, "stages.align.max_steps=2")
    args = {"config": cfg.model_dump(mode="json"), "stage": "align", "init_from": None, "export_dir": None}
    with pytest.raises(ValueError, match=r"stage align: the last 1000 records gave no training example .*1000 "
                                         r"records refused: dialogue '<key>' has no turn with both speech"):
        train_loop(args, LoopContext())
