"""The walking skeleton at its smallest size: `jobs.demo` end to end, then what it left behind.

Marked slow (minutes): still part of `make test`."""
import json
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from jobs._common import free_port

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["align", "half_duplex", "full_duplex_3", "full_duplex_2"]



@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    overrides = [
        f"data.output_dir={out}/tiny/data", f"train.output_dir={out}/tiny/checkpoints",
        f"train.storage_path={out}/tiny/ray_results", f"eval.output_dir={out}/tiny/eval",
        f"mlflow.artifact_dir={out}/mlruns", f"serve.port={free_port()}",
        "synth.num_dialogues=16", "data.shard_max_samples=8", "data.heldout_fraction=0.2",
        "stages.align.max_steps=3", "stages.half_duplex.max_steps=2", "stages.full_duplex_3.max_steps=2",
        "stages.full_duplex_2.max_steps=2", "eval.max_samples=2", "eval.duplex_conversations=1",
    ]
    r = subprocess.run([sys.executable, "-m", "jobs.demo", "--config", "configs/tiny.yaml", *overrides],
                       cwd=ROOT, capture_output=True, text=True, timeout=1500)
    (out / "demo.log").write_text(r.stdout + "\n" + r.stderr)
    (out / "demo.stderr").write_text(r.stderr)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    summary["overrides"] = overrides
    return out, summary, r.stdout


def test_demo_prints_where_to_look(demo):
    out, summary, stdout = demo
    for needle in ("What was made and where to look", "mlflow ui --backend-store-uri", "reply_wav", "latency p50"):
        assert needle in stdout
    assert Path(summary["reply_wav"]).exists() and summary["reply_s"] > 0
    assert summary["underruns"] is not None and summary["ws_errors"] == []
    assert summary["latency_ms_p50"] is not None and summary["latency_ms_p50"] > 0
    # The held-out user turn and the talk-back verdict (Silero VAD on the reply) are reported; a model
    # trained for 2 steps per stage is not expected to answer, `make demo`'s model is (docs/demo figures).
    heard = summary["talk_back"]
    assert "talks back" in stdout and "reply heard as" in stdout
    assert heard["user_end_s"] > 0 and isinstance(heard["answered"], bool)


def test_demo_console_is_its_steps_and_summary(demo):
    """Ray, DeepSpeed and MLflow output goes to the log file the summary names, not to the console."""
    out, summary, stdout = demo
    steps = [ln for ln in stdout.splitlines() if ln.startswith("=== [")]
    assert [s.split("]")[0] for s in steps] == [f"=== [{i}/6" for i in range(1, 7)]
    for noise in ("WARNING", "INFO ", "[DeepSpeed]", "(pid=", "(raylet)", "Traceback", "Warning:",
                  "Building extension"):
        assert noise not in stdout, noise
    assert (out / "demo.stderr").read_text() == ""
    log = Path(summary["log"])
    assert log == out / "tiny" / "logs" / "demo.log" and f"library logs     {log}" in stdout
    assert "Ray workers' output: " in log.read_text()


def test_shards_match_manifest(demo):
    out, _, _ = demo
    data = out / "tiny" / "data"
    m = json.loads((data / "manifest.json").read_text())
    src = m["sources"]["synthetic"]
    assert src["read"] == 16 and src["accepted"] + src["rejected"] == 16
    assert sum(s["samples"] for s in m["shards"]) == src["accepted"]
    rejects = (data / "rejects.jsonl").read_text().splitlines()
    assert len(rejects) == src["rejected"]
    for s in m["shards"]:
        with tarfile.open(data / s["path"]) as tar:
            names = tar.getnames()
        keys = {n.split(".", 1)[0] for n in names}
        assert len(keys) == s["samples"]
        assert len(names) == 5 * s["samples"]  # json, 2 flac, 2 npy per sample
    assert {s["split"] for s in m["shards"]} == {"train", "heldout"}


