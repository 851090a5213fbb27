"""Evaluate an export on the held-out split; report, plots and metrics into MLflow.

    python -m jobs.evaluate --config configs/tiny.yaml                       # the curriculum's final export
    python -m jobs.evaluate --config configs/tiny.yaml --checkpoint models:/omni-duplex-tiny@candidate
    python -m jobs.evaluate --config configs/tiny.yaml --checkpoint outputs/tiny/checkpoints/final eval.ray=false
    python -m jobs.evaluate compare RUN_ID [RUN_ID ...] [--config CFG] [--out DIR]

Held-out records (``eval.max_samples``, in manifest order) go through a Ray Data actor pool
(``map_batches``, ``eval.actors`` actors; ``eval.ray=false`` runs the same code in-process).
Each actor runs :class:`omni.metrics.model_eval.RecordEvaluator`: teacher-forced loss per
stage and stream, the model's own ASR (WER/CER), TTS intelligibility (own TTS -> own ASR),
half-duplex replies (BLEU, ROUGE-L, METEOR, BERTScore, style F1, optional LLM judge) and, for
the first ``eval.duplex_conversations`` records, the streaming engine in simulated real time
(turn-taking metrics, see ``omni.metrics.duplex``). Writes ``report.json``, ``report.md`` and
plots to ``eval.output_dir`` and logs them, with ``eval_*`` metrics, on the run being
evaluated: the curriculum parent run (final export), the stage run (a stage export), the
registered model version's run (``models:/``), else a new ``<name>-evaluate`` run. Metrics
that cannot run are marked missing, never 0. See docs/evaluation.md.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from jobs._common import (
    JobError,
    init_ray,
    load,
    parse_args,
    print_summary,
    run_main,
    setup_mlflow,
    start_logs,
)
from omni.config import Config
from omni.progress import Progress

USAGE = __doc__ + "\nOptions: --config PATH [--checkpoint DIR|models:/NAME@ALIAS] [key=value ...]"


# ------------------------------------------------------------------------ records
def heldout_items(cfg: Config) -> list[dict]:
    """``{"shard", "key", "duplex"}`` for the first ``eval.max_samples`` held-out records (manifest order)."""
    from omni.shards import format as S
    from omni.shards import load_manifest

    root = Path(cfg.data.output_dir).resolve()
    try:
        manifest = load_manifest(root)
    except FileNotFoundError as e:
        raise JobError(str(e)) from None
    items = []
    for e in sorted((e for e in manifest["shards"] if e["split"] == "heldout"), key=lambda e: e["path"]):
        for raw in S.iter_shard(root / e["path"], fields=("json",)):
            items.append({"shard": str(root / e["path"]), "key": raw["__key__"]})
    if not items:
        raise JobError(f"no held-out records in {root}/manifest.json: prepare more data or raise data.heldout_fraction")
    items = items[: cfg.eval.max_samples]
    for i, it in enumerate(items):
        it["duplex"] = i < cfg.eval.duplex_conversations
    return items


_SHARD_CACHE: dict = {}


def read_record(shard: str, key: str) -> dict:
    """One record (with audio) from a shard; the last shard read is kept in memory."""
    from omni.shards import format as S

    _cache = _SHARD_CACHE
    if _cache.get("path") != shard:
        _cache.clear()
        _cache.update(path=shard, samples={r["__key__"]: r for r in S.iter_shard(shard)})
    if key not in _cache["samples"]:
        raise JobError(f"record {key} is not in {shard}: the data set changed since the manifest was written")
    return S.decode_sample(_cache["samples"][key], audio=True)


def run_local(export_dir, cfg: Config, items: list[dict]) -> list[dict]:
    """Evaluate ``items`` in this process (same rows as the Ray path)."""
    from omni.metrics.model_eval import RecordEvaluator

    ev = RecordEvaluator(export_dir, cfg)
    bar, rows = Progress("held-out records", len(items)), []
    for it in items:
        rows.append(json.loads(json.dumps(ev(read_record(it["shard"], it["key"]), duplex=it["duplex"]))))
        bar.update(len(rows))
    return rows


class EvalActor:
    """Ray Data ``map_batches`` callable: loads the export once per actor."""

    def __init__(self, export_dir: str, cfg_json: str):
        import torch

        from omni.metrics.model_eval import RecordEvaluator

        torch.set_num_threads(1)
        self.ev = RecordEvaluator(export_dir, Config.model_validate_json(cfg_json))

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        rows = [json.dumps(self.ev(read_record(str(s), str(k)), duplex=bool(d)))
                for s, k, d in zip(batch["shard"], batch["key"], batch["duplex"])]
        return {"key": np.array([str(k) for k in batch["key"]]), "row": np.array(rows, dtype=object)}


def run_ray(export_dir, cfg: Config, items: list[dict]) -> list[dict]:
    """Evaluate ``items`` with Ray Data batch inference (actor pool of ``eval.actors``)."""
    import ray

    ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 4 * cfg.eval.actors)))
    ds = ds.map_batches(EvalActor, batch_size=cfg.eval.batch_size, num_cpus=1,
                        compute=ray.data.ActorPoolStrategy(size=cfg.eval.actors),
                        fn_constructor_args=(str(export_dir), cfg.model_dump_json()))
    bar, rows = Progress("held-out records", len(items)), []
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        rows += [json.loads(r) for r in batch["row"]]
        bar.update(len(rows))
    return rows


# ------------------------------------------------------------------------- MLflow
def target_run(cfg: Config, spec: str, state: dict, client) -> str | None:
    """The MLflow run that the evaluated checkpoint came from (None = unknown)."""
    if spec.startswith("models:/"):
        name, _, ref = spec[len("models:/"):].strip("/").partition("@")
        mv = (client.get_model_version_by_alias(name, ref) if ref else
              client.get_model_version(*spec[len("models:/"):].strip("/").split("/", 1)))
        return mv.run_id
    p = Path(spec).resolve()
    if state.get("final_export") and p == Path(state["final_export"]).resolve():
        return state.get("parent_run_id")
    for info in state.get("stages", {}).values():
        if Path(info["export_dir"]).resolve() == p:
            return info.get("run_id")
    return None


def run_history(client, run_id: str, keys=("loss", "heldout_loss")) -> dict:
    """``{metric: {run_name: [(step, value), ...]}}`` from the run and its child (stage) runs."""
    run = client.get_run(run_id)
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'",
                                  order_by=["attributes.start_time ASC"])
    out: dict = {}
    for r in [run, *children]:
        for k in keys:
            pts = sorted((m.step, m.value) for m in client.get_metric_history(r.info.run_id, k))
            if len(pts) > 1:
                out.setdefault(k, {})[r.info.run_name or r.info.run_id[:8]] = pts
    return out


# ----------------------------------------------------------------------- evaluate
def evaluate(cfg: Config, checkpoint: str | None = None) -> dict:
    """Evaluate ``checkpoint`` (folder or ``models:/``; None = the curriculum's final export)."""
    import mlflow

    from omni.metrics.report import flat_metrics, markdown, plot_all, summarize
    from omni.registry import resolve_export

    exp_id = setup_mlflow(cfg)
    state_file = Path(cfg.train.output_dir).resolve() / "curriculum.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    spec = checkpoint or state.get("final_export")
    if not spec:
        raise JobError(f"no --checkpoint given and no finished curriculum at {state_file}: pass "
                       "--checkpoint DIR|models:/NAME@ALIAS or run `python -m jobs.curriculum` first")
    try:
        export_dir = resolve_export(spec)
    except FileNotFoundError as e:
        raise JobError(f"checkpoint not found: {e}") from None
    items = heldout_items(cfg)
    t0 = time.time()
    if cfg.eval.ray:
        init_ray()
        rows = run_ray(export_dir, cfg, items)
    else:
        rows = run_local(export_dir, cfg, items)
    report = {"checkpoint": str(spec), "export_dir": str(export_dir), "heldout_records": len(rows),
              **summarize(rows, cfg.eval, os.environ.get(cfg.eval.judge_api_key_env))}
    report["seconds"] = round(time.time() - t0, 2)
    client = mlflow.MlflowClient()
    run_id = target_run(cfg, str(spec), state, client)
    if run_id is None:
        run_id = client.create_run(exp_id, run_name=f"{cfg.name}-evaluate",
                                   tags={"omni.checkpoint": str(spec)}).info.run_id
    out = Path(cfg.eval.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    try:
        history = run_history(client, run_id)
    except Exception as e:  # noqa: BLE001 -- a store without history must not sink the report
        history, report["missing"] = {}, report["missing"] + [f"plots.history: {e}"]
    report["plots"] = plot_all(report, out, history)
    report["mlflow_run_id"] = run_id
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(markdown(report))
    for k, v in flat_metrics(report).items():
        client.log_metric(run_id, k, v)
    for f in ("report.json", "report.md", *report["plots"]):
        client.log_artifact(run_id, str(out / f), artifact_path="eval")
    return report


# ------------------------------------------------------------------------ compare
def compare(run_ids: list[str], out_dir: Path) -> str:
    """One Markdown table of the ``eval_*`` metrics of ``run_ids``; saved as compare.md/.json."""
    import mlflow

    client = mlflow.MlflowClient()
    runs = []
    for rid in run_ids:
        try:
            runs.append(client.get_run(rid))
        except mlflow.exceptions.MlflowException as e:
            raise JobError(f"run {rid} not found in {mlflow.get_tracking_uri()}: {str(e).splitlines()[0]}") from None
    names = [f"{r.info.run_name or ''} ({r.info.run_id[:8]})" for r in runs]
    keys = sorted({k for r in runs for k in r.data.metrics if k.startswith("eval_")})
    if not keys:
        raise JobError(f"none of {run_ids} has eval_* metrics: run `python -m jobs.evaluate` on them first")
    table = {k: [r.data.metrics.get(k) for r in runs] for k in keys}
    lines = ["| metric | " + " | ".join(names) + " |", "|---" * (len(runs) + 1) + "|"]
    lines += [f"| {k} | " + " | ".join("missing" if v is None else f"{v:.4g}" for v in vals) + " |"
              for k, vals in table.items()]
    text = "\n".join(lines) + "\n"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "compare.md").write_text(text)
    (out_dir / "compare.json").write_text(json.dumps({"runs": [r.info.run_id for r in runs], "names": names,
                                                      "metrics": table}, indent=2))
    return text


def compare_main(argv: list[str]) -> int:
    cfg_path, out, ids, it = None, None, [], iter(argv)
    for a in it:
        if a == "--config":
            cfg_path = next(it, None)
        elif a == "--out":
            out = next(it, None)
        elif a.startswith("-"):
            raise JobError(f"unknown option {a!r} for compare (options: --config PATH --out DIR)")
        else:
            ids.append(a)
    if not ids:
        raise JobError("compare needs run ids: python -m jobs.evaluate compare RUN_ID [RUN_ID ...] [--config CFG]")
    if cfg_path:
        cfg = load(cfg_path, [])
        setup_mlflow(cfg)
        out = out or str(Path(cfg.eval.output_dir).resolve() / "compare")
    elif not os.environ.get("MLFLOW_TRACKING_URI"):
        raise JobError("compare needs --config CFG (for its MLflow store) or MLFLOW_TRACKING_URI")
    print(compare(ids, Path(out or "compare")), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(argv if argv is not None else sys.argv[1:])
    if argv and argv[0] == "compare":
        return compare_main(argv[1:])
    cfg_path, overrides, flags = parse_args(argv, USAGE, {"checkpoint": None})
    cfg = load(cfg_path, overrides, job="evaluate")
    start_logs(cfg, "evaluate")
    r = evaluate(cfg, flags["checkpoint"])
    print_summary({"report": str(Path(cfg.eval.output_dir).resolve() / "report.json"),
                   "mlflow_run_id": r["mlflow_run_id"],
                   "losses": {k: round(v["loss"], 4) for k, v in r["losses"].items()},
                   "asr_wer": r["asr"].get("wer"), "duplex_rtf": r["duplex"].get("rtf"),
                   "missing": r["missing"]})
    return 0


if __name__ == "__main__":
    run_main(main)
