"""jobs.evaluate: a tiny saved checkpoint on tiny held-out shards reproduces its golden report;
the report renders; bad input gives clear messages; the Ray Data path gives the in-process rows.

Regenerate the golden file after an intended change: ``OMNI_UPDATE_GOLDEN=1 pytest tests/test_evaluate.py``.
"""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from jobs import evaluate as E
from jobs._common import JobError
from omni.config import Config
from omni.metrics.report import flat_metrics, markdown, plot_all, summarize

GOLDEN = Path(__file__).parent / "golden" / "eval_report.json"
SR = 16000

# (speaker, text, start_s, end_s, style...) — rec B has an interruption and a backchannel
DIALOGUES = {
    "eval-a": (7.2, [("user", "hello there, how are you today?", 0.2, 1.8, {}),
                     ("assistant", "i am fine, thank you very much.", 2.1, 3.9, {"emotion": "happy"}),
                     ("user", "what a lovely day it is outside.", 4.2, 5.4, {}),
                     ("assistant", "the weather is nice and warm.", 5.6, 7.0, {"pitch": "high"})]),
    "eval-b": (6.0, [("user", "could you tell me the time please?", 0.2, 1.6, {}),
                     ("assistant", "let us talk about music and films.", 1.9, 3.5,
                      {"emotion": "sad", "pitch": "low", "interrupted": True}),
                     ("user", "hello there", 3.0, 4.0, {}),
                     ("assistant", "i am fine, thank you very much.", 4.4, 5.8, {"speed": "fast"}),
                     ("user", "yes", 5.0, 5.2, {"kind": "backchannel"})]),
}


def write_heldout(export_dir: Path, data_dir: Path) -> None:
    """Two two-channel conversations as a held-out shard + manifest (the pipeline's layout)."""
    from omni.shards import format as S
    from omni.model import load_export
    from omni.speech_tokenizer import load_speech_tokenizer
    from serve_app.tiny_export import demo_wave

    exp = load_export(export_dir)
    speech = load_speech_tokenizer(exp.speech_tokenizer_dir)
    samples = []
    for n, (key, (dur, turns)) in enumerate(sorted(DIALOGUES.items())):
        ch = {"user": np.zeros(int(dur * SR), np.float32), "assistant": np.zeros(int(dur * SR), np.float32)}
        meta_turns = []
        for i, (spk, text, s, e, extra) in enumerate(turns):
            a, b = round(s * SR), round(e * SR)
            ch[spk][a:b] += demo_wave((b - a) / SR + 0.01, seed=10 * n + i)[: b - a]
            meta_turns.append({"speaker": spk, "text": text, "spoken_text": text, "start_s": s, "end_s": e,
                               "emotion": "neutral", "pitch": "normal", "speed": "normal", "kind": "turn",
                               "interrupted": False, **extra, "text_ids": exp.text_tokenizer.encode(text)})
        meta = {"id": key, "source": "synthetic", "scenario": "test", "sample_rate_hz": SR, "duration_s": dur,
                "frame_rate_hz": speech.frame_rate_hz, "turns": meta_turns, "events": []}
        samples.append({"__key__": key, "json": json.dumps(meta, sort_keys=True).encode(),
                        **{f"{c}.flac": S.encode_flac(ch[c]) for c in ch},
                        **{f"{c}_units.npy": S.encode_npy(speech.encode(ch[c]).astype(np.int16)) for c in ch}})
    entry = S.write_shard(data_dir / "shards" / "heldout" / "synthetic-000000.tar", samples)
    entry.update(path="shards/heldout/synthetic-000000.tar", split="heldout", source="synthetic")
    (data_dir / "manifest.json").write_text(json.dumps({"shards": [entry], "sources": {"synthetic": {"weight": 1.0}}}))


@pytest.fixture(scope="module")
def tiny_eval(tmp_path_factory):
    from serve_app.tiny_export import build_tiny_export

    root = tmp_path_factory.mktemp("eval")
    export = build_tiny_export(root / "export", num_units=32, speech_chunk=10)
    write_heldout(export, root / "data")
    return root, export


def _cfg(root: Path, monkeypatch, **eval_kw) -> Config:
    uri = f"sqlite:///{root}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    cfg = Config()
    cfg.data.output_dir, cfg.train.output_dir = str(root / "data"), str(root / "ckpt")
    cfg.mlflow.tracking_uri, cfg.mlflow.artifact_dir, cfg.mlflow.experiment = uri, str(root / "mlruns"), "eval-test"
    cfg.eval.output_dir = str(root / "out")
    for k, v in {"ray": False, "max_new_tokens": 8, "tts_max_units": 20, "duplex_conversations": 2,
                 "text_metrics": ["bleu", "rouge_l", "meteor"], **eval_kw}.items():
        setattr(cfg.eval, k, v)
    return cfg


