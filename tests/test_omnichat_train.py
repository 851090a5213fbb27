"""Stage ``omnichat`` end to end in one process: shards -> DeepSpeed loop -> export -> respond.

Slow (~1-3 min on 2 cores: DeepSpeed set-up, tiny experts, espeak): a tiny data set is written
in the shard layout (8 espeak-voiced emotion dialogues, BPE + mel-k-means tokenizers)."""
import json

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _make_data(root):
    from data_prep import shards as S
    from data_prep.synth.generate import generate_dialogue
    from omni.omnichat.synthetic import emotion_records
    from omni.speech.mel_kmeans import MelKMeansTokenizer

    recs, tok = emotion_records(8, generate_dialogue, seed=0)
    tok.save(root / "tokenizers" / "text")
    speech = MelKMeansTokenizer.fit([r["user"] for r in recs] + [r["assistant"] for r in recs], num_units=16)
    speech.save(root / "tokenizers" / "speech")
    entries = []
    for split, group in (("train", recs[:6]), ("heldout", recs[6:])):
        samples = []
        for r in group:
            samples.append({"__key__": r["key"].replace("-", "_"), "json": json.dumps(r["meta"]).encode(),
                            "user.flac": S.encode_flac(r["user"]), "assistant.flac": S.encode_flac(r["assistant"]),
                            "user_units.npy": S.encode_npy(speech.encode(r["user"])),
                            "assistant_units.npy": S.encode_npy(speech.encode(r["assistant"]))})
        e = S.write_shard(root / "shards" / f"{split}.tar", samples)
        entries.append({**e, "path": f"shards/{split}.tar", "split": split, "source": "synthetic"})
    (root / "manifest.json").write_text(json.dumps({"shards": entries, "sources": {"synthetic": {"weight": 1.0}}}))


def test_stage_omnichat_trains_exports_and_responds(tmp_path):
    from omni.config import load_config
    from omni.omnichat.respond import Responder
    from omni.omnichat.train import train_loop_omnichat
    from omni.train_loop import LoopContext

    _make_data(tmp_path / "data")
    cfg = load_config("configs/omnichat_tiny.yaml", [f"data.output_dir={tmp_path / 'data'}", "omnichat.max_steps=4",
                                                      "omnichat.eval_max_samples=2", "omnichat.max_new_tokens=6",
                                                      "train.warmup_steps=1", "data.shuffle_buffer=2"])
    reports = []
    ctx = LoopContext(report=lambda m, d: reports.append((dict(m), d)))
    metrics = train_loop_omnichat({"config": cfg.model_dump(mode="json"), "stage": "omnichat", "init_from": None,
                                   "export_dir": str(tmp_path / "export"), "mlflow": None}, ctx)
    assert [m["step"] for m, _ in reports] == [1, 2, 3, 4]
    assert reports[-1][1] is not None  # the last report carries the checkpoint
    for key in ("loss", "expert_weight_content", "expert_weight_para", "expert_weight_events", "emotion_f1_macro",
                "style_f1_macro", "bleu", "rouge_l", "eval_turns"):
        assert key in metrics and np.isfinite(metrics[key]), key
    assert metrics["synthetic_fraction"] == 1.0
    from data_prep.synth.tts import get_tts
    chat = Responder(tmp_path / "export", tts=get_tts("espeak"))
    out = chat.respond(np.random.default_rng(0).normal(0, 0.1, 24000).astype(np.float32))
    assert set(out["style"]) == {"emotion", "pitch", "speed"} and out["style_complete"]
    assert out["sample_rate_hz"] == 16000 and (out["audio"].size > 0) == bool(out["text"])
    assert len(out["history"]) == 2
