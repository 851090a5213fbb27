"""The walking skeleton, end to end on a local Ray instance (``make demo``).

    python -m jobs.demo --config configs/tiny.yaml [--keep] [key=value ...]

  1. synthesise spoken dialogues (espeak-ng voices) → Ray Data → WebDataset shards
  2. curriculum: align → half_duplex → full_duplex_3 → full_duplex_2
     (Ray Train, DeepSpeed ZeRO-2, 2 CPU workers; MLflow parent + nested runs)
  3. evaluate the final export on held-out dialogues (report + plots in MLflow)
  4. register it in the MLflow model registry (alias from ``mlflow.alias``)
  5. serve ``models:/NAME@ALIAS`` on Ray Serve, stream a held-out user channel over
     ``WS /v1/duplex`` in real time, save the reply, measure latency
  6. shut down and print what was made and where to look

Without ``--keep`` the run's output folder (``outputs/<name>``) is cleared first, so every
stage really runs; the MLflow store keeps the history of earlier demos.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from jobs._common import init_ray, load, mlflow_uri, parse_args, run_main, start_logs
from omni.asr import WhisperASR
from omni.metrics.duplex import talk_back, user_turns_from_meta

USAGE = __doc__ + "\nOptions: --config PATH [--keep] [key=value ...]"


def _step(n: int, title: str) -> float:
    print(f"\n=== [{n}/6] {title}", flush=True)
    return time.time()


def held_out_user_turn(records, after_s: float = 6.0) -> tuple[np.ndarray, float]:
    """The user channel of the first held-out record's first user turn that expects an answer,
    followed by ``after_s`` of silence (room for the reply); returns (audio, turn end in s)."""
    for rec in records:
        turns = [t for t in user_turns_from_meta(rec["meta"]) if t["expects_response"]]
        if turns:
            end = turns[0]["end_s"]
            user = np.asarray(rec["user"], np.float32)[: int(round(end * 16000))]
            return np.concatenate([user, np.zeros(int(after_s * 16000), np.float32)]), end
    raise RuntimeError("no held-out dialogue has a user turn that expects an answer: check data.heldout_fraction")


def main(argv: list[str] | None = None) -> int:
    from data_prep import pipeline
    from omni.shards import ShardStream
    from jobs import curriculum, evaluate, register
    from jobs import serve as serve_job

    cfg_path, overrides, flags = parse_args(argv if argv is not None else sys.argv[1:], USAGE, {"keep": False})
    cfg = load(cfg_path, overrides, job="demo")
    log = start_logs(cfg, "demo")  # Ray, DeepSpeed, MLflow, ... say what they say there, not here
    out_root = Path(cfg.data.output_dir).resolve().parent
    if not flags["keep"]:
        for d in {Path(cfg.data.output_dir), Path(cfg.train.output_dir), Path(cfg.train.storage_path),
                  Path(cfg.eval.output_dir)}:
            shutil.rmtree(d, ignore_errors=True)
    out_root.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t_all = time.time()
    init_ray()

    t = _step(1, f"data: {cfg.synth.num_dialogues} synthetic dialogues → shards in {cfg.data.output_dir}")
    manifest = pipeline.run(cfg)
    timings["data_s"] = time.time() - t
    n_samples = sum(s["samples"] for s in manifest["shards"])
    print(f"    {len(manifest['shards'])} shards, {n_samples} dialogues, "
          f"{sum(s['hours'] for s in manifest['sources'].values()) * 60:.1f} min of audio, "
          f"{sum(s['rejected'] for s in manifest['sources'].values())} rejected", flush=True)

    t = _step(2, "curriculum: align → half_duplex → full_duplex_3 → full_duplex_2 (Ray Train + DeepSpeed ZeRO-"
                 f"{cfg.train.zero_stage}, {cfg.train.num_workers} workers)")
    state = curriculum.run_curriculum(cfg, restart=not flags["keep"])
    timings["train_s"] = time.time() - t
    for st, info in state["stages"].items():
        print(f"    {st:14s} train loss {info['loss']:.3f}   held-out loss {info['heldout_loss'] or float('nan'):.3f}"
              f"   ({info['wall_s']:.0f} s)", flush=True)

    t = _step(3, "evaluate on held-out dialogues")
    report = evaluate.evaluate(cfg)
    timings["eval_s"] = time.time() - t
    asr = report["asr"]
    print(f"    held-out loss: " + ", ".join(f"{k} {v['loss']:.3f}" for k, v in report["losses"].items()), flush=True)
    if "wer" in asr:
        print(f"    ASR (model's own) WER {asr['wer']:.2f}, CER {asr['cer']:.2f}; duplex RTF "
              f"{report['duplex']['rtf']:.3f}", flush=True)

    t = _step(4, "register in the MLflow model registry")
    reg = register.register(cfg)
    timings["register_s"] = time.time() - t
    print(f"    {reg['registry_uri']} (version {reg['version']})", flush=True)

    t = _step(5, f"serve {reg['registry_uri']} on Ray Serve and talk to it over WebSocket")
    from serve_app.client import stream_wav
    import soundfile as sf

    base = serve_job.start(cfg_path, list(overrides) + [f"serve.model={reg['registry_uri']}"])
    user, user_end_s = held_out_user_turn(ShardStream(cfg.data.output_dir, "heldout", shuffle_buffer=1,
                                                      loop=False, audio=True))
    in_wav, reply_wav = out_root / "demo_user.wav", out_root / "demo_reply.wav"
    sf.write(in_wav, user, 16000, subtype="PCM_16")
    stats = stream_wav(base.replace("http", "ws", 1) + "/v1/duplex", in_wav, reply_wav, realtime=True)
    timings["serve_s"] = time.time() - t

    _step(6, "shut down")
    from ray import serve
    import ray
    serve.shutdown()
    ray.shutdown()
    timings["total_s"] = time.time() - t_all

    reply = sf.read(reply_wav)[0] if reply_wav.exists() else np.zeros(0)
    heard = talk_back(reply, 16000, user_end_s) if reply.size else {"answered": False}
    transcript = WhisperASR().transcribe_text(reply, 16000) if heard.get("voiced_reply_s") else ""
    summary = {
        "data_dir": str(Path(cfg.data.output_dir).resolve()),
        "final_export": state["final_export"],
        "eval_report": str(Path(cfg.eval.output_dir).resolve() / "report.md"),
        "registered_model": reg["registry_uri"],
        "user_wav": str(in_wav), "reply_wav": str(reply_wav),
        "reply_s": round(len(reply) / 16000, 2),
        "talk_back": heard, "reply_transcript_whisper": transcript, "reply_text_stream": stats["text"],
        "latency_ms_p50": stats["latency_ms_p50"], "latency_ms_p90": stats["latency_ms_p90"],
        "underruns": stats["underruns"], "ws_errors": stats["errors"],
        "mlflow_ui": f"mlflow ui --backend-store-uri {mlflow_uri(cfg)}",
        **{k: round(v, 1) for k, v in timings.items()},
    }
    print("\n=== done. What was made and where to look:")
    for k in ("data_dir", "final_export", "eval_report", "registered_model", "user_wav", "reply_wav"):
        print(f"    {k:17s} {summary[k]}")
    print(f"    reply            {summary['reply_s']} s of assistant audio; chunk latency p50 "
          f"{summary['latency_ms_p50']} ms, p90 {summary['latency_ms_p90']} ms, {summary['underruns']} underruns")
    if heard.get("turn_start_after_end_s") is not None:
        print(f"    talks back       {'yes' if heard['answered'] else 'NO'}: voice starts "
              f"{heard['turn_start_after_end_s']:.2f} s after the user's turn ends (goal <= 1.5 s), "
              f"{heard['voiced_reply_s']:.1f} s voiced (goal >= 1.5 s), {heard['voiced_during_user_s']:.2f} s "
              f"over the user (Silero VAD)")
    else:
        print(f"    talks back       NO: no voiced reply after the user's turn (Silero VAD)")
    print(f"    reply heard as   {transcript!r} (Whisper base); model's text stream {stats['text']!r}")
    print(f"    MLflow UI        {summary['mlflow_ui']}   (then open http://127.0.0.1:5000)")
    if log is not None:
        summary["log"] = str(log)
        print(f"    library logs     {log} (Ray, DeepSpeed, MLflow, warnings; OMNI_VERBOSE=1 shows them here)")
    print(f"    wall time        {summary['total_s']:.0f} s (data {summary['data_s']:.0f}, train "
          f"{summary['train_s']:.0f}, eval {summary['eval_s']:.0f}, serve {summary['serve_s']:.0f})")
    (out_root / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))
    return 0 if not stats["errors"] and summary["reply_s"] > 0 else 1   # talk_back is a figure, not a crash


if __name__ == "__main__":
    run_main(main)
