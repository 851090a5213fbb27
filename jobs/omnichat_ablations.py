"""OmniChat comparison table (issue 22): every config of a folder trained and scored as MLflow child
runs under one parent run, which carries the table as Markdown and as a plot.

    python -m jobs.omnichat_ablations --config configs/omnichat_ablations [--only a,b] [--seeds N]
                                      [--reference experts_all] [--make-real-fixture] [key=value ...]

e.g. the whole table on the generated DailyTalk-layout fixture, two of the configs (with the data the
first run left), or on a Ray cluster:

    python -m jobs.omnichat_ablations --config configs/omnichat_ablations --make-real-fixture
    python -m jobs.omnichat_ablations --config configs/omnichat_ablations --only experts_all,fusion_concat
    ray job submit --working-dir . -- python -m jobs.omnichat_ablations --config configs/omnichat_ablations

``--config`` is a folder of configs (or one YAML); ``key=value`` overrides apply to every child (e.g.
``omnichat.max_steps=400``). The configs must share the data (``data``, ``synth``, ``tokenizer``):
the data are prepared once (``data_prep.pipeline.run``; a re-run skips finished shards), then each
config is trained with ``jobs.train.run_stage(..., "omnichat")`` (Ray Train + DeepSpeed) as a child
run of the parent. Each child reports the training loop's held-out metrics (emotion / style macro-F1,
BLEU, ROUGE-L, METEOR, BERTScore, the majority-class emotion F1) and, measured here on its export,
the Mix-Former's compute share of a reply (``omni.omnichat.evaluate.fusion_cost``). With ``--seeds
N`` every config runs N times (``omnichat.seed`` = 0..N-1) and the table shows the median and range.

The parent run (same experiment as the configs) logs ``ablation_table.md``, ``ablation_table.png``
and ``ablation_table.json``; they are also written to ``<data.output_dir>/../report/``. The
``what differs`` column is computed: the ``omnichat.*`` fields that differ from the reference config.
``--make-real-fixture`` writes the generated DailyTalk-layout corpus (tones with text, not speech)
for a ``dailytalk`` source whose folder is missing; without it a missing folder is an error.
"""
from __future__ import annotations

import json
import statistics
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
from omni.config import Config, flatten_params

USAGE = __doc__ + ("\nOptions: --config DIR|YAML [--only NAMES] [--seeds N] [--reference NAME] "
                   "[--make-real-fixture] [key=value ...]")
COLUMNS = [("emotion_f1_macro", "emotion F1"), ("style_f1_macro", "style F1"), ("bleu", "BLEU"),
           ("rouge_l", "ROUGE-L"), ("meteor", "METEOR"), ("bertscore_f1", "BERTScore"),
           ("fusion_compute_share", "fusion share")]
EXTRA = ("emotion_majority_f1_macro", "eval_turns", "loss", "fusion_ms_per_audio_s", "stage_wall_s")
DATA_SECTIONS = ("data", "synth", "tokenizer")


def config_files(path: str, only: str | None) -> list[Path]:
    p = Path(path)
    files = sorted(p.glob("*.yaml")) if p.is_dir() else [p]
    if not files:
        raise JobError(f"no *.yaml configs in {p}")
    if only:
        want = [n.strip() for n in only.split(",") if n.strip()]
        missing = [n for n in want if n not in {f.stem for f in files}]
        if missing:
            raise JobError(f"--only {missing} not in {p} (have {', '.join(f.stem for f in files)})")
        files = [f for f in files if f.stem in want]
    return files


def differs(ref: Config, cfg: Config) -> str:
    """The ``omnichat.*`` fields of ``cfg`` that differ from ``ref`` (``-`` when none)."""
    a, b = flatten_params(ref), flatten_params(cfg)
    keys = sorted(k for k in set(a) | set(b) if k.startswith("omnichat.") and a.get(k) != b.get(k))
    return ", ".join(f"{k.removeprefix('omnichat.')}={b.get(k)}" for k in keys) or "-"


def check_shared_data(cfgs: dict[str, Config]) -> Config:
    first_name, first = next(iter(cfgs.items()))
    for name, c in cfgs.items():
        for sec in DATA_SECTIONS:
            if getattr(c, sec).model_dump() != getattr(first, sec).model_dump():
                raise JobError(f"configs {first_name} and {name} differ in {sec}.*: a comparison needs the same data")
        if c.mlflow.experiment != first.mlflow.experiment:
            raise JobError(f"configs {first_name} and {name} log to different MLflow experiments")
    return first


