"""End to end on a local two-node Ray cluster (cluster/local.sh), everything by `ray job submit`:
prepare_data -> curriculum (Ray Train workers on both nodes) -> evaluate -> register, logging to
the MLflow tracking server, outputs on the folder both nodes share; and two bad submissions (a
missing config path, an unreachable MLflow) that must fail fast with the reason in `ray job logs`.

The cluster lives in a loopback-only network + pid namespace (no root needed), so it cannot touch
other Ray instances on the machine; teardown kills the namespace, never `ray stop`.
Tiny sizes: 12 dialogues, 2 steps per stage.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
LOCAL = REPO / "cluster" / "local.sh"
# The first and the last stage of the curriculum (the middle two are switched off to keep the test
# within its budget: each stage costs a Ray Train start, ~40 s on 2 cores), 2 steps each.
RUN_STAGES = ("align", "full_duplex_2")
TINY = ["--config", "configs/tiny.yaml", "synth.num_dialogues=12"] + [
    f"stages.{s}.max_steps=2" if s in RUN_STAGES else f"stages.{s}.enabled=false"
    for s in ("align", "half_duplex", "full_duplex_3", "full_duplex_2")]


def _netns_available() -> bool:
    if not (shutil.which("unshare") and shutil.which("nsenter")):
        return False
    return subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode == 0


class Cluster:
    def __init__(self, state: Path):
        self.state = state
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("RAY_", "MLFLOW_"))} | {"OMNI_CLUSTER_DIR": str(state)}
        self.timings_s: dict[str, float] = {}

    def local(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(LOCAL), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout_s, cwd=REPO)

    def exec(self, *cmd: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
        return self.local("exec", "--", *cmd, timeout_s=timeout_s)

    def overrides(self) -> list[str]:
        return self.local("overrides").stdout.split()

    def submit(self, sid: str, module: str, *args: str, runtime_env: Path | None = None,
               wait: bool = True, timeout_s: float = 600) -> dict:
        cmd = ["ray", "job", "submit", "--submission-id", sid,
               "--runtime-env", str(runtime_env or self.state / "runtime_env.yaml")]
        if not wait:
            cmd.append("--no-wait")
        t0 = time.monotonic()
        r = self.exec(*cmd, "--", "python", "-m", module, *args, timeout_s=timeout_s)
        self.timings_s[sid] = round(time.monotonic() - t0, 1)
        assert "submitted successfully" in r.stdout + r.stderr, r.stdout[-3000:] + r.stderr[-3000:]
        return self.job(sid)

    def job(self, sid: str) -> dict:
        r = self.exec("python", "cluster/probe.py", "job", sid)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def wait_job(self, sid: str, timeout_s: float = 180) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            j = self.job(sid)
            if j["status"] in ("SUCCEEDED", "FAILED", "STOPPED") or time.monotonic() > deadline:
                return j
            time.sleep(2)

    def logs(self, sid: str) -> str:
        return self.exec("ray", "job", "logs", sid).stdout

    def python(self, code: str) -> dict:
        r = self.exec("python", "-c", code, timeout_s=180)
        assert r.returncode == 0, r.stderr[-3000:]
        return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not _netns_available():
        pytest.skip("needs unprivileged user + network namespaces (unshare -rn)")
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    t0 = time.monotonic()
    r = c.local("up", timeout_s=480)
    c.timings_s["up"] = round(time.monotonic() - t0, 1)
    try:
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        yield c
    finally:
        down = c.local("down", timeout_s=60)
        assert down.returncode == 0, down.stderr
        print("timings_s", json.dumps(c.timings_s))


def test_local_cluster_up_prints_addresses_and_uses_token_auth(cluster):
    info = cluster.local("info").stdout
    for needle in ("127.0.0.1:6390", "http://127.0.0.1:8275", "http://127.0.0.1:5055", "ray job submit"):
        assert needle in info
    r = cluster.exec("python", "cluster/probe.py", "nodes")
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2 and {ln.split()[1] for ln in lines} == {"head", "worker"}
    assert all("ALIVE" in ln and "CPU=1" in ln for ln in lines)
    # without the token the job server refuses us
    no_token = cluster.exec("python", "-c",
                            "import urllib.request as u\ntry:\n u.urlopen('http://127.0.0.1:8275/api/jobs/', timeout=10)"
                            "\n print('open')\nexcept Exception as e:\n print('refused', e)")
    assert "refused" in no_token.stdout and "401" in no_token.stdout


def test_pipeline_by_ray_job_submit_on_two_nodes(cluster):
    ov = cluster.overrides()
    shared = cluster.state / "shared"
    # bad input, submitted first and left to run next to the pipeline (their drivers need no CPU)
    bad_env = cluster.state / "runtime_env.bad_mlflow.yaml"
    bad_env.write_text((cluster.state / "runtime_env.yaml").read_text().replace(
        'MLFLOW_TRACKING_URI: "http://127.0.0.1:5055"', 'MLFLOW_TRACKING_URI: "http://127.0.0.1:9"'))
    cluster.submit("bad-config", "jobs.prepare_data", "--config", "configs/missing.yaml", wait=False)
    cluster.submit("bad-mlflow", "jobs.register", *TINY, *ov, runtime_env=bad_env, wait=False)

    prep = cluster.submit("prepare", "jobs.prepare_data", *TINY, "--no-progress", *ov)
    assert prep["status"] == "SUCCEEDED", cluster.logs("prepare")[-3000:]
    manifest = json.loads((shared / "data" / "manifest.json").read_text())
    assert sum(s["samples"] for s in manifest["shards"]) > 0

    cur = cluster.submit("curriculum", "jobs.curriculum", *TINY, *ov)
    assert cur["status"] == "SUCCEEDED", cluster.logs("curriculum")[-3000:]
    state = json.loads((shared / "checkpoints" / "curriculum.json").read_text())
    assert set(state["stages"]) == set(RUN_STAGES)
    assert (Path(state["final_export"]) / "export.json").is_file()
    assert Path(state["final_export"]).resolve().is_relative_to(shared)
    # Ray Train checkpoints on the shared folder, one run per stage
    runs = {p.parent.name for p in (shared / "ray_results").glob("*/checkpoint_*/")}
    assert runs == {f"tiny-{s}" for s in state["stages"]}, runs

    # the Ray Train workers: 2 per stage, one on each node
    r = cluster.exec("python", "cluster/probe.py", "actors", "RayTrainWorker")
    nodes = [ln.split()[2] for ln in r.stdout.strip().splitlines()]
    assert len(nodes) == 2 * len(RUN_STAGES), r.stdout
    assert len(set(nodes)) == 2 and nodes.count(nodes[0]) == len(RUN_STAGES), f"workers not spread: {nodes}"

    # evaluate and register both start from the final export: submitted side by side
    t0 = time.monotonic()
    cluster.submit("evaluate", "jobs.evaluate", *TINY, *ov, "eval.max_samples=2", "eval.max_new_tokens=8", wait=False)
    cluster.submit("register", "jobs.register", *TINY, *ov, wait=False)
    for sid in ("evaluate", "register"):
        j = cluster.wait_job(sid, timeout_s=480)
        assert j["status"] == "SUCCEEDED", cluster.logs(sid)[-3000:]
    cluster.timings_s["evaluate+register"] = round(time.monotonic() - t0, 1)
    assert json.loads((shared / "eval" / "report.json").read_text())

    # everything was logged to the MLflow *server* (not a local sqlite file)
    ml = cluster.python(
        "import json, os, mlflow\n"
        "c = mlflow.MlflowClient(os.environ['MLFLOW_TRACKING_URI'])\n"
        "e = c.get_experiment_by_name('omni-tiny')\n"
        "runs = c.search_runs([e.experiment_id])\n"
        "v = c.get_model_version_by_alias('omni-duplex-tiny', 'candidate')\n"
        "print(json.dumps({'runs': sorted(r.data.tags.get('stage', 'parent') for r in runs),"
        " 'finished': sum(r.info.status == 'FINISHED' for r in runs), 'version': v.version}))")
    assert ml["runs"].count("parent") >= 1 and set(RUN_STAGES) <= set(ml["runs"])
    assert ml["finished"] >= 1 + len(RUN_STAGES) and int(ml["version"]) >= 1
    assert not (shared / "mlflow.db").exists()

    # the bad submissions failed, fast, and say why in `ray job logs`
    for sid, reason in (("bad-config", "config file not found: configs/missing.yaml"),
                        ("bad-mlflow", "MLFLOW_TRACKING_URI=http://127.0.0.1:9 is not reachable")):
        j = cluster.wait_job(sid)
        assert j["status"] == "FAILED", j
        assert reason in cluster.logs(sid)
        assert (j["end_time"] - j["start_time"]) / 1000 < 120, f"{sid} took too long to fail"
    print("timings_s", json.dumps(cluster.timings_s))
