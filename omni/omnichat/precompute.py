"""Content-expert features computed once at data prep, stored in the shards, read by training.

The Whisper base content expert (``omnichat.content_expert: whisper_base``) is frozen and costs
about a second per user turn on CPU (one 30 s window each), so data prep encodes every user turn
once. With ``omnichat.precompute_content`` (default) ``data_prep.pipeline.Tokenize`` cuts the user
turns exactly as :func:`omni.omnichat.data.turn_examples` will (the turns that open a (user,
assistant) round, ``turn_wave(user, start_s, end_s, omnichat.max_turn_s)`` of the user channel
as decoded from its FLAC) and stores, per dialogue:

* member ``KEY.user_content.npy``: float16 ``(total frames, 512)``, the turns' frames one after
  another (50 Hz, only frames covering real audio: ``ceil(seconds * 50)`` per turn);
* ``meta["omnichat_content"]``: ``{"feature_id", "frame_rate_hz", "dim", "max_turn_s", "dtype",
  "turns": [{"start_s", "end_s", "offset", "frames"}, ...]}``.

Reading: ``ShardStream(..., audio=True)`` returns the array as ``record["user_content"]``;
:func:`turn_features` maps each stored turn to its rows and ``turn_examples`` hands them to the
turn's audio :class:`~omni.omnichat.data.Segment` (``features["content"]``) when the stored
``feature_id`` and ``max_turn_s`` match the config. :class:`~omni.omnichat.model.OmniChatModel`
then uses them and never runs the encoder for that turn (``model.feature_counts``).

Features stored for another expert (or another ``max_turn_s``) are ignored: the expert in the
config then encodes on the fly, with one warning for the slow Whisper base.
"""
from __future__ import annotations

import numpy as np
import torch

from omni.config import OmniChatConfig
from omni.omnichat.experts import WhisperBaseContent
from omni.omnichat.turns import rounds_of, turn_wave

FIELD = "user_content.npy"
"""Shard member suffix (``KEY.user_content.npy``)."""
META_KEY = "omnichat_content"
RECORD_KEY = "user_content"
FRAME_RATE_HZ = 50.0


def feature_id(oc: OmniChatConfig) -> str | None:
    """Id of the content features this config can use from the shards, or None (nothing to read)."""
    if oc.input != "audio" or "content" not in oc.experts or oc.content_kind != "whisper_base":
        return None
    return WhisperBaseContent.FEATURE_ID


def precompute_spec(oc: OmniChatConfig) -> dict | None:
    """What data prep stores for this config (part of the shards' config hash), or None."""
    fid = feature_id(oc)
    if fid is None or not oc.precompute_content:
        return None
    return {"feature_id": fid, "max_turn_s": float(oc.max_turn_s), "dtype": "float16"}


def content_features(user: np.ndarray, meta: dict, expert, max_turn_s: float) -> tuple[np.ndarray, dict]:
    """Encode the user turns of ``meta``'s rounds -> (float16 (frames, dim) array, index for ``meta``)."""
    rows, turns, offset, seen = [], [], 0, set()
    for u, _ in rounds_of(meta):
        span = (float(u["start_s"]), float(u["end_s"]))
        if span in seen:
            continue
        seen.add(span)
        f = expert.features(turn_wave(user, span[0], span[1], max_turn_s)).numpy()
        rows.append(f.astype(np.float16))
        turns.append({"start_s": span[0], "end_s": span[1], "offset": offset, "frames": int(f.shape[0])})
        offset += int(f.shape[0])
    arr = np.concatenate(rows, 0) if rows else np.zeros((0, int(expert.dim)), np.float16)
    index = {"feature_id": getattr(expert, "FEATURE_ID", type(expert).__name__), "frame_rate_hz": expert.frame_rate_hz,
             "dim": int(expert.dim), "max_turn_s": float(max_turn_s), "dtype": "float16", "turns": turns}
    return arr, index


def add_content_features(record: dict, oc: OmniChatConfig, expert=None) -> dict:
    """In-memory records (tests, benchmark): the same features data prep stores, added to ``record``
    (``record["user_content"]`` and ``record["meta"]["omnichat_content"]``). Returns ``record``."""
    if expert is None:
        expert = WhisperBaseContent()
    arr, index = content_features(np.asarray(record["user"], np.float32), record["meta"], expert, oc.max_turn_s)
    record[RECORD_KEY] = arr
    record["meta"][META_KEY] = index
    return record


def turn_features(record: dict, oc: OmniChatConfig) -> dict[tuple[float, float], object]:
    """{(start_s, end_s): float32 tensor (frames, dim)} of the stored content features usable with
    ``oc`` (empty when the record has none, or they were made for another expert / max_turn_s)."""
    fid = feature_id(oc)
    arr = record.get(RECORD_KEY)
    index = (record.get("meta") or {}).get(META_KEY)
    if fid is None or arr is None or not index or index.get("feature_id") != fid \
            or float(index.get("max_turn_s", -1)) != float(oc.max_turn_s):
        return {}
    full = torch.from_numpy(np.asarray(arr, dtype=np.float32))  # one copy; turns are views of it
    if full.ndim != 2 or full.shape[1] != int(index["dim"]):
        raise ValueError(f"record {record.get('key')!r}: stored content features have shape {tuple(full.shape)}, "
                         f"index says dim {index['dim']}: re-run data prep")
    out = {}
    for t in index["turns"]:
        a, n = int(t["offset"]), int(t["frames"])
        if a + n > full.shape[0]:
            raise ValueError(f"record {record.get('key')!r}: content feature index runs past the stored array "
                             f"({a + n} > {full.shape[0]} frames): re-run data prep")
        out[(float(t["start_s"]), float(t["end_s"]))] = full[a:a + n]
    return out
