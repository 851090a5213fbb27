"""Speech tokenizers: mel k-means (fit, codec, silence, streaming, save/load, bad input) and
the S3 / Mimi adapters loaded from tiny random checkpoints saved by the tests themselves."""
from __future__ import annotations

import json

import numpy as np
import pytest

from omni.speech.quality import log_spectral_distance_db, mel_cepstral_distortion_db
from omni.speech_tokenizer import (
    MelKMeansTokenizer,
    SpeechTokenizer,
    SpeechTokenizerError,
    load_speech_tokenizer,
)

SR = 16000
HOP = 640


def speechlike(seconds: float, seed: int) -> np.ndarray:
    """Harmonic source with gliding F0, moving formants and syllable-rate loudness + pauses."""
    r = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 110 + 60 * r.random() + 25 * np.sin(2 * np.pi * (0.5 + r.random()) * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    f1 = 500 + 300 * np.sin(2 * np.pi * (1.5 + r.random()) * t + r.random() * 6)
    f2 = 1500 + 600 * np.sin(2 * np.pi * (1.1 + r.random()) * t + r.random() * 6)
    x = np.zeros_like(t)
    for h in range(1, 40):
        fh = h * f0
        gain = np.exp(-((fh - f1) / 200) ** 2) + 0.5 * np.exp(-((fh - f2) / 300) ** 2) + 0.02
        x += gain * np.sin(h * phase)
    x *= np.clip(np.sin(2 * np.pi * 3.5 * t + r.random() * 6), 0, None) ** 0.7
    x += 0.02 * r.standard_normal(t.size) * (x != 0)          # breathy noise in voiced parts
    x[int(0.45 * t.size): int(0.55 * t.size)] = 0.0            # a digital-silence pause
    return (0.2 * x / max(np.abs(x).max(), 1e-9)).astype(np.float32)


@pytest.fixture(scope="module")
def train_waves():
    return [speechlike(6.0, s) for s in range(4)]


@pytest.fixture(scope="module")
def tok(train_waves):
    return MelKMeansTokenizer.fit(train_waves, num_units=48, seed=0)


def test_protocol_and_constants(tok):
    assert isinstance(tok, SpeechTokenizer)
    assert (tok.sample_rate, tok.frame_rate_hz, tok.hop_samples) == (16000, 25.0, 640)
    assert tok.num_units == 48 and tok.silence_unit == 0


def test_fit_is_deterministic_under_seed(train_waves, tok):
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=2):         # thread count must not change the centroids
        again = MelKMeansTokenizer.fit(train_waves, num_units=48, seed=0)
    assert np.array_equal(again.centroids, tok.centroids)
    other = MelKMeansTokenizer.fit(train_waves, num_units=48, seed=1)
    assert not np.array_equal(other.centroids, tok.centroids)


