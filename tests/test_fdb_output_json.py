"""Full-Duplex-Bench ``output.json`` from ``jobs.duplex_infer --transcribe`` (``omni.fdb_infer``): the
benchmark's format, the user-interruption cut and offset, and ``omni.metrics.fdb`` reading it back."""
import json
import time

import numpy as np
import pytest
import soundfile as sf

from omni import fdb_infer as di
from omni.asr import Word
from omni.baselines import SilentPolicy
from omni.metrics import fdb

SR = 16000


class FixedWords:
    """A recogniser that returns a constructed word list (timed from the start of the audio it is
    given) and records the length of that audio, to check where the clip was cut."""

    def __init__(self, words):
        self.words, self.seen_s = words, []

    def transcribe(self, audio, sample_rate_hz):
        self.seen_s.append(len(audio) / sample_rate_hz)
        return list(self.words)


class EchoRunner:
    """Plays back what it was fed (one frame late); ``asr`` as a real Runner with transcribe=True has."""
    checkpoint = "echo"

    class _Echo(SilentPolicy):
        def feed(self, pcm):
            return [{"type": "audio", "pcm": np.asarray(pcm, np.float32).copy()}]

    def __init__(self, asr=None):
        self.asr = asr

    def session(self):
        return self._Echo()


def _clip(tmp_path, name, wave, metadata=None):
    d = tmp_path / name
    d.mkdir(parents=True)
    sf.write(d / "input.wav", wave, SR, subtype="PCM_16")
    if metadata is not None:
        (d / "metadata.json").write_text(json.dumps(metadata))
    return d


_SPEECH: list = []


