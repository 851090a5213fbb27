"""Evaluation metrics: plain functions on plain data (no models, no Ray)."""
from omni.metrics.text import cer, wer
from omni.metrics.duplex import response_latencies, voiced_segments

__all__ = ["cer", "wer", "response_latencies", "voiced_segments"]