def prepare(cfg: Config, make_fixture: bool) -> dict:
    for src in cfg.data.sources:
        if src.kind == "dailytalk" and src.path and not Path(src.path).exists():
            if not make_fixture:
                raise JobError(f"source {src.name!r}: {src.path} does not exist (point it at DailyTalk, or pass "
                               f"--make-real-fixture for the generated DailyTalk-layout fixture)")
            from data_prep.sources.fixtures import make_dailytalk
            make_dailytalk(Path(src.path), dialogues=12)
    from data_prep.pipeline import run
    t0 = time.time()
    m = run(cfg, progress=False)
    return {"prepare_s": time.time() - t0, "samples": sum(s["samples"] for s in m["shards"])}


def measure_fusion(cfg: Config, export_dir: str) -> dict:
    """Mix-Former compute share of a reply, on the export and the first held-out turn."""
    import torch

    from omni.omnichat.evaluate import fusion_cost
    from omni.omnichat.model import load_omnichat
    from omni.omnichat.train import heldout_examples
    torch.set_num_threads(1)
    model, _ = load_omnichat(export_dir)
    ex = heldout_examples(cfg, model.vocab, 1)
    if not ex:
        return {}
    return fusion_cost(model, ex[0], repeats=10)


def _fmt(vals: list[float], scale: float = 1.0, digits: int = 3) -> str:
    if not vals:
        return "n/a"
    vals = [v * scale for v in vals]
    med = statistics.median(vals)
    if len(vals) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} [{min(vals):.{digits}f}-{max(vals):.{digits}f}]"