def test_curriculum_exports_every_stage_in_order(demo):
    out, summary, _ = demo
    state = json.loads((out / "tiny" / "checkpoints" / "curriculum.json").read_text())
    assert list(state["stages"]) == STAGES
    for st in STAGES:
        exp = Path(state["stages"][st]["export_dir"])
        assert (exp / "model.safetensors").exists() and (exp / "vocab.json").exists()
        assert not list(exp.glob("*.bin")) and not list(exp.glob("*.pt"))
        assert json.loads((exp / "export.json").read_text())["extra"]["stage"] == st
    assert Path(summary["final_export"]).resolve() == Path(state["stages"]["full_duplex_2"]["export_dir"]).resolve()


def test_mlflow_has_parent_nested_runs_metrics_and_registry(demo):
    out, summary, _ = demo
    db = sqlite3.connect(out / "mlflow.db")
    runs = dict(db.execute("select run_uuid, name from runs").fetchall())
    parents = [r for r, n in runs.items() if n.endswith("-curriculum")]
    assert len(parents) == 1
    children = db.execute("select r.name from runs r join tags t on r.run_uuid = t.run_uuid "
                          "where t.key = 'mlflow.parentRunId' and t.value = ?", (parents[0],)).fetchall()
    assert sorted(n for (n,) in children) == sorted(f"tiny-{s}" for s in STAGES)
    for st in STAGES:
        run = [r for r, n in runs.items() if n == f"tiny-{st}"][0]
        keys = {k for (k,) in db.execute("select distinct key from metrics where run_uuid = ?", (run,))}
        assert {"loss", "lr", "grad_norm", "tokens_per_s", "padding_fraction", "heldout_loss"} <= keys, keys
        steps = [s for (s,) in db.execute("select step from metrics where run_uuid = ? and key = 'loss' "
                                          "order by step", (run,))]
        assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 2
        params = dict(db.execute("select key, value from params where run_uuid = ?", (run,)).fetchall())
        assert params["stage"] == st and params["train.zero_stage"] == "2"
    parent_metrics = {k for (k,) in db.execute("select distinct key from metrics where run_uuid = ?", (parents[0],))}
    assert "eval_full_duplex_2_loss" in parent_metrics and "eval_asr_wer" in parent_metrics
    (name, alias, version), = db.execute("select name, alias, version from registered_model_aliases").fetchall()
    assert summary["registered_model"] == f"models:/{name}@{alias}"


def test_eval_report_written(demo):
    out, _, _ = demo
    rep = json.loads((out / "tiny" / "eval" / "report.json").read_text())
    assert set(rep["losses"]) == set(STAGES)
    for st, d in rep["losses"].items():
        assert 0 < d["loss"] < 20
    assert 0 <= rep["asr"]["cer"] and rep["duplex"]["conversations"] == 1 and rep["duplex"]["rtf"] > 0
    assert (out / "tiny" / "eval" / "eval_losses.png").stat().st_size > 1000


def test_curriculum_rerun_resumes_after_driver_died_between_stages(demo):
    """The driver writes curriculum.json after each stage; one killed after full_duplex_3 leaves
    three stages in it. Running the same command again must train only full_duplex_2, under the
    same MLflow parent run. (Runs last: it replaces the demo's final export.)"""
    out, summary, _ = demo
    state_file = out / "tiny" / "checkpoints" / "curriculum.json"
    state = json.loads(state_file.read_text())
    parent = state["parent_run_id"]
    del state["stages"]["full_duplex_2"]
    state_file.write_text(json.dumps(state))
    r = subprocess.run([sys.executable, "-m", "jobs.curriculum", "--config", "configs/tiny.yaml",
                        *summary["overrides"]], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    for st in STAGES[:3]:
        assert f"[curriculum] {st}: already done" in r.stdout
    assert "[curriculum] full_duplex_2: training from" in r.stdout
    after = json.loads(state_file.read_text())
    assert after["parent_run_id"] == parent and list(after["stages"]) == STAGES
    db = sqlite3.connect(out / "mlflow.db")
    runs = db.execute("select r.name from runs r join tags t on r.run_uuid = t.run_uuid "
                      "where t.key = 'mlflow.parentRunId' and t.value = ?", (parent,)).fetchall()
    assert sorted(n for (n,) in runs).count("tiny-full_duplex_2") == 2   # the first and the resumed
    assert sorted(n for (n,) in runs).count("tiny-align") == 1           # not retrained
