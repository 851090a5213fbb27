"""Training the phonetic tokenizer's two networks (torch, CPU) and exporting them to numpy.

* :func:`train_recognizer` - frame-level phone classification from 40-band log-mel frames; a
  causal dilated conv stack whose output at frame ``t`` is scored against the label of frame
  ``t - lookahead`` (so the run-time encoder holds a unit back by the look-ahead only).
* :func:`train_decoder` - unit sequences -> 4 frames of target-voice parameters per unit (MSE on
  standardised cepstra, log-F0 and voicing); output ``i`` is scored against unit ``i - lookahead``.

Both return the flat weight dict that :class:`omni.speech.phonetic.ConvStack` evaluates; the
run-time numpy stack and the torch module agree to float32 rounding (tested). Corpus building
(TTS, phone labels, noise) lives in ``data_prep.build_units``.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn


class CausalStack(nn.Module):
    """Mirror of :class:`omni.speech.phonetic.ConvStack` (kernel 3, residual ReLU, causal)."""

    def __init__(self, d_in: int, channels: int, d_out: int, dilations: Sequence[int], vocab: int | None = None):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_in) if vocab else None
        self.inp = nn.Linear(d_in, channels)
        self.dilations = tuple(int(d) for d in dilations)
        self.convs = nn.ModuleList(nn.Conv1d(channels, channels, 3, dilation=d) for d in self.dilations)
        self.out = nn.Linear(channels, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, d_in) float or (B, T) ids -> (B, T, d_out)."""
        h = self.inp(self.embed(x) if self.embed is not None else x).transpose(1, 2)
        for conv, d in zip(self.convs, self.dilations):
            h = h + torch.relu(conv(nn.functional.pad(h, (2 * d, 0))))
        return self.out(h.transpose(1, 2))

    def export(self, prefix: str) -> dict[str, np.ndarray]:
        f = lambda t: t.detach().cpu().numpy().astype(np.float32)  # noqa: E731
        w = {f"{prefix}.in_w": f(self.inp.weight), f"{prefix}.in_b": f(self.inp.bias),
             f"{prefix}.out_w": f(self.out.weight), f"{prefix}.out_b": f(self.out.bias)}
        if self.embed is not None:
            w[f"{prefix}.embed"] = f(self.embed.weight)
        for i, conv in enumerate(self.convs):
            c = conv.weight.shape[0]
            w[f"{prefix}.l{i}.w"] = f(conv.weight.permute(0, 2, 1).reshape(c, 3 * c))  # taps t-2d, t-d, t
            w[f"{prefix}.l{i}.b"] = f(conv.bias)
        return w


def _crops(rng: np.random.Generator, lengths: Sequence[int], batch: int, crop: int):
    for i in rng.integers(len(lengths), size=batch):
        n = int(lengths[i])
        o = int(rng.integers(0, max(1, n - crop + 1)))
        yield int(i), o, min(crop, n - o)