def deterministic(report: dict) -> dict:
    """The report without wall-clock figures and machine paths."""
    r = {k: v for k, v in report.items() if k not in ("seconds", "export_dir", "checkpoint", "mlflow_run_id")}
    r["duplex"] = {k: v for k, v in r["duplex"].items() if k not in ("rtf", "step_ms_p50")}
    return json.loads(json.dumps(r))


def _assert_close(got, want, path="report"):
    if isinstance(want, dict):
        assert set(got) == set(want), f"{path}: keys differ: {sorted(set(got) ^ set(want))}"
        for k in want:
            _assert_close(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert len(got) == len(want), f"{path}: length {len(got)} != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            _assert_close(g, w, f"{path}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-4, abs=1e-6), path
    else:
        assert got == want, path


@pytest.mark.slow
def test_golden_report_and_mlflow(tiny_eval, monkeypatch):
    import mlflow

    root, export = tiny_eval
    cfg = _cfg(root, monkeypatch)
    rep = E.evaluate(cfg, str(export))
    got = deterministic(rep)
    if os.environ.get("OMNI_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    _assert_close(got, json.loads(GOLDEN.read_text()))
    # the figures are real: every section measured something, only the judge (off) is missing
    assert rep["heldout_records"] == 2 and set(rep["losses"]) == {"align", "half_duplex", "full_duplex_3", "full_duplex_2"}
    # 5 user turns (one a backchannel) are transcribed, 4 assistant turns synthesised, 4 replies scored
    assert rep["asr"]["utterances"] == 5 and rep["tts"]["utterances"] == 4 and rep["dialogue"]["sentences"] == 4
    assert rep["missing"] == ["dialogue.bertscore_f1: off (eval.text_metrics)",
                              "judge: no judge endpoint configured (eval.judge_endpoint)"]
    assert rep["duplex"]["conversations"] == 2 and rep["duplex"]["rtf"] > 0
    ref = rep["duplex"]["reference"]   # the data's own timeline (see test_reference_timeline_figures)
    assert sorted(ref["response_latencies_s"]) == pytest.approx([0.2, 0.3, 0.3, 0.4])
    assert ref["stop_latencies_s"] == pytest.approx([0.5])
    out = Path(cfg.eval.output_dir)
    assert {"eval_losses.png", "eval_style_confusion.png"} <= set(rep["plots"])
    assert all((out / f).stat().st_size > 1000 for f in rep["plots"])
    assert "## Full duplex" in (out / "report.md").read_text()
    client = mlflow.MlflowClient()
    run = client.get_run(rep["mlflow_run_id"])
    assert run.info.run_name == "tiny-evaluate"            # a bare export folder: a new evaluate run
    assert run.data.metrics["eval_asr_wer"] == pytest.approx(rep["asr"]["wer"])
    assert "eval_judge_score" not in run.data.metrics and "eval_dialogue_bertscore_f1" not in run.data.metrics
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "eval")}
    assert {"eval/report.json", "eval/report.md", "eval/eval_losses.png"} <= arts
    table = E.compare([run.info.run_id, run.info.run_id], out / "cmp")
    assert "| eval_asr_wer |" in table and (out / "cmp" / "compare.json").exists()


# expected figures of the reference timelines above, by hand: rec A responses 0.3 (1.8->2.1) and 0.2
# (5.4->5.6); rec B 0.3 (1.6->1.9); user 'hello there' (3.0) interrupts 1.9-3.5: stop 0.5 s; then 0.4 (4.0->4.4)
def test_reference_timeline_figures():
    from omni.metrics.duplex import (
        assistant_segments_from_meta,
        duplex_metrics,
        user_turns_from_meta,
    )

    convs = []
    for dur, turns in DIALOGUES.values():
        meta = {"turns": [{"speaker": s, "text": t, "start_s": a, "end_s": b, **x} for s, t, a, b, x in turns]}
        convs.append({"user_turns": user_turns_from_meta(meta), "assistant": assistant_segments_from_meta(meta),
                      "duration_s": dur})
    m = duplex_metrics(convs)
    assert sorted(m["response_latencies_s"]) == pytest.approx([0.2, 0.3, 0.3, 0.4])
    assert m["stop_latencies_s"] == pytest.approx([0.5]) and m["yield_rate"] == 1.0
    assert m["turn_taking_success_rate"] == 1.0 and m["false_barge_in_rate"] == 0.0


