"""Offline duplex inference (``omni.fdb_infer``, ``jobs.duplex_infer``): output.wav sample-aligned with
input.wav, causal streaming, and the two baseline policies (``omni.baselines``)."""
import json
import os

import numpy as np
import pytest
import soundfile as sf

from jobs import duplex_infer as job
from omni import fdb_infer as di
from omni.baselines import SilentPolicy, Vad200Policy

SR = 16000


class EchoRunner:
    """A session that plays back exactly what it was fed: shows where the placement rule puts audio."""
    checkpoint = "echo"

    class _Echo(SilentPolicy):
        def feed(self, pcm):
            return [{"type": "audio", "pcm": np.asarray(pcm, np.float32).copy()}]

    def session(self):
        return self._Echo()


def _write_input(path, seconds, sr, seed=0):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.3 * rng.uniform(-1, 1, int(seconds * sr))).astype(np.float32), sr, subtype="PCM_16")
    return sf.read(path, dtype="float32")[0]


def test_output_is_sample_aligned_with_input(tmp_path):
    x = _write_input(tmp_path / "c0" / "input.wav", 1.3, SR)
    di.process_clip(EchoRunner(), tmp_path / "c0" / "input.wav", frame_ms=20)
    y, sr = sf.read(tmp_path / "c0" / "output.wav", dtype="float32")
    assert sr == SR and len(y) == len(x)
    f = 320                                  # reply to frame [a, a+f) is played from a+f on
    np.testing.assert_array_equal(y[:f], 0)
    np.testing.assert_array_equal(y[f:], x[:-f])
    di.process_clip(EchoRunner(), tmp_path / "c0" / "input.wav", frame_ms=20, delay_ms=100)
    y2 = sf.read(tmp_path / "c0" / "output.wav", dtype="float32")[0]
    np.testing.assert_array_equal(y2[f + 1600:], x[:-(f + 1600)])
    ev = json.loads((tmp_path / "c0" / "output_events.json").read_text())
    assert ev["frame_ms"] == 20 and ev["delay_ms"] == 100


def test_other_sample_rates_keep_rate_and_length(tmp_path):
    x = _write_input(tmp_path / "c8k" / "input.wav", 1.0, 8000)
    voice = 0.1 * np.ones(SR, np.float32)
    di.process_clip(di.Runner("baseline:vad200", baseline_voice=voice), tmp_path / "c8k" / "input.wav")
    y, sr = sf.read(tmp_path / "c8k" / "output.wav", dtype="float32")
    assert sr == 8000 and len(y) == len(x)


def test_vad200_baseline_speaks_only_after_200ms_of_user_silence():
    x = np.zeros(4 * SR, np.float32)
    loud = lambda a, b: 0.2 * np.sin(2 * np.pi * 220 * np.arange(int((b - a) * SR)) / SR)
    x[: SR] = loud(0, 1)                                     # the user speaks 0-1 s and 2-2.5 s
    x[2 * SR:int(2.5 * SR)] = loud(2, 2.5)
    voice = np.linspace(0.01, 0.5, SR, dtype=np.float32)     # a ramp: shows where the clip restarts
    out, _ = di.stream_clip(Vad200Policy(voice), x)
    on = np.flatnonzero(np.abs(out) > 1e-3)
    # silence from 1.0 s; the 10th quiet frame (1.18-1.20 s) -> voice, played from the end of that frame
    assert on[0] == int(1.2 * SR)
    i = on[0]
    np.testing.assert_allclose(out[i:i + 320], voice[:320])  # a turn starts the clip from its beginning
    # the first loud frame (2.00-2.02 s) stops it: silence is played from 2.02 s until 2.70 s
    assert np.all(out[int(2.0 * SR):int(2.02 * SR)]) and not np.any(out[int(2.02 * SR):int(2.7 * SR)])
    j = int(2.7 * SR)
    np.testing.assert_allclose(out[j:j + 320], voice[:320])  # ... and the next turn restarts the clip
    np.testing.assert_array_equal(di.stream_clip(SilentPolicy(), x)[0], 0)
    with pytest.raises(ValueError, match="needs a voice"):
        Vad200Policy(np.zeros(10))
    with pytest.raises(ValueError, match="baseline:vad200 needs baseline_voice"):
        di.Runner("baseline:vad200")


