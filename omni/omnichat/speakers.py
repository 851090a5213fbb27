"""Per-speaker normalisation of the prosody expert's levels (``omnichat.para_norm: speaker``).

How high or loud someone speaks says little about their emotion until it is compared with how
that speaker usually sounds: a deep voice speaking happily can be lower than a high voice speaking
sadly. :class:`SpeakerNorm` keeps, per speaker, the mean and spread of the prosody expert's level
features over voiced frames (log-F0, energy) and turns each frame into z-scores against them
(deltas scaled by the same spread); the other features pass unchanged.

Statistics come from the audio only, never from labels:

* training: every training turn is observed before its first step (``observe``);
* held-out evaluation: the held-out turns are observed first (unlabelled speaker adaptation, as
  speaker-level mean/variance normalisation does; the plain-classifier ceiling of the benchmark
  normalises the same way);
* serving: a client may name its speaker; each turn is observed before it is answered.

A speaker with few frames is shrunk toward the pooled statistics of all speakers seen in training
(``prior_frames`` pseudo-frames of the pooled mean and variance): an unknown or new speaker is
normalised by the pooled statistics, and moves toward its own as its audio accumulates. The
pooled statistics are saved with the export (``speaker_norm.safetensors``); per-speaker statistics
are run-time state. Not an ``nn.Module``: the float64 sums must not follow the model's dtype
(DeepSpeed casts module buffers to bf16).
"""
from __future__ import annotations

import torch

LEVEL_DIMS = (0, 2)
"""Prosody-expert dims normalised as levels: log-F0 (voiced frames only), energy."""
DELTA_DIMS = {3: 0, 4: 2}
"""Delta dims scaled by the spread of their level: d log-F0 by log-F0's, d energy by energy's."""
VOICED_DIM = 1


class SpeakerNorm:
    def __init__(self, prior_frames: float = 500.0, min_std: float = 1e-2):
        self.prior_frames, self.min_std = float(prior_frames), float(min_std)
        k = len(LEVEL_DIMS)
        # pooled sums over every observed voiced frame of the training data: saved with the export
        self.pooled_n = torch.zeros((), dtype=torch.float64)
        self.pooled_sum = torch.zeros(k, dtype=torch.float64)
        self.pooled_sumsq = torch.zeros(k, dtype=torch.float64)
        self.speakers: dict[str, list[torch.Tensor]] = {}
        """speaker -> [n, sum (k,), sumsq (k,)] (float64), run-time state."""
        self._seen: set = set()

    @staticmethod
    def _levels(feats: torch.Tensor) -> torch.Tensor:
        voiced = feats[:, VOICED_DIM] > 0
        return feats[voiced][:, list(LEVEL_DIMS)].double()

    def observe(self, feats: torch.Tensor, speaker: str | None, key: str | None = None, pooled: bool = True) -> None:
        """Add a turn's voiced frames to ``speaker``'s statistics (and the pooled ones when ``pooled``;
        held-out and live turns are added to their speaker only). ``key``: a turn observed twice
        (another epoch, a history turn) counts once."""
        if key is not None:
            if key in self._seen:
                return
            self._seen.add(key)
        x = self._levels(feats)
        if x.shape[0] == 0:
            return
        n, s, q = float(x.shape[0]), x.sum(0), (x * x).sum(0)
        if pooled:
            self.pooled_n += n
            self.pooled_sum += s
            self.pooled_sumsq += q
        if speaker is not None:
            st = self.speakers.setdefault(speaker, [0.0, torch.zeros_like(s), torch.zeros_like(q)])
            st[0] += n
            st[1] += s
            st[2] += q

    def stats(self, speaker: str | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of the level dims for ``speaker``, shrunk toward the pooled statistics."""
        if float(self.pooled_n) <= 0:
            raise RuntimeError("SpeakerNorm has observed no audio: observe the training turns first "
                               "(omnichat.para_norm=speaker)")
        pm = self.pooled_sum / self.pooled_n
        pv = (self.pooled_sumsq / self.pooled_n - pm * pm).clamp(min=0)
        n0 = self.prior_frames
        n, s, q = (self.speakers.get(speaker) if speaker is not None else None) or (0.0, 0.0, 0.0)
        mean = (s + n0 * pm) / (n + n0)
        second = (q + n0 * (pv + pm * pm)) / (n + n0)
        std = (second - mean * mean).clamp(min=0).sqrt().clamp(min=self.min_std)
        return mean.float(), std.float()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"pooled_n": self.pooled_n.clone(), "pooled_sum": self.pooled_sum.clone(),
                "pooled_sumsq": self.pooled_sumsq.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.pooled_n = state["pooled_n"].double().clone()
        self.pooled_sum = state["pooled_sum"].double().clone()
        self.pooled_sumsq = state["pooled_sumsq"].double().clone()

    def __call__(self, feats: torch.Tensor, speaker: str | None) -> torch.Tensor:
        """(frames, dim) prosody features -> the same with levels as speaker z-scores."""
        mean, std = self.stats(speaker)
        out = feats.clone()
        voiced = feats[:, VOICED_DIM] > 0
        for i, d in enumerate(LEVEL_DIMS):
            z = (feats[:, d] - mean[i]) / std[i]
            out[:, d] = torch.where(voiced, z, torch.zeros_like(z)) if d == 0 else z
        for d, lvl in DELTA_DIMS.items():
            out[:, d] = feats[:, d] / std[LEVEL_DIMS.index(lvl)]
        return out
