"""``python -m data_prep.synth --config configs/tiny.yaml synth.num_dialogues=20 --out DIR``

Writes per dialogue ``DIR/syn-NNNNNN/{script.json,user.wav,assistant.wav,mix.wav}`` (mix: stereo,
left = user, right = assistant), ``DIR/rejects.jsonl`` for dialogues that failed QC (with reasons;
their audio is not written) and ``DIR/summary.json`` (with ``behaviours``: the kept dialogues' duplex
behaviour counts, :func:`data_prep.synth.duplex.count_behaviours`, summed).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def write_dialogue(record: dict, folder: Path) -> None:
    import soundfile as sf
    folder.mkdir(parents=True, exist_ok=True)
    sr = record["meta"]["sample_rate_hz"]
    (folder / "script.json").write_text(json.dumps(record["meta"], indent=1))
    sf.write(folder / "user.wav", record["user"], sr, subtype="PCM_16")
    sf.write(folder / "assistant.wav", record["assistant"], sr, subtype="PCM_16")
    sf.write(folder / "mix.wav", np.stack([record["user"], record["assistant"]], axis=1), sr, subtype="PCM_16")


def main(argv: list[str] | None = None) -> int:
    from omni.config import ConfigError, load_config
    from tqdm import tqdm

    from .generate import generate_dialogue

    ap = argparse.ArgumentParser(prog="python -m data_prep.synth", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=None, help="YAML config (default: built-in defaults)")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--start", type=int, default=0, help="first dialogue index")
    ap.add_argument("overrides", nargs="*", help="dotted overrides, e.g. synth.num_dialogues=20")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sc = cfg.synth
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kept, rejected, audio_s, t0 = 0, 0, 0.0, time.perf_counter()
    behaviours: dict[str, int] = {}
    with open(out / "rejects.jsonl", "w") as rej:
        for i in tqdm(range(args.start, args.start + sc.num_dialogues), desc="synth", unit="dlg"):
            try:
                rec = generate_dialogue(i, sc)
            except Exception as e:  # a bad script from an LLM etc.: record and go on
                rej.write(json.dumps({"key": f"syn-{i:06d}", "stage": "generate", "reason": f"{type(e).__name__}: {e}"}) + "\n")
                rejected += 1
                continue
            if not rec["meta"]["qc"]["passed"]:
                rej.write(json.dumps({"key": rec["key"], "stage": "qc", "reason": "; ".join(rec["meta"]["qc"]["reasons"])}) + "\n")
                rejected += 1
                continue
            write_dialogue(rec, out / rec["key"])
            kept += 1
            audio_s += rec["meta"]["duration_s"]
            for k, v in rec["meta"].get("behaviours", {}).items():
                behaviours[k] = behaviours.get(k, 0) + int(v)
    wall = time.perf_counter() - t0
    summary = {"kept": kept, "rejected": rejected, "audio_s": round(audio_s, 2), "wall_s": round(wall, 2),
               "realtime_factor_x": round(audio_s / max(wall, 1e-9), 1), "behaviours": behaviours, "out": str(out)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
