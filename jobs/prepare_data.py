"""Prepare training data: sources → Ray Data pipeline → WebDataset shards + manifest.

    python -m jobs.prepare_data --config configs/tiny.yaml [synth.num_dialogues=200 ...]
    ray job submit --working-dir . -- python -m jobs.prepare_data --config configs/tiny.yaml

Writes ``data.output_dir``: ``shards/<split>/<source>-NNNNNN.tar``, ``manifest.json``,
``rejects.jsonl``, ``tokenizers/``. Re-running with the same config skips finished shards.
"""
from __future__ import annotations

import sys

from jobs._common import init_ray, load, parse_args, print_summary, run_main, start_logs
from omni.config import ConfigError

USAGE = __doc__ + ("\nOptions: --config PATH [--no-progress] [--engine ray|local] [key=value ...]\n"
                   "  --engine local: the same pipeline functions in this process, without Ray (a loaded machine\n"
                   "  where Ray's node cannot start, debugging); the shards and manifest are the same")


def main(argv: list[str] | None = None) -> int:
    from data_prep.pipeline import run

    cfg_path, overrides, flags = parse_args(argv if argv is not None else sys.argv[1:], USAGE,
                                            {"no_progress": False, "engine": "ray"})
    cfg = load(cfg_path, overrides)
    start_logs(cfg, "prepare_data")
    if any(src.kind == "synthetic" for src in cfg.data.sources):
        from data_prep.synth.voices import check_voices
        try:
            check_voices(cfg.synth)  # a bad or held-out voice: one line before Ray starts
        except ValueError as e:
            raise ConfigError(str(e)) from None
    if flags["engine"] not in ("ray", "local"):
        raise ConfigError(f"--engine must be ray or local, got {flags['engine']!r}")
    if flags["engine"] == "ray":
        init_ray()
    m = run(cfg, progress=not flags["no_progress"], engine=flags["engine"])
    summary = {"output_dir": cfg.data.output_dir, "shards": len(m["shards"]),
               "samples": sum(s["samples"] for s in m["shards"]), "sources": m["sources"], **m["run"]}
    if m.get("behaviours"):
        summary["behaviours"] = m["behaviours"]
    print_summary(summary)
    return 0


if __name__ == "__main__":
    run_main(main)
