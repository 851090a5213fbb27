"""``jobs.omnichat_ablations`` end to end on two of the comparison configs, a few steps each: one
MLflow parent run, one child run per config with the held-out metrics and the fusion share, and the
table (Markdown, plot, JSON) on the parent.

Slow (minutes on 2 cores: data prep with espeak, Ray Train + DeepSpeed twice). The job runs in a
temporary folder, so the configs' relative ``outputs/`` paths (data, checkpoints, MLflow store)
land there."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["experts_all", "fusion_concat"]
CHILD_METRICS = ["emotion_f1_macro", "style_f1_macro", "bleu", "rouge_l", "bertscore_f1", "fusion_compute_share",
                 "emotion_majority_f1_macro", "eval_turns"]


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("ablations")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    r = subprocess.run([sys.executable, "-m", "jobs.omnichat_ablations",
                        "--config", str(ROOT / "configs" / "omnichat_ablations"), "--only", ",".join(CONFIGS),
                        "--make-real-fixture", "synth.num_dialogues=12", "data.shard_max_samples=4",
                        "train.num_workers=1", "train.warmup_steps=1", "omnichat.max_steps=3",
                        "omnichat.eval_max_samples=3", "omnichat.max_new_tokens=6"],
                       cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return cwd, json.loads(r.stdout.strip().splitlines()[-1])


def test_one_parent_run_with_a_child_per_config(ablation):
    import mlflow

    cwd, summary = ablation
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{cwd / 'outputs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("omnichat-ablations")
    parents = client.search_runs([exp.experiment_id], "tags.kind = 'omnichat_ablations'")
    assert [p.info.run_id for p in parents] == [summary["parent_run_id"]]
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    children = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(c.data.tags["ablation"] for c in children) == sorted(CONFIGS)
    for c in children:
        missing = [k for k in CHILD_METRICS if k not in c.data.metrics]
        assert not missing, (c.data.tags["ablation"], missing, sorted(c.data.metrics))
        assert 0 <= c.data.metrics["emotion_f1_macro"] <= 1 and 0 <= c.data.metrics["fusion_compute_share"] < 1
    # the concat ablation is exactly the reference with another fusion
    concat = next(c for c in children if c.data.tags["ablation"] == "fusion_concat")
    assert concat.data.params["omnichat.fusion"] == "concat"
    assert {f"{n}.emotion_f1_macro" for n in CONFIGS} <= set(parent.data.metrics)

    names = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"ablation_table.md", "ablation_table.png", "ablation_table.json"} <= names
    md = Path(client.download_artifacts(parent.info.run_id, "ablation_table.md", str(cwd))).read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| config")]
    assert [line.split("|")[1].strip() for line in rows] == CONFIGS
    assert "fusion=concat" in rows[1] and rows[0].split("|")[2].strip() == "-"
