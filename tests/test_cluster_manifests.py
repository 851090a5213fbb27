"""Static checks of cluster/: KubeRay manifests, the `ray up` YAML (Ray's own validation), the
Dockerfile, runtime_env examples and local.sh's argument handling. No kubectl or docker here: the
YAML is parsed and checked field by field, the commands inside it are parsed with the jobs' own
argument parser and config loader."""
from __future__ import annotations

import copy
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from omni.config import load_config

REPO = Path(__file__).resolve().parents[1]
KR = REPO / "cluster" / "kuberay"
CLUSTER_CFG = KR / "omni-cluster.yaml"


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((KR / name).read_text()) if d]


def _one(name: str, kind: str) -> dict:
    (doc,) = [d for d in _docs(name) if d["kind"] == kind]
    return doc


def _cluster_specs() -> dict[str, dict]:
    """Every Ray cluster spec in the manifests: the RayCluster's, the RayJob's, the RayService's."""
    return {"RayCluster": _one("raycluster.yaml", "RayCluster")["spec"],
            "RayJob": _one("rayjob.yaml", "RayJob")["spec"]["rayClusterSpec"],
            "RayService": _one("rayservice.yaml", "RayService")["spec"]["rayClusterConfig"]}


def _pods(spec: dict):
    yield "head", spec["headGroupSpec"]["template"]["spec"]
    for g in spec["workerGroupSpecs"]:
        yield g["groupName"], g["template"]["spec"]


