"""Streaming duplex engine (omni/duplex.py) without Ray, on a tiny random-weight export."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from omni.config import ServeConfig
from omni.duplex import DuplexEngine, DuplexInputError
from serve_app.tiny_export import build_tiny_export, demo_wave

HOP = 640          # samples per unit at 25 Hz
CHUNK = 10         # speech_chunk of the tiny export


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    torch.set_num_threads(1)
    return build_tiny_export(tmp_path_factory.mktemp("export") / "tiny", speech_chunk=CHUNK)


@pytest.fixture(scope="module")
def engine(export_dir):
    return DuplexEngine(export_dir, ServeConfig(kv_window=2048))


def _feed_random(session, wave, seed=0, lo=1, hi=4000):
    rng = np.random.default_rng(seed)
    events, i = [], 0
    while i < wave.size:
        n = int(rng.integers(lo, hi))
        events += session.feed(wave[i:i + n])
        i += n
    return events


def test_random_frame_sizes_give_one_step_per_chunk_and_matching_audio(engine):
    wave = demo_wave(3.3, seed=1)
    with engine.session() as s:
        events = _feed_random(s, wave, seed=1)
        chunks = (wave.size // HOP) // CHUNK
        assert s.chunk_index == chunks == 8
        stats = [e for e in events if e["type"] == "stats"]
        assert [e["chunk_index"] for e in stats] == list(range(chunks))
        assert all(e["chunk_ms"] == 400.0 and e["step_ms"] > 0 for e in stats)
        before_flush = sum(e["pcm"].size for e in events if e["type"] == "audio")
        # the streaming decoder lags by < 2 units; flush returns the rest exactly
        assert chunks * CHUNK * HOP - 2 * HOP <= before_flush < chunks * CHUNK * HOP
        events += s.flush()
        pcm = np.concatenate([e["pcm"] for e in events if e["type"] == "audio"])
        assert pcm.dtype == np.float32 and pcm.size == chunks * CHUNK * HOP
        assert np.abs(pcm).max() <= 1.0
        assert {e["type"] for e in events} <= {"audio", "text", "text_end", "turn_start", "turn_end", "stats"}
        # leftover user units (fewer than a chunk) wait for more audio
        assert len(s.user_units) == (wave.size // HOP) % CHUNK


def test_frame_size_does_not_change_the_conversation(engine):
    wave = demo_wave(2.5, seed=2)
    with engine.session() as a, engine.session() as b:
        _feed_random(a, wave, seed=3, lo=1, hi=300)
        b.feed(wave)
        assert a.ids == b.ids and len(a.ids) == 6 * (2 * CHUNK + 2)


def test_generated_tokens_follow_the_full_duplex_3_layout(export_dir):
    eng = DuplexEngine(export_dir, ServeConfig(temperature=1.0, top_k=20))
    with eng.session(seed=7) as s:
        s.feed(demo_wave(2.0, seed=4))
        v, width = eng.vocab, 2 * CHUNK + 2
        ids = np.asarray(s.ids).reshape(-1, width)
        assert v.is_unit(ids[:, :CHUNK]).all() and v.is_unit(ids[:, CHUNK + 2:]).all()
        text = ids[:, CHUNK:CHUNK + 2].ravel()
        allowed = v.is_text(text) | (text == v.special("text_pad")) | (text == v.special("eot"))
        assert allowed.all()
        user = eng.speech_tokenizer.encode(demo_wave(2.0, seed=4))[:ids.shape[0] * CHUNK]
        assert (v.ids_to_units(ids[:, :CHUNK].ravel()) == user).all()


def test_rolling_window_bounds_context_and_cache(export_dir):
    eng = DuplexEngine(export_dir, ServeConfig(kv_window=100))
    wave = demo_wave(20.0, seed=5)                       # 50 chunks = 1100 tokens unbounded
    with eng.session() as s:
        sizes = []
        for i in range(0, wave.size, CHUNK * HOP):
            s.feed(wave[i:i + CHUNK * HOP])
            sizes.append(s.context_tokens)
            assert s.kv[0][0].shape[2] == s.context_tokens - 1     # cache covers ids[:-1]
        assert s.chunk_index == 50
        assert max(sizes) <= 100 and s.reprefills >= 5
        assert all(n % 22 == 0 for n in sizes)                    # whole chunks are dropped


def test_batched_step_equals_unbatched_under_greedy(engine):
    wave = demo_wave(6.0, seed=6)
    starts = [0, 3, 5]                                             # staggered: caches differ in length
    batched = [engine.session() for _ in starts]
    single = [engine.session() for _ in starts]
    seen_batch_sizes = set()
    for k in range(9):
        for j, st in enumerate(starts):
            if k < st:
                continue
            seg = wave[(k - st + j) * CHUNK * HOP:(k - st + j + 1) * CHUNK * HOP]
            batched[j].push(seg)
            single[j].feed(seg)
        ready = [s for s in batched if s.ready_chunks]
        for evs in engine.step_batch(ready):
            seen_batch_sizes.add(next(e for e in evs if e["type"] == "stats")["batch_size"])
    assert seen_batch_sizes == {1, 2, 3}
    for a, b in zip(batched, single):
        assert a.ids == b.ids
        for (ka, va), (kb, vb) in zip(a.kv, b.kv):
            assert ka.shape == kb.shape
            assert torch.allclose(ka, kb, atol=1e-4) and torch.allclose(va, vb, atol=1e-4)


def test_turn_events_follow_silence_runs(engine):
    sil = engine.silence_unit
    with engine.session() as s:
        types = lambda units: [e["type"] for e in engine._emit(s, [], units, 1.0, 1)
                               if e["type"] in ("turn_start", "turn_end")]
        assert types([sil] * CHUNK) == []
        assert types([sil] * 5 + [3] * 5) == ["turn_start"]
        assert types([3] * 4 + [sil] * 6) == []                  # 6 silent units < 400 ms
        assert types([sil] * 4 + [5] * 6) == []                  # still the same turn
        assert types([5] + [sil] * 9) == []
        assert types([sil] * CHUNK) == ["turn_end"]              # 19 >= 10 silent units
        assert types([sil] * CHUNK) == []


def test_text_events_are_deltas_and_eot_closes_the_turn_text(engine):
    v, tt = engine.vocab, engine.text_tokenizer
    ids = tt.encode("hello there")
    with engine.session() as s:
        evs = engine._emit(s, ids[:2], [0] * CHUNK, 1.0, 1) + engine._emit(s, ids[2:] + [v.special("eot")],
                                                                            [0] * CHUNK, 1.0, 1)
        text = "".join(e["text"] for e in evs if e["type"] == "text")
        assert text == "hello there"
        assert [e["text"] for e in evs if e["type"] == "text_end"] == ["hello there"]
        assert s.turn_text == ""


def test_respond_half_duplex(engine):
    out = engine.respond(demo_wave(1.5, seed=8), max_speech_s=2.0)
    assert set(out["style"]) == {"pitch", "speed", "emotion"}
    assert out["style"]["pitch"] in ("high", "normal", "low")
    assert isinstance(out["text"], str) and isinstance(out["user_text"], str)
    assert out["audio"].dtype == np.float32 and out["audio"].size == out["units"].size * HOP
    assert out["units"].size <= 50


def test_bad_input_errors(engine, export_dir):
    with engine.session() as s:
        with pytest.raises(DuplexInputError, match="32768"):
            s.feed(np.zeros(640, np.int16))
        with pytest.raises(DuplexInputError, match="mono"):
            s.feed(np.zeros((640, 2), np.float32))
        with pytest.raises(DuplexInputError, match="NaN"):
            s.feed(np.full(640, np.nan, np.float32))
        with pytest.raises(ValueError, match="full user chunk"):
            engine.step_batch([s])
        assert s.feed(np.zeros(0, np.float32)) == []
    with pytest.raises(RuntimeError, match="closed"):
        s.feed(np.zeros(640, np.float32))
    with pytest.raises(ValueError, match="kv_window"):
        DuplexEngine(export_dir, ServeConfig(kv_window=64), speech_chunk=40)
    with pytest.raises(DuplexInputError, match="too short"):
        engine.respond(np.zeros(100, np.float32))
