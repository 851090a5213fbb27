"""Resuming from a DeepSpeed checkpoint without running code from it.

DeepSpeed reads its ``.pt`` files with ``torch.load(weights_only=False)``: a file holding a pickle
payload would run it. :func:`load_engine_checkpoint` wraps ``engine.load_checkpoint`` so that every
``torch.load`` inside reads weights-only, with an allowlist of exactly the DeepSpeed state types
its checkpoints hold (:func:`deepspeed_safe_globals`); anything else is refused with
:class:`UnsafeCheckpointError` before any of it runs. The loop's own state is JSON
(``omni.train_loop``).
"""
from __future__ import annotations

import contextlib
import pickle

import torch


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint file that cannot be read weights-only (it would run code when unpickled)."""


def deepspeed_safe_globals() -> list:
    """The non-tensor types DeepSpeed writes into its checkpoint files, and nothing else: found with
    ``torch.serialization.get_unsafe_globals_in_checkpoint`` on ZeRO 0/1/2/3 checkpoints (fp32, bf16,
    LoRA, gradient accumulation). ``DynamicLossScaler`` is the fp16 (GPU) variant of ``LossScaler``.
    All are plain value holders: rebuilding them runs no code beyond setting attributes.
    (DeepSpeed is imported here, not at the top: its import costs seconds, and only a resume needs it.)"""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [ZeroStageEnum, LossScaler, DynamicLossScaler, fragment_address]


def safe_torch_load(f, map_location=None, **kw):
    """``torch.load(weights_only=True)`` allowing exactly :func:`deepspeed_safe_globals`; a file that
    needs anything else (a pickle payload) raises :class:`UnsafeCheckpointError` before any of it runs."""
    kw.pop("weights_only", None)
    kw.pop("pickle_module", None)
    with torch.serialization.safe_globals(deepspeed_safe_globals()):
        try:
            return _TORCH_LOAD(f, map_location=map_location, weights_only=True, **kw)
        except pickle.UnpicklingError as e:
            # torch's message: a generic paragraph, then the line naming the refused global
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [type(e).__name__]
            why = next((ln for ln in lines if "GLOBAL" in ln or "Unsupported" in ln), lines[-1])
            raise UnsafeCheckpointError(
                f"refusing to load checkpoint file {f}: it is not weights-only ({why[:300]}). Omni reads "
                f"DeepSpeed checkpoints with torch.load(weights_only=True) and DeepSpeed's own state types "
                f"only; this trainer never writes a file that needs more — delete that checkpoint or start "
                f"the run afresh"
            ) from None


_TORCH_LOAD = torch.load


@contextlib.contextmanager
def _weights_only_torch_load():
    """Within the block every ``torch.load`` (DeepSpeed calls it with ``weights_only=False`` from its
    checkpoint engine and optimizers) goes through :func:`safe_torch_load`."""
    torch.load = safe_torch_load
    try:
        yield
    finally:
        torch.load = _TORCH_LOAD


def load_engine_checkpoint(engine, ckpt_dir: str, tag: str = "ckpt"):
    """``engine.load_checkpoint`` with every ``.pt`` file read weights-only (see :func:`safe_torch_load`)."""
    with _weights_only_torch_load():
        path, client_state = engine.load_checkpoint(ckpt_dir, tag=tag)
    if path is None:
        raise FileNotFoundError(f"no DeepSpeed checkpoint {tag!r} in {ckpt_dir}")
    return path, client_state