# ------------------------------------------------------------------------------ KubeRay
def test_kustomization_lists_existing_files_and_defines_what_the_manifests_reference():
    k = yaml.safe_load((KR / "kustomization.yaml").read_text())
    for f in k["resources"]:
        assert (KR / f).is_file(), f"kustomization lists missing {f}"
    (gen,) = k["configMapGenerator"]
    assert gen["name"] == "omni-config" and all((KR / f).is_file() for f in gen["files"])
    assert k["generatorOptions"]["disableNameSuffixHash"] is True  # CRDs reference plain names
    kinds = {d["kind"]: d for f in k["resources"] for d in _docs(f)}
    assert {"PersistentVolumeClaim", "ConfigMap", "RayCluster", "RayJob", "RayService"} <= set(kinds)
    assert kinds["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert "MLFLOW_TRACKING_URI" in kinds["ConfigMap"]["data"]
    assert kinds["ConfigMap"]["data"]["OMNI_CONFIG"] == "/etc/omni/" + CLUSTER_CFG.name
    assert [i["name"] for i in k["images"]] == ["omni"]


@pytest.mark.parametrize("owner", ["RayCluster", "RayJob", "RayService"])
def test_every_ray_pod_has_image_storage_config_mlflow_and_token_auth(owner):
    import ray

    pvc = _one("storage.yaml", "PersistentVolumeClaim")["metadata"]["name"]
    env_cm = _one("storage.yaml", "ConfigMap")["metadata"]["name"]
    spec = _cluster_specs()[owner]
    assert spec["rayVersion"] == ray.__version__, "rayVersion must match the image's Ray (requirements.lock)"
    assert spec["authOptions"]["mode"] == "token"
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    for group, pod in _pods(spec):
        (c,) = pod["containers"]
        assert c["image"] == "omni", f"{owner}/{group}: image is set by kustomize's images: entry"
        assert {"configMapRef": {"name": env_cm}} in c["envFrom"], f"{owner}/{group}: no MLflow env"
        vols = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        assert vols[mounts["/mnt/omni"]]["persistentVolumeClaim"]["claimName"] == pvc
        assert vols[mounts["/etc/omni"]]["configMap"]["name"] == "omni-config"
        res = c["resources"]
        assert res["limits"]["cpu"] == res["requests"]["cpu"] and res["limits"]["memory"]


@pytest.mark.parametrize("owner", ["RayCluster", "RayJob"])
def test_cpu_and_gpu_groups_autoscale_within_bounds(owner):
    groups = {g["groupName"]: g for g in _cluster_specs()[owner]["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    for g in groups.values():
        assert 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
    (gpu,) = groups["gpu"]["template"]["spec"]["containers"]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in groups["cpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    cfg = load_config(CLUSTER_CFG)
    # the GPU group can hold every Ray Train worker of the config (1 GPU each, enough CPUs)
    assert cfg.train.use_gpu and cfg.train.num_workers <= groups["gpu"]["maxReplicas"]
    assert cfg.train.cpus_per_worker <= int(gpu["resources"]["limits"]["cpu"])


def test_cluster_config_validates_and_keeps_every_output_on_the_shared_volume():
    cfg = load_config(CLUSTER_CFG)
    for path in (cfg.data.output_dir, cfg.train.output_dir, cfg.train.storage_path, cfg.eval.output_dir,
                 cfg.mlflow.artifact_dir, cfg.model.path, cfg.tokenizer.speech_path, cfg.tokenizer.text_path):
        assert path.startswith("/mnt/omni/"), path


def _entrypoint_commands() -> list[list[str]]:
    job = _one("rayjob.yaml", "RayJob")["spec"]
    outer = shlex.split(job["entrypoint"])
    assert outer[:2] == ["bash", "-c"] and outer[2].startswith("set -e;")
    cmds = [shlex.split(c) for c in outer[2].split(";")[1:] if c.strip()]
    return [[a.replace("$OMNI_CONFIG", str(CLUSTER_CFG)) for a in c] for c in cmds]


def test_rayjob_runs_prepare_curriculum_evaluate_register_in_order_with_valid_arguments():
    from jobs._common import parse_args

    cmds = _entrypoint_commands()
    assert [c[:3] for c in cmds] == [["python", "-m", f"jobs.{j}"] for j in
                                     ("prepare_data", "curriculum", "evaluate", "register")]
    flags = {"prepare_data": {"no_progress": False}, "curriculum": {"from_stage": None, "restart": False},
             "evaluate": {"checkpoint": None}, "register": {"export": None, "alias": None}}
    for c in cmds:
        cfg_path, overrides, _ = parse_args(c[3:], "usage", flags[c[2].split(".")[1]])
        load_config(cfg_path, overrides)  # raises on a bad key or value
    job = _one("rayjob.yaml", "RayJob")["spec"]
    assert job["shutdownAfterJobFinishes"] is True and job["ttlSecondsAfterFinished"] > 0
    assert job["activeDeadlineSeconds"] > 0


def test_rayservice_serve_config_is_accepted_by_the_serve_app():
    from serve_app.app import resolve_settings

    svc = _one("rayservice.yaml", "RayService")["spec"]
    serve_cfg = yaml.safe_load(svc["serveConfigV2"])
    (app,) = serve_cfg["applications"]
    assert app["import_path"] == "serve_app.app:build_app"
    assert serve_cfg["http_options"]["host"] == "0.0.0.0"
    from ray.serve.schema import ServeDeploySchema
    ServeDeploySchema.model_validate(serve_cfg)  # what `serve deploy` / KubeRay's Serve config accepts
    args = dict(app["args"], config=str(CLUSTER_CFG))  # /etc/omni/... is the same file in the pod
    cfg, extras = resolve_settings(args)
    assert cfg.serve.model == "models:/omni-duplex@production"
    with pytest.raises(Exception, match="unknown build_app args"):
        resolve_settings(dict(args, max_replica=3))  # the check the test relies on does fire


def _applied(app: dict, config_path: Path) -> tuple[dict, dict]:
    """(what Serve applies to DuplexServer for this Serve-config application, what the omni config
    it names says): both as the same plain dict."""
    from serve_app.app import build_app, deployment_options

    args = dict(app.get("args") or {}, config=str(config_path), model=str(REPO / "no-model-needed"))
    dep = build_app(args)._bound_deployment
    dc = dep._deployment_config
    applied = {"ray_actor_options": {k: dep.ray_actor_options.get(k) for k in ("num_cpus", "num_gpus")},
               "max_ongoing_requests": dc.max_ongoing_requests,
               "autoscaling_config": {k: getattr(dc.autoscaling_config, k) for k in (
                   "min_replicas", "max_replicas", "initial_replicas", "target_ongoing_requests",
                   "upscale_delay_s", "downscale_delay_s")},
               "graceful_shutdown_timeout_s": dc.graceful_shutdown_timeout_s,
               "graceful_shutdown_wait_loop_s": dc.graceful_shutdown_wait_loop_s,
               "request_router_config": {"request_router_class":
                                         dc.request_router_config.request_router_class}}
    # a `deployments:` entry in the Serve config would override build_app's options: there is none
    for d in app.get("deployments") or []:
        assert d.get("name") != "DuplexServer" or not set(d) - {"name"}, d
    # model= is ours, tts= the app's OmniChat voice (not a serve.* setting); a serve.* key in args
    # would be a second source next to the omni config
    assert not set(app.get("args") or {}) - {"config", "model", "allowed_origins", "stage", "tts"}, app["args"]
    return applied, deployment_options(load_config(config_path).serve)


@pytest.mark.parametrize("where", ["serve_config.yaml", "RayService"])
def test_serve_settings_come_from_the_omni_config_and_agree(where):
    """Autoscaling, session cap and drain timeout: serve_app/serve_config.yaml and the KubeRay
    RayService apply exactly what the omni config they name says; the RayService's `serve` worker
    group (one replica per pod) has the same bounds and CPUs, and draining outlasts any session."""
    if where == "serve_config.yaml":
        serve_cfg = yaml.safe_load((REPO / "serve_app" / "serve_config.yaml").read_text())
        (app,) = serve_cfg["applications"]
        config_path = REPO / app["args"]["config"]
    else:
        svc = _one("rayservice.yaml", "RayService")["spec"]
        (app,) = yaml.safe_load(svc["serveConfigV2"])["applications"]
        assert app["args"]["config"] == "/etc/omni/omni-cluster.yaml"
        config_path = CLUSTER_CFG
    applied, expected = _applied(app, config_path)
    assert applied == {k: expected[k] for k in applied}
    s = load_config(config_path).serve
    auto = applied["autoscaling_config"]
    assert auto["target_ongoing_requests"] == s.target_sessions_per_replica < applied["max_ongoing_requests"]
    assert applied["graceful_shutdown_timeout_s"] > s.max_session_s
    if where == "RayService":
        (group,) = _one("rayservice.yaml", "RayService")["spec"]["rayClusterConfig"]["workerGroupSpecs"]
        assert (group["minReplicas"], group["maxReplicas"]) == (auto["min_replicas"], auto["max_replicas"])
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert float(limits["cpu"]) == s.num_cpus          # one replica per pod
        env = {d["data"].get("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH") for d in _docs("storage.yaml")
               if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "omni-env"}
        assert env == {"serve_app.proxy_hooks:middlewares"}  # 1012 on replica loss, 4003 on slow consumers


# --------------------------------------------------------------------------- ray up
def test_ray_up_yaml_passes_rays_own_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((REPO / "cluster" / "ray-up" / "aws.yaml").read_text())
    cfg = prepare_config(copy.deepcopy(raw))
    validate_config(cfg)
    types = cfg["available_node_types"]
    assert raw["provider"]["type"] == "aws" and cfg["head_node_type"] == "head"
    assert types["gpu_worker"]["resources"]["GPU"] == 1 and types["gpu_worker"]["max_workers"] > 0
    assert types["gpu_worker"]["min_workers"] == 0 and types["cpu_worker"]["min_workers"] == 0
    assert raw["docker"]["worker_run_options"] == ["--gpus all"]
    assert any("RAY_AUTH_MODE=token" in c for c in raw["head_start_ray_commands"])
    assert any("RAY_AUTH_MODE=token" in c for c in raw["worker_start_ray_commands"])

    bad = copy.deepcopy(raw)
    bad["available_node_types"]["gpu_worker"]["max_wrkers"] = 3  # typo: must be refused
    with pytest.raises(Exception, match="max_wrkers"):
        validate_config(prepare_config(bad))


# --------------------------------------------------------------------------- Dockerfile
def _dockerfile_copies() -> list[list[str]]:
    lines = (REPO / "cluster" / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    return [shlex.split(line)[1:] for line in lines if line.startswith("COPY ")]


def test_dockerfile_copy_sources_exist_and_the_build_is_locked():
    text = (REPO / "cluster" / "Dockerfile").read_text()
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert froms and all(f.startswith("nvidia/cuda:${CUDA_VERSION}") for f in froms)
    checked = 0
    for args in _dockerfile_copies():
        if any(a.startswith("--from") for a in args):
            continue
        srcs = [a for a in args if not a.startswith("--")][:-1]
        for s in srcs:
            assert (REPO / s).exists(), f"Dockerfile: COPY source {s} does not exist in the repo"
            checked += 1
    assert checked >= 6
    assert "requirements.lock" in text and "pip install -r" not in text.replace("-r /tmp/lock.txt", "")
    for op in ("DS_BUILD_FUSED_ADAM=1", "DS_BUILD_CPU_ADAM=1", "installed_ops"):
        assert op in text
    lock = (REPO / "requirements.lock").read_text()
    assert re.search(r"^torch==[\d.]+\+cpu$", lock, re.M), "the Dockerfile swaps a '+cpu' torch pin"
    assert re.search(r"^deepspeed==[\d.]+$", lock, re.M)
    ignore = (REPO / "cluster" / "Dockerfile.dockerignore").read_text().split()
    assert {".venv", "outputs", ".git"} <= set(ignore)


# ------------------------------------------------------------------------ runtime_env
@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "cluster").glob("runtime_env*.yaml")))
def test_runtime_env_examples_are_valid_for_ray(name):
    from ray.runtime_env import RuntimeEnv

    env = yaml.safe_load((REPO / "cluster" / name).read_text())
    RuntimeEnv(**env)  # Ray's own field validation
    assert {".venv", "outputs", ".git"} <= set(env.get("excludes", [])) or "working_dir" not in env
    assert all(isinstance(v, str) for v in env.get("env_vars", {}).values())


def test_pip_runtime_env_pins_the_locked_versions():
    lock = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s]+)$", (REPO / "requirements.lock").read_text(), re.M))
    env = yaml.safe_load((REPO / "cluster" / "runtime_env.pip.yaml").read_text())
    pins = dict(p.split("==") for p in env["pip"]["packages"])
    assert len(pins) >= 10 and "ray" not in pins  # the cluster's own Ray stays
    for name, version in pins.items():
        locked = lock[name].removesuffix("+cpu")  # torch: the same version, CUDA build on a GPU cluster
        assert version == locked, f"runtime_env.pip.yaml pins {name}=={version}, requirements.lock has {lock[name]}"


# --------------------------------------------------------------------------- local.sh
def test_local_sh_parses_and_refuses_bad_usage(tmp_path):
    sh = REPO / "cluster" / "local.sh"
    assert subprocess.run(["bash", "-n", str(sh)]).returncode == 0
    env = {"PATH": "/usr/bin:/bin", "OMNI_CLUSTER_DIR": str(tmp_path)}
    r = subprocess.run([str(sh), "frobnicate"], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "usage" in r.stderr
    r = subprocess.run([str(sh), "exec", "--", "true"], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "not up" in r.stderr
    r = subprocess.run([str(sh), "status"], capture_output=True, text=True, env=env)
    assert r.returncode == 3 and "down" in r.stdout
    r = subprocess.run([str(sh), "env"], capture_output=True, text=True, env=env)
    assert "RAY_AUTH_MODE=token" in r.stdout and f"RAY_AUTH_TOKEN_PATH={tmp_path}" in r.stdout
