"""Corpus readers: one small class per ``data.sources[*].kind`` (``synthetic`` lives in the pipeline).

Each reader has ``list_items() -> list[item]`` (cheap: file listing and text only, run on the
driver) and ``load(item, data_cfg) -> record`` (decode, check, resample to 16 kHz mono, build
the dialogue record of docs/architecture.md; run inside Ray Data tasks). An item is a small
JSON-able dict ``{"source", "kind", "key", "input", ...}``; ``input`` is what
``rejects.jsonl`` shows. A bad row raises :class:`data_prep.validate.Reject` in ``load``.

How single utterances become records (``manifest``, ``librispeech``): one record per
utterance with **one assistant turn** over the whole recording (``meta.task = "utterance"``);
the audio is on the assistant channel and the user channel is silence of the same length.
The align stage then gets both an ASR and a TTS example from it; dialogue stages see a
record whose only round has an empty user section (filter on ``meta.task`` to exclude).

One module per layout (each documents its own): :mod:`.manifest` (JSONL rows),
:mod:`.librispeech`, :mod:`.dailytalk`, :mod:`.stereo` (two-channel dialogue WAVs); what they
share (safe opening, decoding with limits, 16 kHz, keys, paths) is in :mod:`.files`;
:mod:`.fixtures` makes small corpora of each layout for tests and benchmarks.
"""
from __future__ import annotations

from pathlib import Path

from data_prep.sources.dailytalk import DAILYTALK_GAP_S, DailyTalkSource
from data_prep.sources.files import SAMPLE_RATE_HZ, make_key
from data_prep.sources.librispeech import LibriSpeechSource
from data_prep.sources.manifest import ManifestSource
from data_prep.sources.stereo import StereoDialogueSource
from data_prep.validate import Reject
from omni.config import DataConfig, SourceConfig

__all__ = ["DAILYTALK_GAP_S", "READERS", "SAMPLE_RATE_HZ", "DailyTalkSource", "LibriSpeechSource", "ManifestSource",
           "StereoDialogueSource", "list_items", "load_record", "make_key", "reader_for"]

READERS = {c.kind: c for c in (ManifestSource, LibriSpeechSource, DailyTalkSource, StereoDialogueSource)}


def reader_for(cfg: SourceConfig):
    if cfg.kind not in READERS:
        raise ValueError(f"source {cfg.name!r}: kind {cfg.kind!r} has no corpus reader (one of {sorted(READERS)})")
    if not cfg.path:
        raise ValueError(f"source {cfg.name!r} (kind {cfg.kind}) needs data.sources[].path")
    if not Path(cfg.path).exists():
        raise FileNotFoundError(f"source {cfg.name!r}: {cfg.path} does not exist (data.sources[].path)")
    return READERS[cfg.kind](cfg)


def list_items(cfg: SourceConfig) -> list[dict]:
    """All rows of one source, in a deterministic order."""
    return reader_for(cfg).list_items()


def load_record(item: dict, data_cfg: DataConfig) -> dict:
    """Item → 16 kHz dialogue record; raises :class:`Reject` for a bad row (also one that
    ``list_items`` already found bad: ``item["reject"] = [code, detail]``)."""
    if item.get("reject"):
        raise Reject(*item["reject"])
    return READERS[item["kind"]].load(item, data_cfg)