def test_vad200_voice_is_speech_to_the_scoring_vad():
    from data_prep.fdb_tasks import baseline_voice
    from omni.vad import silero_segments

    voice = baseline_voice()
    speech = sum(e - s for s, e in silero_segments(voice, SR))
    assert len(voice) / SR > 3.0 and speech > 0.7 * len(voice) / SR


def test_find_inputs_and_bad_audio_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="fdb_tasks"):
        di.find_inputs(tmp_path)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "input.wav").write_bytes(b"not a wav")
    with pytest.raises(ValueError, match="cannot read audio"):
        di.process_clip(EchoRunner(), tmp_path / "c" / "input.wav")
    _write_input(tmp_path / "d" / "input.wav", 0.5, SR)
    stats = job.run("baseline:silent", tmp_path, local=True)         # one bad clip does not stop the rest
    assert stats["clips"] == 2 and stats["errors"] == 1 and "cannot read audio" in stats["first_errors"][0]
    assert (tmp_path / "d" / "output.wav").exists()


@pytest.fixture(scope="module")
def tiny_runner(tmp_path_factory):
    import torch

    from serve_app.tiny_export import build_tiny_export

    torch.set_num_threads(1)
    export = build_tiny_export(tmp_path_factory.mktemp("export") / "tiny")
    return di.Runner(str(export))


def test_engine_never_reads_future_input(tiny_runner, tmp_path):
    from serve_app.tiny_export import demo_wave

    a = demo_wave(2.4, seed=1)
    b = a.copy()
    cut = int(1.2 * SR)                                                  # a chunk boundary (400 ms chunks)
    b[cut:] = 0.3 * np.random.default_rng(7).uniform(-1, 1, len(b) - cut).astype(np.float32)
    with tiny_runner.session() as s:
        out_a, _ = di.stream_clip(s, a)
    with tiny_runner.session() as s:
        out_b, _ = di.stream_clip(s, b)
    assert np.abs(out_a).max() > 0                                     # the random model does speak
    np.testing.assert_array_equal(out_a[:cut], out_b[:cut])              # nothing before the change moved
    assert not np.array_equal(out_a[cut:], out_b[cut:])                  # ... and the change is seen later
    # the engine path through process_clip writes a same-length, same-rate file
    sf.write(tmp_path / "input.wav", a[:13000], SR, subtype="PCM_16")
    di.process_clip(tiny_runner, tmp_path / "input.wav")
    y, sr = sf.read(tmp_path / "output.wav", dtype="float32")
    assert sr == SR and len(y) == 13000
    with pytest.raises(FileNotFoundError, match="export.json"):
        di.Runner(str(tmp_path))


@pytest.mark.slow
def test_ray_data_job_matches_local(tmp_path):
    """The Ray Data actor pool writes the same files as the in-process loop."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    for i in range(3):
        _write_input(tmp_path / "set" / f"c{i}" / "input.wav", 1.0, SR, seed=i)
    import ray

    for attempt in range(2):  # Ray's own 30 s node start-up limit trips on an overloaded machine
        try:
            ray.init(num_cpus=2, include_dashboard=False)
            break
        except Exception as e:  # Ray raises a bare Exception for this
            ray.shutdown()
            if attempt or "timed out during startup" not in str(e):
                raise
    try:
        stats = job.run("baseline:vad200", tmp_path / "set", actors=2)
    finally:
        ray.shutdown()
    assert stats["clips"] == 3 and stats["skipped"] == 0 and stats["audio_s"] == pytest.approx(3.0)
    ray_out = [sf.read(tmp_path / "set" / f"c{i}" / "output.wav")[0] for i in range(3)]
    job.run("baseline:vad200", tmp_path / "set", local=True)
    for i in range(3):
        np.testing.assert_array_equal(ray_out[i], sf.read(tmp_path / "set" / f"c{i}" / "output.wav")[0])
    assert job.run("baseline:vad200", tmp_path / "set", local=True, skip_existing=True)["skipped"] == 3
