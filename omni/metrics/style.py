"""Style metrics (OmniChat): emotion / pitch / speed F1, macro and weighted, and confusion matrices.

Labels are compared case-insensitively. The label set of a confusion matrix is the style's
vocabulary (``STYLE_LABELS``) followed by any other label seen in the data, so matrices of
different runs line up row for row.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

STYLE_LABELS = {
    "emotion": ["neutral", "happy", "sad", "angry", "surprised", "fearful", "disgusted"],
    "pitch": ["high", "normal", "low"],
    "speed": ["fast", "normal", "slow"],
}


def classification_report(refs: Sequence[str], preds: Sequence[str], labels: Sequence[str] | None = None) -> dict:
    """F1 macro/weighted, accuracy, per-label F1 and support, and the confusion matrix
    (rows = reference label, columns = predicted label, in ``labels`` order).

    Macro F1 averages over labels present in the references (a label never referenced and never
    predicted does not count). Raises ``ValueError`` on mismatched lengths or no pairs.
    """
    from sklearn.metrics import confusion_matrix, f1_score

    if isinstance(refs, str) or isinstance(preds, str):
        raise TypeError("pass lists of labels, not a single string")
    if len(refs) != len(preds):
        raise ValueError(f"{len(refs)} reference labels but {len(preds)} predictions: lengths must match")
    if not refs:
        raise ValueError("no labelled pairs: nothing to score")
    r = [str(x).strip().lower() for x in refs]
    p = [str(x).strip().lower() for x in preds]
    order = list(dict.fromkeys([*(x.lower() for x in (labels or [])), *sorted(set(r) | set(p))]))
    present = sorted(set(r) | set(p), key=order.index)
    f1s = f1_score(r, p, labels=present, average=None, zero_division=0)
    support = {lab: r.count(lab) for lab in present}
    scored = [lab for lab in present if support[lab] > 0]
    macro = float(np.mean([f for lab, f in zip(present, f1s) if support[lab] > 0]))
    weighted = float(f1_score(r, p, labels=scored, average="weighted", zero_division=0))
    cm = confusion_matrix(r, p, labels=order)
    return {"macro_f1": macro, "weighted_f1": weighted, "accuracy": float(np.mean([a == b for a, b in zip(r, p)])),
            "count": len(r), "labels": order, "confusion": cm.tolist(),
            "per_label_f1": {lab: float(f) for lab, f in zip(present, f1s)}, "support": support}


def style_metrics(refs: Sequence[dict], preds: Sequence[dict]) -> dict:
    """Per style key (emotion, pitch, speed): :func:`classification_report` over the pairs where both
    sides carry the key; a key with no such pair is ``{"missing": reason}``."""
    if len(refs) != len(preds):
        raise ValueError(f"{len(refs)} reference styles but {len(preds)} predicted: lengths must match")
    out = {}
    for key, labels in STYLE_LABELS.items():
        pairs = [(a[key], b[key]) for a, b in zip(refs, preds) if a.get(key) and b.get(key)]
        if not pairs:
            out[key] = {"missing": f"no pair carries a {key} label"}
            continue
        out[key] = classification_report([a for a, _ in pairs], [b for _, b in pairs], labels)
    return out
