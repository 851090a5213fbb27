"""Reference policies for the Full-Duplex-Bench protocol: what a model must beat.

A policy has the shape of a :class:`omni.duplex.DuplexSession`: ``feed(pcm) -> [events]`` with
``{"type": "audio", "pcm": float32}`` events, and is a context manager. Both are causal: the
output for a frame depends only on the input up to that frame.

* :class:`SilentPolicy` (``baseline:silent``) never speaks.
* :class:`Vad200Policy` (``baseline:vad200``) speaks whenever the user has been quiet for 200 ms
  and stops as soon as the user is loud again. Its own rule (not the scoring VAD): a causal
  energy gate over 20 ms frames at -45 dBFS (:class:`omni.vad.EnergyGate`). What it says is a
  speech clip the caller supplies (``voice``), so that the benchmark's Silero VAD hears speech;
  ``jobs.duplex_infer`` voices one with espeak-ng (``data_prep.fdb_tasks.baseline_voice``).
"""
from __future__ import annotations

import numpy as np

from omni.vad import EnergyGate

SR = 16000


class SilentPolicy:
    """Baseline: never speaks (returns silence for every frame)."""

    def __init__(self, **_):
        pass

    def feed(self, pcm) -> list[dict]:
        return [{"type": "audio", "pcm": np.zeros(len(pcm), np.float32)}]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


class Vad200Policy(SilentPolicy):
    """Baseline: plays ``voice`` (16 kHz speech, from its start at every turn it takes, looped)
    whenever the user has been quiet for ``silence_ms`` (judged causally per ``frame_ms`` frame by
    :class:`omni.vad.EnergyGate` at ``threshold_dbfs``); silent from the first loud frame on."""

    def __init__(self, voice, silence_ms: float = 200.0, threshold_dbfs: float = -45.0, frame_ms: float = 20.0, **_):
        self.voice = np.asarray(voice, np.float32).reshape(-1)
        if self.voice.size == 0 or not np.any(self.voice):
            raise ValueError("Vad200Policy needs a voice: a non-silent 16 kHz speech clip to play when it takes the "
                             "turn (jobs.duplex_infer voices one with data_prep.fdb_tasks.baseline_voice)")
        self.gate = EnergyGate(SR, frame_ms, threshold_dbfs)
        self.need = round(silence_ms / frame_ms)
        self.quiet_frames = 0
        self.pos = 0                      # next sample of ``voice`` to play

    def _say(self, n: int) -> np.ndarray:
        idx = (self.pos + np.arange(n)) % self.voice.size
        self.pos += n
        return self.voice[idx]

    def feed(self, pcm) -> list[dict]:
        out = []
        for loud in self.gate.push(pcm):
            self.quiet_frames = 0 if loud else self.quiet_frames + 1
            if self.quiet_frames >= self.need:
                out.append(self._say(self.gate.hop))
            else:
                self.pos = 0              # the next turn starts the clip from the beginning
                out.append(np.zeros(self.gate.hop, np.float32))
        return [{"type": "audio", "pcm": np.concatenate(out) if out else np.zeros(0, np.float32)}]


BASELINES = {"baseline:silent": SilentPolicy, "baseline:vad200": Vad200Policy}
