"""Mix-Former: fuse heterogeneous expert frames into LLM input embeddings.

1. **Common rate**: every expert's frames are linearly resampled to ``common_frame_rate_hz``
   (50 Hz by default), so frame t of every expert covers the same time.
2. **Window Q-Former** (one per expert): the sequence is cut into windows of L frames
   (L = 17 ≈ 0.34 s at 50 Hz, the last window may be partial); K learned queries (K = 1)
   cross-attend over the frames *of their window only* (padded frames masked), then a
   feed-forward block: ``ceil(T / L) * K`` vectors per expert.
3. **Weights**: one learned scalar per expert, ``w_e = sigmoid(g_e)``; the experts' window
   vectors are scaled by ``w_e`` and concatenated along features.
4. **Projection** of the concatenation into the LLM's embedding size.

``fusion="concat"`` (ablation): no Q-Former and no weights: the aligned frames are
concatenated and mean-pooled per window (same token rate), then projected.

``forward(feats, lengths)``: ``feats`` maps expert name -> (B, T_e, D_e) padded frames at the
expert's own rate, ``lengths`` maps name -> (B,) valid frame counts. Returns ``(tokens (B, N,
hidden), token_mask (B, N))`` with ``N = ceil(T_common / L) * K``.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def common_frames(num_frames: int, rate_hz: float, common_rate_hz: float) -> int:
    """Frames at the common rate covering ``num_frames`` frames at ``rate_hz``."""
    return max(1, math.ceil(num_frames * common_rate_hz / rate_hz - 1e-9))


def resample_frames(x: torch.Tensor, lengths: torch.Tensor, rate_hz: float, common_rate_hz: float):
    """(B, T, D) at ``rate_hz`` -> (B, T', D) at ``common_rate_hz`` (linear, per item), new lengths."""
    new_len = torch.tensor([common_frames(int(n), rate_hz, common_rate_hz) for n in lengths], device=lengths.device)
    if rate_hz == common_rate_hz:
        return x, lengths.clone()
    out = x.new_zeros(x.shape[0], int(new_len.max()), x.shape[2])
    for b in range(x.shape[0]):
        n, m = int(lengths[b]), int(new_len[b])
        seg = x[b, :n].T[None]  # (1, D, n)
        out[b, :m] = nn.functional.interpolate(seg, size=m, mode="linear", align_corners=False)[0].T
    return out, new_len


def frame_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class WindowQFormer(nn.Module):
    """K learned queries per window of L frames; cross-attention limited to the window."""

    def __init__(self, in_dim: int, dim: int, window: int = 17, queries: int = 1, heads: int = 4):
        super().__init__()
        if dim % heads:
            raise ValueError(f"omnichat.qformer_dim ({dim}) must divide by omnichat.qformer_heads ({heads})")
        self.window, self.k = window, queries
        self.inp = nn.Linear(in_dim, dim)
        self.pos = nn.Parameter(torch.randn(window, dim) * 0.02)
        self.query = nn.Parameter(torch.randn(queries, dim) * 0.02)
        self.norm_kv, self.norm_q = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ffn = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor):
        """x (B, T, in_dim), mask (B, T) bool -> (B, W*K, dim), window mask (B, W*K)."""
        b, t, _ = x.shape
        w = math.ceil(t / self.window)
        pad = w * self.window - t
        x = nn.functional.pad(x, (0, 0, 0, pad))
        mask = nn.functional.pad(mask, (0, pad), value=False)
        kv = self.inp(x).reshape(b * w, self.window, -1) + self.pos
        m = mask.reshape(b * w, self.window)
        has = m.any(1)
        # windows that hold no frame attend to everything (then get zeroed): avoids NaN softmax
        key_pad = ~m & has[:, None]
        q = self.query[None].expand(b * w, -1, -1)
        h, _ = self.attn(self.norm_q(q), self.norm_kv(kv), self.norm_kv(kv), key_padding_mask=key_pad,
                         need_weights=False)
        h = q + h
        h = h + self.ffn(h)
        h = h * has[:, None, None]
        win_mask = has[:, None].expand(-1, self.k).reshape(b, w * self.k)
        return h.reshape(b, w * self.k, -1), win_mask


