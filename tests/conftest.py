"""Shared fixtures. The tiny prepared data set is made once per test session, by the real
CLI (`python -m jobs.prepare_data`, its own local Ray), and reused read-only."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A prepared data set of 12 synthetic dialogues (shards, manifest, tokenizers)."""
    out = tmp_path_factory.mktemp("tiny_data") / "data"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    r = subprocess.run([sys.executable, "-m", "jobs.prepare_data", "--config", "configs/tiny.yaml", "--no-progress",
                        f"data.output_dir={out}", "synth.num_dialogues=12", "data.shard_max_samples=4",
                        "data.heldout_fraction=0.2"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    assert json.loads((out / "manifest.json").read_text())["shards"]
    return out