def table(rows: list[dict], seeds: int) -> str:
    """Markdown: one line per config, median [min-max] over seeds."""
    head = ["config", "what differs"] + [c for _, c in COLUMNS] + ["majority emotion F1", "held-out turns"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["config"], r["differs"]]
        for key, _ in COLUMNS:
            vals = [m[key] for m in r["runs"] if key in m]
            scale = 100.0 if key == "fusion_compute_share" else 1.0
            cells.append(_fmt(vals, scale, 1 if key in ("bleu", "rouge_l", "meteor", "bertscore_f1") or scale > 1 else 3)
                         + (" %" if scale > 1 and vals else ""))
        cells.append(_fmt([m["emotion_majority_f1_macro"] for m in r["runs"] if "emotion_majority_f1_macro" in m]))
        cells.append(_fmt([m["eval_turns"] for m in r["runs"] if "eval_turns" in m], digits=0))
        lines.append("| " + " | ".join(cells) + " |")
    note = (f"\nMedian over {seeds} seeds [min-max]. " if seeds > 1 else "\nOne seed per config. ") + \
        "F1: macro over the reference labels present (0-1); text metrics 0-100; fusion share: Mix-Former / " \
        "(Mix-Former + LLM) time of one reply.\n"
    return "\n".join(lines) + "\n" + note


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    metrics = [("emotion_f1_macro", "emotion F1", 1.0), ("style_f1_macro", "style F1", 1.0),
               ("rouge_l", "ROUGE-L / 100", 0.01), ("bertscore_f1", "BERTScore / 100", 0.01)]
    names = [r["config"] for r in rows]
    y = np.arange(len(names))
    h = 0.8 / len(metrics)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.6))
    for i, (key, label, scale) in enumerate(metrics):
        med, lo, hi = [], [], []
        for r in rows:
            v = [m[key] * scale for m in r["runs"] if key in m] or [float("nan")]
            med.append(statistics.median(v))
            lo.append(statistics.median(v) - min(v))
            hi.append(max(v) - statistics.median(v))
        ax.barh(y + (i - (len(metrics) - 1) / 2) * h, med, height=h, label=label,
                xerr=[lo, hi] if any(len(r["runs"]) > 1 for r in rows) else None, capsize=2)
    base = [statistics.median([m["emotion_majority_f1_macro"] for m in r["runs"]] or [float("nan")])
            for r in rows if any("emotion_majority_f1_macro" in m for m in r["runs"])]
    if base:
        ax.axvline(statistics.median(base), color="grey", ls="--", lw=1, label="majority emotion F1")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("score (median over seeds; bars: range)")
    ax.set_title("OmniChat comparisons (CPU scale)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    import mlflow

    from jobs.train import run_stage

    path, overrides, flags = parse_args(argv if argv is not None else sys.argv[1:], USAGE,
                                        {"only": None, "seeds": "1", "reference": "experts_all",
                                         "make_real_fixture": False})
    try:
        seeds = int(flags["seeds"])
    except ValueError:
        raise JobError(f"--seeds must be a whole number, got {flags['seeds']!r}") from None
    if seeds < 1:
        raise JobError("--seeds must be >= 1")
    files = config_files(path, flags["only"])
    cfgs = {f.stem: load(str(f), overrides) for f in files}
    ref_file = (Path(path) / f"{flags['reference']}.yaml") if Path(path).is_dir() else None
    ref = load(str(ref_file), overrides) if ref_file is not None and ref_file.is_file() else next(iter(cfgs.values()))
    base = check_shared_data(cfgs)
    start_logs(base, "omnichat_ablations")
    init_ray()
    data = prepare(base, flags["make_real_fixture"])
    exp_id = setup_mlflow(base)
    client = mlflow.MlflowClient()
    parent = client.create_run(exp_id, run_name=f"omnichat-ablations-{time.strftime('%Y%m%d-%H%M%S')}",
                               tags={"kind": "omnichat_ablations"}).info.run_id
    client.log_param(parent, "configs", ",".join(cfgs))
    client.log_param(parent, "seeds", str(seeds))
    client.log_param(parent, "overrides", " ".join(overrides)[:6000] or "-")
    client.log_param(parent, "reference", flags["reference"])
    rows = []
    t0 = time.time()
    try:
        for name, cfg in cfgs.items():
            row = {"config": name, "differs": differs(ref, cfg), "runs": []}
            for s in range(seeds):
                c = cfg.model_copy(deep=True)
                c.omnichat.seed = cfg.omnichat.seed + s
                if seeds > 1:
                    c.name = f"{cfg.name}-seed{s}"
                    c.train.output_dir = str(Path(cfg.train.output_dir) / f"seed{s}")
                print(f"[{name} seed {s}] training {c.omnichat.max_steps} steps", flush=True)
                res = run_stage(c, "omnichat", parent_run_id=parent)
                m = {k: float(v) for k, v in res["metrics"].items() if isinstance(v, (int, float))}
                fus = measure_fusion(c, res["export_dir"])
                for k in ("fusion_compute_share", "fusion_ms_per_audio_s", "fusion_ms", "llm_turn_ms"):
                    if k in fus:
                        m[k] = float(fus[k])
                        client.log_metric(res["run_id"], k, float(fus[k]))
                client.set_tag(res["run_id"], "ablation", name)
                m["stage_wall_s"] = client.get_run(res["run_id"]).data.metrics.get("stage_wall_s", float("nan"))
                m["run_id"] = res["run_id"]
                row["runs"].append(m)
                print(f"[{name} seed {s}] " + json.dumps({k: round(m[k], 4) for k, _ in COLUMNS if k in m}), flush=True)
            rows.append(row)
    except BaseException:
        client.set_terminated(parent, "FAILED")
        raise
    md = table(rows, seeds)
    out = Path(base.data.output_dir).parent / "report"
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation_table.md").write_text(md)
    (out / "ablation_table.json").write_text(json.dumps({"rows": rows, "seeds": seeds, "overrides": overrides,
                                                         "data": data, "wall_s": time.time() - t0}, indent=1))
    plot(rows, out / "ablation_table.png")
    for f in ("ablation_table.md", "ablation_table.json", "ablation_table.png"):
        client.log_artifact(parent, str(out / f))
    for r in rows:  # the parent's metrics: one per config and column (median over seeds)
        for key, _ in COLUMNS:
            vals = [m[key] for m in r["runs"] if key in m]
            if vals:
                client.log_metric(parent, f"{r['config']}.{key}", statistics.median(vals))
    client.set_terminated(parent, "FINISHED")
    print(md, flush=True)
    print_summary({"parent_run_id": parent, "children": sum(len(r["runs"]) for r in rows),
                   "table": str(out / "ablation_table.md"), "plot": str(out / "ablation_table.png"),
                   "wall_s": round(time.time() - t0, 1)})
    return 0


if __name__ == "__main__":
    run_main(main)
