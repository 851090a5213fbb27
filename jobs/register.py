"""Register a trained export in the MLflow model registry and point an alias at it.

    python -m jobs.register --config configs/tiny.yaml                      # the curriculum's final export
    python -m jobs.register --config configs/tiny.yaml --export PATH --alias production

Serve then loads ``models:/<mlflow.registered_model>@<alias>``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from omni.config import Config
from jobs._common import JobError, load, parse_args, print_summary, run_main, setup_mlflow, start_logs

USAGE = __doc__ + "\nOptions: --config PATH [--export DIR] [--alias NAME] [key=value ...]"


def register(cfg: Config, export: str | None = None, alias: str | None = None) -> dict:
    import mlflow

    from omni.registry import log_and_register

    exp_id = setup_mlflow(cfg)
    state_file = Path(cfg.train.output_dir).resolve() / "curriculum.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    export = export or state.get("final_export")
    if not export:
        raise JobError(f"nothing to register: no --export and no finished curriculum at {state_file}")
    run_id = state.get("parent_run_id")
    if not run_id:
        run_id = mlflow.MlflowClient().create_run(exp_id, run_name=f"{cfg.name}-register").info.run_id
    return log_and_register(export, run_id, cfg.mlflow.registered_model, alias or cfg.mlflow.alias)


def main(argv: list[str] | None = None) -> int:
    cfg_path, overrides, flags = parse_args(argv if argv is not None else sys.argv[1:], USAGE,
                                            {"export": None, "alias": None})
    cfg = load(cfg_path, overrides)
    start_logs(cfg, "register")
    print_summary(register(cfg, flags["export"], flags["alias"]))
    return 0


if __name__ == "__main__":
    run_main(main)
