"""Run OmniFlatten's curriculum: align → half_duplex → full_duplex_3 → full_duplex_2.

    python -m jobs.curriculum --config configs/tiny.yaml
    python -m jobs.curriculum --config configs/tiny.yaml --from-stage full_duplex_3
    ray job submit --working-dir . -- python -m jobs.curriculum --config configs/tiny.yaml

Each stage starts from the previous stage's exported weights. One MLflow parent run per
curriculum, one nested run per stage. A stage whose export is complete is skipped, so a
curriculum whose driver died resumes at the first unfinished stage when run again
(``--restart`` trains every stage anew). The last export is linked as
``<train.output_dir>/final``.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from omni.config import STAGES, Config, ConfigError, save_resolved
from jobs._common import JobError, init_ray, load, parse_args, print_summary, run_main, setup_mlflow, start_logs
from jobs.train import export_dir, run_stage


def _state_path(cfg: Config) -> Path:
    return Path(cfg.train.output_dir).resolve() / "curriculum.json"


def run_curriculum(cfg: Config, from_stage: str | None = None, restart: bool = False) -> dict:
    import mlflow

    stages = [s for s in STAGES if cfg.stages.get(s).enabled]
    if from_stage:
        if from_stage not in STAGES:
            raise ConfigError(f"unknown stage {from_stage!r}: choose one of {', '.join(STAGES)}")
        stages = stages[stages.index(from_stage):] if from_stage in stages else []
    if not stages:
        raise JobError("no enabled stage to run (check stages.<name>.enabled and --from-stage)")
    root = Path(cfg.train.output_dir).resolve()
    save_resolved(cfg, root)
    exp_id = setup_mlflow(cfg)
    client = mlflow.MlflowClient()
    state = json.loads(_state_path(cfg).read_text()) if _state_path(cfg).exists() and not restart else {}
    if state.get("config_digest") not in (None, cfg.digest()):
        state = {}  # another config: a new curriculum
    if not state.get("parent_run_id"):
        run = client.create_run(exp_id, run_name=f"{cfg.name}-curriculum",
                                tags={"kind": "curriculum", "config_digest": cfg.digest()})
        state = {"parent_run_id": run.info.run_id, "config_digest": cfg.digest(), "stages": {}}
        client.log_artifact(state["parent_run_id"], str(root / "config.resolved.yaml"))
    parent = state["parent_run_id"]
    client.update_run(parent, status="RUNNING")

    all_enabled = [s for s in STAGES if cfg.stages.get(s).enabled]
    prev = None
    idx = all_enabled.index(stages[0])
    if idx > 0:
        prev = str(export_dir(cfg, all_enabled[idx - 1]))
        if not (Path(prev) / "export.json").exists():
            raise JobError(f"--from-stage {stages[0]} needs the export of {all_enabled[idx - 1]} at {prev}")
    for stage in stages:
        done = state["stages"].get(stage)
        if done and not restart and (Path(done["export_dir"]) / "export.json").exists() and not from_stage:
            print(f"[curriculum] {stage}: already done ({done['export_dir']}), skipping", flush=True)
            prev = done["export_dir"]
            continue
        print(f"[curriculum] {stage}: training from {prev or 'a fresh model'}", flush=True)
        t0 = time.time()
        res = run_stage(cfg, stage, init_from=prev, parent_run_id=parent)
        state["stages"][stage] = {"export_dir": res["export_dir"], "run_id": res["run_id"],
                                  "wall_s": round(time.time() - t0, 1),
                                  "loss": res["metrics"].get("loss"),
                                  "heldout_loss": res["metrics"].get("heldout_loss")}
        _state_path(cfg).write_text(json.dumps(state, indent=2))
        for k in ("loss", "heldout_loss"):
            if res["metrics"].get(k) is not None:
                client.log_metric(parent, f"{stage}_{k}", float(res["metrics"][k]))
        prev = res["export_dir"]
    final = root / "final"
    if final.is_symlink() or final.exists():
        final.unlink()
    final.symlink_to(Path(prev).relative_to(root))
    state["final_export"] = str(final)
    _state_path(cfg).write_text(json.dumps(state, indent=2))
    client.log_artifact(parent, str(_state_path(cfg)))
    client.set_terminated(parent, "FINISHED")
    return state


USAGE = __doc__ + "\nOptions: --config PATH [--from-stage NAME] [--restart] [key=value ...]"


def main(argv: list[str] | None = None) -> int:
    cfg_path, overrides, flags = parse_args(argv if argv is not None else sys.argv[1:], USAGE,
                                            {"from_stage": None, "restart": False})
    cfg = load(cfg_path, overrides)
    start_logs(cfg, "curriculum")
    init_ray()
    state = run_curriculum(cfg, flags["from_stage"], flags["restart"])
    print_summary({"final_export": state["final_export"], "parent_run_id": state["parent_run_id"],
                   "stages": {k: v.get("heldout_loss") for k, v in state["stages"].items()}})
    return 0


if __name__ == "__main__":
    run_main(main)
