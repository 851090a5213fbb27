"""Evaluation metrics: plain functions on plain data (no models, no Ray). See docs/evaluation.md.

* :mod:`omni.metrics.text`   — ``normalize`` (the project's one text normaliser), WER/CER, TTS intelligibility
* :mod:`omni.metrics.nlg`    — BLEU, ROUGE-L, METEOR, BERTScore (0-100)
* :mod:`omni.metrics.style`  — emotion/pitch/speed F1 and confusion matrices
* :mod:`omni.metrics.duplex` — turn-taking metrics from two-channel timelines
* :mod:`omni.metrics.judge`  — optional LLM judge over an OpenAI-compatible endpoint
"""
from omni.metrics.duplex import (
           duplex_metrics,
           response_latencies,
           turn_taking_events,
           voiced_segments,
)
from omni.metrics.text import cer, error_rates, normalize, tts_intelligibility, wer

__all__ = ["cer", "duplex_metrics", "error_rates", "normalize", "response_latencies", "tts_intelligibility",
           "turn_taking_events", "voiced_segments", "wer"]