def test_encode_decode_lengths_and_dtypes(tok):
    for n in (640, 641, 1279, 1280, 16000 + 17):
        units = tok.encode(speechlike(1.1, 9)[:n])
        assert units.dtype == np.int64 and units.shape == (n // HOP,)
        assert units.min() >= 0 and units.max() < tok.num_units
        audio = tok.decode(units)
        assert audio.dtype == np.float32 and audio.shape == (units.size * HOP,)
        assert np.isfinite(audio).all()
    assert tok.decode(np.zeros(0, np.int64)).shape == (0,)


def test_silence_maps_to_silence_unit_and_decodes_to_zeros(tok):
    assert np.all(tok.encode(np.zeros(SR, np.float32)) == tok.silence_unit)
    hiss = (1e-4 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)  # -80 dBFS
    assert np.all(tok.encode(hiss) == tok.silence_unit)
    speech = speechlike(2.0, 3)
    units = tok.encode(speech)
    assert (units != tok.silence_unit).mean() > 0.5          # speech is not called silence
    assert np.array_equal(tok.decode(np.full(20, tok.silence_unit)), np.zeros(20 * HOP, np.float32))


def test_round_trip_beats_random_units(tok):
    x = speechlike(4.0, 11)                                   # not in the training set
    units = tok.encode(x)
    n = units.size * HOP
    rng = np.random.default_rng(0)
    rand = rng.integers(1, tok.num_units, units.size)
    rand[units == tok.silence_unit] = tok.silence_unit       # same silences: judge speech only
    lsd, lsd_rand = (log_spectral_distance_db(x[:n], tok.decode(u)) for u in (units, rand))
    mcd, mcd_rand = (mel_cepstral_distortion_db(x[:n], tok.decode(u)) for u in (units, rand))
    assert lsd < 0.75 * lsd_rand, (lsd, lsd_rand)
    assert mcd < 0.75 * mcd_rand, (mcd, mcd_rand)
    assert log_spectral_distance_db(x, x) == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stream_encoder_equals_batch_for_random_chunkings(tok, seed):
    x = speechlike(3.0, 20 + seed)[: 3 * SR - 123]
    rng = np.random.default_rng(seed)
    enc, outs, pos = tok.stream_encoder(), [], 0
    while pos < x.size:
        n = int(rng.choice([0, 1, 7, 320, 640, 1000, 4000]))
        outs.append(enc.feed(x[pos: pos + n]))
        pos += n
    assert np.array_equal(np.concatenate(outs), tok.encode(x))


def test_stream_encoder_emits_each_unit_when_its_frame_completes(tok):
    enc = tok.stream_encoder()
    x = speechlike(1.0, 5)
    assert enc.feed(x[:639]).size == 0
    assert enc.feed(x[639:640]).size == 1
    assert enc.feed(x[640:2000]).size == 2                    # frames 1, 2 end at 1280, 1920


@pytest.mark.parametrize("seed", [0, 1])
def test_stream_decoder_equals_batch_and_is_incremental(tok, seed):
    units = tok.encode(speechlike(3.0, 30 + seed))
    batch = tok.decode(units)
    rng = np.random.default_rng(seed)
    dec, outs, pos = tok.stream_decoder(), [], 0
    while pos < units.size:
        n = int(rng.integers(0, 6))
        outs.append(dec.feed(units[pos: pos + n]))
        pos += n
    streamed = np.concatenate(outs)
    assert streamed.size >= (units.size - 2) * HOP            # latency under two units
    full = np.concatenate([streamed, dec.flush()])
    assert full.shape == batch.shape and np.array_equal(full, batch)


def test_no_clicks_at_unit_boundaries(tok):
    """Alternating loud/quiet units: the sample-to-sample jump at unit boundaries is no larger
    than inside units (overlap-add with consistent phase, no frame-edge discontinuity)."""
    loud, quiet = tok.num_units - 1, 1
    audio = tok.decode(np.array([loud, quiet] * 10))
    d = np.abs(np.diff(audio.astype(np.float64)))
    at_boundary = np.zeros(d.size, bool)
    at_boundary[np.arange(HOP - 1, d.size, HOP)] = True
    assert d[at_boundary].max() <= 1.5 * np.percentile(d[~at_boundary], 99.5)


def test_steady_unit_is_not_a_frozen_noise_loop(tok):
    """A held unit must not repeat every n_fft samples (a 16 Hz buzz), yet keep its level."""
    audio = tok.decode(np.full(100, tok.num_units - 1)).astype(np.float64)[4000:]
    lag = tok.n_fft
    ac = np.dot(audio[:-lag], audio[lag:]) / np.dot(audio, audio)
    assert ac < 0.5, ac
    coherent = MelKMeansTokenizer(tok.centroids, phase_jitter_rad=0.0)
    ref = coherent.decode(np.full(100, tok.num_units - 1)).astype(np.float64)[4000:]
    assert np.dot(ref[:-lag], ref[lag:]) / np.dot(ref, ref) > 0.9     # the loop it avoids
    assert 0.8 < np.sqrt((audio ** 2).mean() / (ref ** 2).mean()) < 1.25


def test_save_load_identical(tok, tmp_path):
    tok.save(tmp_path / "tok")
    info = json.loads((tmp_path / "tok" / "speech_tokenizer.json").read_text())
    assert info["kind"] == "mel_kmeans" and info["num_units"] == 48
    loaded = load_speech_tokenizer(tmp_path / "tok")
    x = speechlike(2.0, 40)
    assert np.array_equal(loaded.encode(x), tok.encode(x))
    assert np.array_equal(loaded.decode(tok.encode(x)), tok.decode(tok.encode(x)))


def test_load_errors_name_the_path(tmp_path):
    with pytest.raises(SpeechTokenizerError, match="does not exist"):
        load_speech_tokenizer(tmp_path / "nope")
    with pytest.raises(SpeechTokenizerError, match="speech_tokenizer.json"):
        load_speech_tokenizer(tmp_path)
    (tmp_path / "speech_tokenizer.json").write_text('{"kind": "wavlm"}')
    with pytest.raises(SpeechTokenizerError, match="unknown kind 'wavlm'"):
        load_speech_tokenizer(tmp_path)


def test_bad_input_is_a_clear_error(tok):
    with pytest.raises(SpeechTokenizerError, match="shorter than one frame"):
        tok.encode(np.zeros(639, np.float32))
    with pytest.raises(SpeechTokenizerError, match="dtype int16"):
        tok.encode(np.zeros(SR, np.int16))
    with pytest.raises(SpeechTokenizerError, match="1-D mono"):
        tok.encode(np.zeros((2, SR), np.float32))
    nan = np.zeros(SR, np.float32)
    nan[5] = np.nan
    with pytest.raises(SpeechTokenizerError, match="NaN"):
        tok.encode(nan)
    with pytest.raises(SpeechTokenizerError, match="NaN"):
        tok.stream_encoder().feed(nan)
    with pytest.raises(SpeechTokenizerError, match="out of range"):
        tok.decode(np.array([1, 2, tok.num_units]))
    with pytest.raises(SpeechTokenizerError, match="out of range"):
        tok.stream_decoder().feed(np.array([-1]))
    with pytest.raises(SpeechTokenizerError, match="integer units"):
        tok.decode(np.array([1.0, 2.0]))
    with pytest.raises(SpeechTokenizerError, match="non-silent frames"):
        MelKMeansTokenizer.fit([np.zeros(SR, np.float32)], num_units=8)


# ------------------------------------------------------------------------ adapters
def test_s3_adapter_from_tiny_local_checkpoint(tmp_path):
    torch = pytest.importorskip("torch")
    from omni.speech.adapters import S3Tokenizer, import_s3tokenizer
    try:
        import_s3tokenizer()
    except SpeechTokenizerError as e:
        pytest.skip(str(e))
    torch.manual_seed(0)
    model = S3Tokenizer.build("speech_tokenizer_v2_25hz", n_audio_state=128, n_audio_head=2,
                              n_audio_layer=2)
    S3Tokenizer(model, "speech_tokenizer_v2_25hz").save(tmp_path / "s3")
    tok = load_speech_tokenizer(tmp_path / "s3")
    assert isinstance(tok, S3Tokenizer) and isinstance(tok, SpeechTokenizer)
    assert (tok.num_units, tok.frame_rate_hz, tok.hop_samples) == (6561, 25.0, 640)
    x = speechlike(2.0, 50)[: 2 * SR - 100]
    units = tok.encode(x)
    assert units.dtype == np.int64 and units.shape == (x.size // HOP,)
    assert units.max() < 6561 and np.unique(units).size > 3    # random weights, varied codes
    assert np.array_equal(S3Tokenizer.from_pretrained(tmp_path / "s3").encode(x), units)
    assert tok.silence_unit == np.bincount(tok.encode(np.zeros(SR, np.float32))).argmax()
    with pytest.raises(NotImplementedError, match="CosyVoice"):
        tok.decode(units)
    with pytest.raises(SpeechTokenizerError, match="does not exist"):
        S3Tokenizer.from_pretrained(tmp_path / "missing")


def _tiny_mimi(upsampling_ratios):
    import torch
    from transformers import MimiConfig, MimiModel
    cfg = MimiConfig(hidden_size=64, num_filters=8, codebook_size=256, codebook_dim=32,
                     vector_quantization_hidden_dimension=32, num_quantizers=8,
                     num_hidden_layers=2, intermediate_size=128, num_attention_heads=4,
                     num_key_value_heads=4, head_dim=16, upsample_groups=64,
                     sampling_rate=16000, upsampling_ratios=upsampling_ratios)
    torch.manual_seed(0)
    model = MimiModel(cfg)
    with torch.no_grad():   # random init leaves codebooks at zero: give them distinct entries
        for name, buf in model.named_buffers():
            if name.endswith("codebook.embed_sum"):
                buf.copy_(torch.randn_like(buf))
    return model


def test_mimi_adapter_from_tiny_local_checkpoint(tmp_path):
    pytest.importorskip("transformers")
    from omni.speech.adapters import MimiTokenizer
    _tiny_mimi([8, 5, 4, 2]).save_pretrained(tmp_path / "hf")       # 25 Hz at 16 kHz
    tok = MimiTokenizer.from_pretrained(tmp_path / "hf", num_codebooks=1)
    assert (tok.frame_rate_hz, tok.hop_samples, tok.num_units) == (25.0, 640, 256)
    x = speechlike(2.0, 60)[: 2 * SR - 5]
    units = tok.encode(x)
    assert units.dtype == np.int64 and units.shape == (x.size // HOP,)
    audio = tok.decode(units)
    assert audio.dtype == np.float32 and audio.shape == (units.size * HOP,)
    tok.save(tmp_path / "omni")
    again = load_speech_tokenizer(tmp_path / "omni")
    assert np.array_equal(again.encode(x), units)
    assert np.allclose(again.decode(units), audio, atol=1e-6)
    # Two codebooks, flattened frame-major with codebook offsets.
    tok2 = MimiTokenizer.from_pretrained(tmp_path / "hf", num_codebooks=2)
    u2 = tok2.encode(x)
    assert tok2.num_units == 512 and tok2.frame_rate_hz == 50.0 and u2.size == 2 * units.size
    assert np.array_equal(u2[0::2], units) and np.all(u2[1::2] >= 256)
    assert np.unique(u2[1::2]).size > 2     # the tiny random model still gives varied codes
    assert tok2.decode(u2).shape == (units.size * HOP,)
    with pytest.raises(SpeechTokenizerError, match="multiple of 2"):
        tok2.decode(u2[:-1])
    with pytest.raises(SpeechTokenizerError, match="does not exist"):
        MimiTokenizer.from_pretrained(tmp_path / "missing")
    with pytest.raises(SpeechTokenizerError, match="no config.json"):
        MimiTokenizer.from_pretrained(tmp_path)