def _fit(model: nn.Module, batches: Callable[[], tuple], loss_fn, steps: int, lr: float,
         log: Callable[[str], None] | None, what: str) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    t0, ema = time.time(), None
    for step in range(steps):
        x, y = batches()
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        ema = float(loss) if ema is None else 0.98 * ema + 0.02 * float(loss)
        if log and (step % max(1, steps // 10) == 0 or step == steps - 1):
            log(f"{what}: step {step + 1}/{steps} loss {ema:.3f} ({time.time() - t0:.0f} s)")
    return float(ema)


def train_recognizer(feats: Sequence[np.ndarray], labels: Sequence[np.ndarray], n_classes: int, *,
                     channels: int = 128, dilations: Sequence[int] = (1, 2, 4, 8, 16, 1), lookahead: int = 4,
                     steps: int = 2000, batch: int = 16, crop: int = 200, lr: float = 3e-3, seed: int = 0,
                     log: Callable[[str], None] | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Frame features (T, D) with labels (T,) in [0, n_classes) -> (weights, stats)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    allx = np.concatenate(feats)
    mu, sd = allx.mean(0).astype(np.float32), (allx.std(0) + 1e-3).astype(np.float32)
    xs = [((f - mu) / sd).astype(np.float32) for f in feats]
    lengths = [len(f) for f in feats]
    model = CausalStack(feats[0].shape[1], channels, n_classes, dilations)

    def batches():
        bx = np.zeros((batch, crop + lookahead, xs[0].shape[1]), np.float32)
        by = np.full((batch, crop), -100, np.int64)
        for b, (i, o, n) in enumerate(_crops(rng, lengths, batch, crop + lookahead)):
            bx[b, :n] = xs[i][o:o + n]
            m = max(0, n - lookahead)
            by[b, :m] = labels[i][o:o + m]
        return torch.from_numpy(bx), torch.from_numpy(by)

    def loss_fn(out, y):  # output t + lookahead scores label t
        return nn.functional.cross_entropy(out[:, lookahead:].reshape(-1, n_classes), y.reshape(-1), ignore_index=-100)

    final = _fit(model, batches, loss_fn, steps, lr, log, "recogniser")
    w = model.export("rec")
    w["rec.feat_mu"], w["rec.feat_sd"] = mu, sd
    return w, {"loss": final, "params": sum(p.numel() for p in model.parameters())}


def recognizer_accuracy(weights: dict[str, np.ndarray], feats: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                        dilations: Sequence[int], lookahead: int) -> float:
    """Frame accuracy of exported weights (torch forward, whole utterances)."""
    n_classes, channels = weights["rec.out_w"].shape
    model = CausalStack(feats[0].shape[1], channels, n_classes, dilations)
    _load(model, weights, "rec")
    mu, sd = weights["rec.feat_mu"], weights["rec.feat_sd"]
    hit = tot = 0
    with torch.no_grad():
        for f, y in zip(feats, labels):
            x = np.concatenate([f, np.full((lookahead, f.shape[1]), np.log(1e-8), np.float32)])
            x = (x - mu) / sd
            p = model(torch.from_numpy(x[None].astype(np.float32)))[0, lookahead:].argmax(-1).numpy()
            hit += int((p[: len(y)] == y).sum())
            tot += len(y)
    return hit / max(1, tot)


def _load(model: CausalStack, w: dict[str, np.ndarray], prefix: str) -> None:
    t = lambda a: torch.from_numpy(np.asarray(a, np.float32))  # noqa: E731
    with torch.no_grad():
        model.inp.weight.copy_(t(w[f"{prefix}.in_w"]))
        model.inp.bias.copy_(t(w[f"{prefix}.in_b"]))
        model.out.weight.copy_(t(w[f"{prefix}.out_w"]))
        model.out.bias.copy_(t(w[f"{prefix}.out_b"]))
        if model.embed is not None:
            model.embed.weight.copy_(t(w[f"{prefix}.embed"]))
        for i, conv in enumerate(model.convs):
            c = conv.weight.shape[0]
            conv.weight.copy_(t(w[f"{prefix}.l{i}.w"]).reshape(c, 3, c).permute(0, 2, 1))
            conv.bias.copy_(t(w[f"{prefix}.l{i}.b"]))


def train_decoder(units: Sequence[np.ndarray], targets: Sequence[np.ndarray], vocab: int, *, embed: int = 96,
                  channels: int = 192, dilations: Sequence[int] = (1, 2, 4, 1), lookahead: int = 1,
                  steps: int = 2500, batch: int = 16, crop: int = 60, lr: float = 3e-3, seed: int = 0,
                  log: Callable[[str], None] | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Unit sequences (N,) with per-unit targets (N, D) -> (weights, stats). Targets are
    standardised (mean/std saved as ``dec.tgt_mu``/``dec.tgt_sd``)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    ally = np.concatenate(targets)
    mu, sd = ally.mean(0), ally.std(0) + 1e-3
    ys = [((t - mu) / sd).astype(np.float32) for t in targets]
    lengths = [len(u) for u in units]
    model = CausalStack(embed, channels, ys[0].shape[1], dilations, vocab=vocab)

    def batches():
        bu = np.zeros((batch, crop + lookahead), np.int64)
        by = np.zeros((batch, crop, ys[0].shape[1]), np.float32)
        bm = np.zeros((batch, crop, 1), np.float32)
        for b, (i, o, n) in enumerate(_crops(rng, lengths, batch, crop + lookahead)):
            bu[b, :n] = units[i][o:o + n]
            m = max(0, n - lookahead)
            by[b, :m] = ys[i][o:o + m]
            bm[b, :m] = (units[i][o:o + m] != 0)[:, None]   # silence units decode to zeros anyway
        return torch.from_numpy(bu), (torch.from_numpy(by), torch.from_numpy(bm))

    def loss_fn(out, y):
        target, mask = y
        err = (out[:, lookahead:] - target) ** 2 * mask
        return err.sum() / (mask.sum() * target.shape[-1] + 1e-6)

    final = _fit(model, batches, loss_fn, steps, lr, log, "decoder")
    w = model.export("dec")
    w["dec.tgt_mu"], w["dec.tgt_sd"] = mu.astype(np.float64), sd.astype(np.float64)
    return w, {"loss": final, "params": sum(p.numel() for p in model.parameters())}