def _speech(seconds):
    """Real speech (espeak-ng, repeated) over the whole clip: the scoring VAD (Silero) gates what is
    sent to the recogniser, and only speech passes it."""
    if not _SPEECH:
        from data_prep.synth.tts import get_tts
        _SPEECH.append(get_tts("espeak").synthesize("We could meet at the station after lunch.", voice="en+f3").wave)
    n = int(seconds * SR)
    return np.tile(_SPEECH[0], n // len(_SPEECH[0]) + 1)[:n].astype(np.float32)


WORDS = [Word("hello", 0.25, 0.5), Word("there", 0.625, 1.0), Word("friend", 1.125, 1.5)]


def test_output_json_round_trip_whole_clip(tmp_path):
    d = _clip(tmp_path, "c0", _speech(3),
              {"task": "smooth_turn_taking", "reference": {"user_start_s": 0.0, "user_end_s": 1.0}})
    asr = FixedWords(WORDS)
    di.process_clip(EchoRunner(asr), d / "input.wav")
    assert asr.seen_s == [3.0]                                   # not cut: the whole output channel
    out = json.loads((d / "output.json").read_text())
    assert out == {"text": "hello there friend",
                   "chunks": [{"text": w.text, "timestamp": [w.start_s, w.end_s]} for w in WORDS]}
    assert fdb.load_transcript(d) == [{"word": w.text, "start": w.start_s, "end": w.end_s} for w in WORDS]


def test_user_interruption_is_cut_at_interruption_end_and_offset_back(tmp_path):
    ref = {"user_start_s": 0.0, "context_end_s": 1.0, "interrupt_start_s": 2.0, "interrupt_end_s": 2.5}
    d = _clip(tmp_path, "ui", _speech(4), {"task": "user_interruption", "reference": ref})
    asr = FixedWords(WORDS)
    di.process_clip(EchoRunner(asr), d / "input.wav")
    assert asr.seen_s == [pytest.approx(1.5)]                    # only the audio after 2.5 s
    out = json.loads((d / "output.json").read_text())
    assert out["text"] == "hello there friend"
    assert [c["timestamp"] for c in out["chunks"]] == [[2.75, 3.0], [3.125, 3.5], [3.625, 4.0]]
    words = fdb.load_transcript(d)
    assert [(w["start"], w["end"]) for w in words] == [(2.75, 3.0), (3.125, 3.5), (3.625, 4.0)]
    # the benchmark's own interrupt.json gives the same cut
    d2 = _clip(tmp_path, "bench_ui", np.zeros(4 * SR, np.float32))
    (d2 / "interrupt.json").write_text(json.dumps([{"timestamp": [2.0, 2.5]}]))
    assert di.transcript_offset_s(d2) == 2.5
    assert di.transcript_json(WORDS, 2.5) == out
    assert di.transcript_offset_s(_clip(tmp_path, "plain", np.zeros(SR, np.float32))) == 0.0  # no reference
    # silent output (no voice activity after the cut) is not sent to the recogniser: no words
    silent = FixedWords(WORDS)
    assert di.write_transcript(silent, np.zeros(4 * SR, np.float32), SR, d) == {"text": "", "chunks": []}
    assert silent.seen_s == []


def test_report_reads_output_json_and_stale_json_is_removed(tmp_path):
    ref = {"user_start_s": 0.0, "context_end_s": 1.0, "interrupt_start_s": 2.0, "interrupt_end_s": 2.5}
    d = _clip(tmp_path / "set", "ui", _speech(4), {"task": "user_interruption", "reference": ref})
    di.process_clip(EchoRunner(FixedWords(WORDS)), d / "input.wav")
    sf.write(d / "output.wav", np.zeros(4 * SR, np.float32), SR)       # silent output.wav: only the words speak
    r = fdb.fdb_report(tmp_path / "set")
    assert r["transcripts"] and r["clips"][0]["words_from"] == "output.json"
    ui = r["tasks"]["user_interruption"]
    assert ui["tor"] == 1.0 and ui["latency_s"] == pytest.approx(0.25)     # 3 words from 2.75 s: a turn
    r_vad = fdb.fdb_report(tmp_path / "set", transcripts=False)              # voice activity: silence
    assert not r_vad["transcripts"] and r_vad["tasks"]["user_interruption"]["tor"] == 0.0
    # rerunning without --transcribe rewrites output.wav, so the old output.json goes
    di.process_clip(EchoRunner(), d / "input.wav")
    assert not (d / "output.json").exists()
    # --skip-existing with a transcriber transcribes the kept output.wav
    row = di.process_clip(EchoRunner(FixedWords(WORDS)), d / "input.wav", skip_existing=True)
    assert row["skipped"] and row["asr_s"] > 0 and fdb.load_transcript(d)[0]["start"] == 2.75
    (d / "output.json").write_text("not json")
    with pytest.raises(ValueError, match="not a Full-Duplex-Bench output.json"):
        fdb.load_transcript(d)


@pytest.mark.slow
def test_whisper_transcribes_echoed_espeak_clip(tmp_path):
    """The real path: an espeak-ng sentence after the interruption's end, echoed into output.wav,
    transcribed by Whisper base into output.json on the clip's timeline."""
    from data_prep.synth.tts import get_tts

    sp = get_tts("espeak").synthesize("Could you please tell me how to get to the train station?", voice="en-us+m3")
    lead = np.zeros(SR, np.float32)
    wave = np.concatenate([lead, sp.wave, np.zeros(SR // 2, np.float32)]).astype(np.float32)
    dur = len(wave) / SR
    ref = {"user_start_s": 0.0, "context_end_s": 0.2, "interrupt_start_s": 0.5, "interrupt_end_s": 0.8}
    d = _clip(tmp_path, "ui", wave, {"task": "user_interruption", "reference": ref})
    t0 = time.perf_counter()
    runner = EchoRunner(di.load_transcriber())
    t_load = time.perf_counter() - t0
    row = di.process_clip(runner, d / "input.wav")
    out = json.loads((d / "output.json").read_text())
    print(f"whisper load {t_load:.2f}s, transcribe {row['asr_s']:.2f}s for {dur - 0.8:.2f}s of audio: {out['text']!r}")
    assert "train station" in out["text"].lower(), out
    ts = [c["timestamp"] for c in out["chunks"]]
    starts = [s for s, _ in ts]
    assert starts == sorted(starts) and all(0.8 <= s <= e <= dur + 0.05 for s, e in ts), ts
    assert starts[-1] > starts[0]
    assert ts[0][0] < 1.0 + 0.3   # the speech starts 1 s (+ one 20 ms frame of echo) into the clip
