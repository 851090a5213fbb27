"""Prepare training data: sources → Ray Data pipeline → WebDataset shards + manifest.

    python -m jobs.prepare_data --config configs/tiny.yaml [synth.num_dialogues=200 ...]
    ray job submit --working-dir . -- python -m jobs.prepare_data --config configs/tiny.yaml

Writes ``data.output_dir``: ``shards/<split>/<source>-NNNNNN.tar``, ``manifest.json``,
``rejects.jsonl``, ``tokenizers/``. Re-running with the same config skips finished shards.
"""
from __future__ import annotations

import sys

from jobs._common import init_ray, load, parse_args, print_summary, run_main, start_logs

USAGE = __doc__ + "\nOptions: --config PATH [--no-progress] [key=value ...]"


def main(argv: list[str] | None = None) -> int:
    from data_prep.pipeline import run

    cfg_path, overrides, flags = parse_args(argv if argv is not None else sys.argv[1:], USAGE,
                                            {"no_progress": False})
    cfg = load(cfg_path, overrides)
    start_logs(cfg, "prepare_data")
    init_ray()
    m = run(cfg, progress=not flags["no_progress"])
    summary = {"output_dir": cfg.data.output_dir, "shards": len(m["shards"]),
               "samples": sum(s["samples"] for s in m["shards"]), "sources": m["sources"], **m["run"]}
    print_summary(summary)
    return 0


if __name__ == "__main__":
    run_main(main)