def test_report_renders_with_missing(tmp_path):
    rows = [{"key": "k1", "losses": {"align": {"loss": [6.0, 3], "user_text": [6.0, 3]}},
             "asr": [{"ref": "hello there", "hyp": "hello"}], "tts": [],
             "respond": [{"context": "user: hi", "ref": "i am fine", "hyp": "i am fine",
                          "ref_style": {"emotion": "happy", "pitch": "", "speed": ""},
                          "pred_style": {"emotion": "sad", "pitch": "normal", "speed": "normal"}}],
             "duplex": None}]
    cfg = Config().eval
    cfg.text_metrics = ["bleu"]
    rep = {"checkpoint": "x", "heldout_records": 1, **summarize(rows, cfg)}
    assert rep["losses"] == {"align": {"loss": 2.0, "user_text": 2.0}} and rep["asr"]["wer"] == 0.5
    assert "missing" in rep["tts"] and "missing" in rep["judge"] and rep["duplex"]["conversations"] == 0
    assert rep["dialogue"]["rouge_l"] == {"missing": "off (eval.text_metrics)"}
    assert rep["style"]["emotion"]["accuracy"] == 0.0 and "missing" in rep["style"]["pitch"]
    md = markdown(rep)
    assert "WER 0.500" in md and "missing (no assistant turns" in md and "| emotion | 0.000 |" in md
    flat = flat_metrics(rep)
    assert flat["eval_asr_wer"] == 0.5 and flat["eval_align_loss"] == 2.0
    assert not any(k.startswith(("eval_tts", "eval_judge", "eval_duplex", "eval_dialogue_rouge")) for k in flat)
    assert plot_all(rep, tmp_path) == ["eval_losses.png", "eval_style_confusion.png"]
    # a configured TTS-intelligibility ASR that cannot load: that section is missing, the rest is scored
    bad = summarize([{**rows[0], "tts_missing": "eval.tts_asr=/x cannot load: no model.bin"}], cfg)
    assert bad["tts"] == {"missing": "eval.tts_asr=/x cannot load: no model.bin"} and bad["asr"]["wer"] == 0.5


def test_bad_input_messages(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path, monkeypatch)
    with pytest.raises(JobError, match="checkpoint not found: .*no export.json"):
        E.evaluate(cfg, str(tmp_path / "nope"))
    with pytest.raises(JobError, match="no --checkpoint given and no finished curriculum"):
        E.evaluate(cfg, None)
    with pytest.raises(JobError, match="no manifest at .*prepare_data"):
        E.heldout_items(cfg)
    with pytest.raises(JobError, match="compare needs run ids"):
        E.main(["compare"])
    with pytest.raises(JobError, match="not found"):
        E.compare(["0123456789abcdef"], tmp_path)


@pytest.mark.slow
def test_ray_data_path_matches_golden(tiny_eval, monkeypatch):
    """Ray Data actor pool (map_batches) gives the rows of the in-process golden run."""
    import ray

    root, export = tiny_eval
    cfg = _cfg(root, monkeypatch)
    items = E.heldout_items(cfg)
    assert [(Path(it["shard"]).name, it["key"], it["duplex"]) for it in items] == [
        ("synthetic-000000.tar", "eval-a", True), ("synthetic-000000.tar", "eval-b", True)]
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        rows = E.run_ray(export, cfg, items)
    finally:
        ray.shutdown()
    assert sorted(r["key"] for r in rows) == ["eval-a", "eval-b"]
    got = deterministic({"duplex": {}, **summarize(rows, cfg.eval)})
    golden = json.loads(GOLDEN.read_text())
    for section in ("losses", "asr", "tts", "dialogue", "style", "duplex"):
        _assert_close(got[section], golden[section], section)


def test_a_crashing_metric_is_missing_not_fatal():
    from omni.metrics.report import _try

    def bertscore(*_):
        raise AttributeError("BertTokenizer has no attribute build_inputs_with_special_tokens")

    assert _try(bertscore) == {"missing": "bertscore failed: AttributeError: BertTokenizer has no attribute "
                                          "build_inputs_with_special_tokens"}
    assert _try(lambda: 3.0) == 3.0


def test_metric_vs_step_from_run_history(tmp_path, monkeypatch):
    import mlflow

    from jobs._common import setup_mlflow

    cfg = _cfg(tmp_path, monkeypatch)
    exp_id = setup_mlflow(cfg)
    client = mlflow.MlflowClient()
    parent = client.create_run(exp_id, run_name="curriculum").info.run_id
    child = client.create_run(exp_id, run_name="align", tags={"mlflow.parentRunId": parent}).info.run_id
    for step, loss in enumerate([5.0, 4.0, 3.5], start=1):
        client.log_metric(child, "loss", loss, step=step)
    client.log_metric(child, "heldout_loss", 4.4, step=3)      # one point: no curve
    hist = E.run_history(client, parent)
    assert hist == {"loss": {"align": [(1, 5.0), (2, 4.0), (3, 3.5)]}}
    rep = {"losses": {}, "duplex": {}, "style": {"missing": "x"}}
    assert plot_all(rep, tmp_path, hist) == ["eval_history.png"]
    assert (tmp_path / "eval_history.png").stat().st_size > 1000