class MixFormer(nn.Module):
    def __init__(self, expert_dims: dict[str, int], expert_rates_hz: dict[str, float], hidden_size: int,
                 fusion: str = "mixformer", common_rate_hz: float = 50.0, window: int = 17, queries: int = 1,
                 dim: int = 64, heads: int = 4):
        super().__init__()
        if fusion not in ("mixformer", "concat"):
            raise ValueError(f"omnichat.fusion must be 'mixformer' or 'concat', got {fusion!r}")
        self.names = list(expert_dims)
        self.rates = dict(expert_rates_hz)
        self.fusion, self.common_rate_hz, self.window, self.k = fusion, common_rate_hz, window, queries
        if fusion == "mixformer":
            self.qformers = nn.ModuleDict({n: WindowQFormer(d, dim, window, queries, heads)
                                           for n, d in expert_dims.items()})
            self.gates = nn.Parameter(torch.zeros(len(self.names)))  # sigmoid(0) = 0.5 each
            self.proj = nn.Sequential(nn.Linear(dim * len(self.names), hidden_size), nn.GELU(),
                                      nn.Linear(hidden_size, hidden_size))
        else:
            if queries != 1:
                raise ValueError("omnichat.fusion=concat pools one vector per window: set omnichat.queries_per_window=1")
            self.norms = nn.ModuleDict({n: nn.LayerNorm(d) for n, d in expert_dims.items()})
            self.proj = nn.Sequential(nn.Linear(sum(expert_dims.values()), hidden_size), nn.GELU(),
                                      nn.Linear(hidden_size, hidden_size))

    def num_tokens(self, seconds: float) -> int:
        t = max(1, math.ceil(seconds * self.common_rate_hz - 1e-9))
        return math.ceil(t / self.window) * self.k

    def expert_weights(self) -> dict[str, float]:
        """Current sigmoid weight per expert (all 1.0 for naive concatenation)."""
        if self.fusion != "mixformer":
            return {n: 1.0 for n in self.names}
        return {n: float(w) for n, w in zip(self.names, torch.sigmoid(self.gates.detach()))}

    def forward(self, feats: dict[str, torch.Tensor], lengths: dict[str, torch.Tensor]):
        missing = [n for n in self.names if n not in feats]
        if missing:
            raise ValueError(f"Mix-Former expects features of experts {self.names}; missing {missing}")
        aligned, common_len = {}, None
        for n in self.names:
            x, ln = resample_frames(feats[n], lengths[n], self.rates[n], self.common_rate_hz)
            aligned[n] = (x, ln)
            common_len = ln if common_len is None else torch.minimum(common_len, ln)
        t = int(common_len.max())
        mask = frame_mask(common_len, t)
        if self.fusion == "mixformer":
            outs, wmask = [], None
            weights = torch.sigmoid(self.gates)
            for i, n in enumerate(self.names):
                h, wmask = self.qformers[n](aligned[n][0][:, :t], mask)
                outs.append(h * weights[i])
            return self.proj(torch.cat(outs, -1)), wmask
        x = torch.cat([self.norms[n](aligned[n][0][:, :t]) for n in self.names], -1) * mask[..., None]
        w = math.ceil(t / self.window)
        pad = w * self.window - t
        x = nn.functional.pad(x, (0, 0, 0, pad)).reshape(x.shape[0], w, self.window, -1)
        m = nn.functional.pad(mask, (0, pad)).reshape(x.shape[0], w, self.window)
        cnt = m.sum(-1, keepdim=True).clamp(min=1)
        pooled = x.sum(2) / cnt  # (B, W, D): mean of the valid frames of each window
        return self.proj(pooled), m.any(-1)
