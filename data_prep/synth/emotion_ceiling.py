"""How much of the emotion label the synthetic audio carries: a plain classifier's ceiling.

:func:`prosody_features` turns one utterance into pitch, energy and rhythm statistics (F0 from
``librosa.yin``; voicing from energy and zero crossings). :func:`normalise_per_speaker` z-scores
them within each voice (over all of that voice's utterances, labels unseen), so what is left is
how an utterance differs from its own speaker's habit. :func:`ceiling` trains scikit-learn
classifiers on some voices and sentences and scores macro-F1 on utterances whose voice AND
sentence were both held out, beside the uniform-random, stratified-random and majority
baselines. :func:`style_corpus` voices a sentence set in every emotion (with the pitch and speed
tags drawn as the script writer draws them for user turns: uniformly, independent of the
emotion), so the text says nothing about the label and the pitch/speed tags are nuisance.
``benchmarks/emotion_ceiling.py`` runs it per backend and mixed.
"""
from __future__ import annotations

import numpy as np

from omni.config import EMOTIONS, PITCHES, SPEEDS

SR = 16000
HOP = 160  # 10 ms frames
FEATURES = ("f0_mean_st", "f0_std_st", "f0_range_st", "f0_slope_st_per_s", "f0_velocity_st_per_s",
            "energy_mean_db", "energy_std_db", "energy_range_db", "energy_peak_db",
            "voiced_fraction", "pause_fraction", "syllable_rate_hz", "f0_vibrato_index", "energy_tremolo_index")


def _frames(x: np.ndarray, n: int, frame: int) -> np.ndarray:
    pad = np.pad(x, (frame // 2, frame // 2))
    idx = np.arange(frame)[None, :] + HOP * np.arange(n)[:, None]
    return pad[idx]


def prosody_features(wave: np.ndarray, sr: int = SR) -> np.ndarray:
    """One row of :data:`FEATURES` for a mono utterance (any rate; resampled to 16 kHz).

    F0 in semitones re 100 Hz over voiced frames (energy within 30 dB of the loudest frame and
    zero-crossing rate < 0.2); energy in dB of 25 ms frame RMS over speech frames (within 40 dB of
    the loudest); pauses are frames below -35 dB inside the speech span; syllable rate counts
    peaks of the smoothed energy envelope; ``f0_vibrato_index`` / ``energy_tremolo_index`` are the
    shares of the F0 contour's / the energy contour's 2-12 Hz modulation at 5-7 Hz (a trembling
    voice)."""
    import librosa
    x = np.asarray(wave, np.float32)
    if sr != SR:
        import soxr
        x = soxr.resample(x, sr, SR).astype(np.float32)
    n = 1 + len(x) // HOP
    fr = _frames(x, n, 400)
    rms = np.sqrt(np.mean(fr.astype(np.float64) ** 2, axis=1) + 1e-12)
    db = 20 * np.log10(rms)
    top = db.max()
    zcr = np.mean(np.abs(np.diff(np.signbit(fr), axis=1)), axis=1)
    speech = db > top - 40
    idx = np.flatnonzero(speech)
    a, b = (idx[0], idx[-1] + 1) if len(idx) else (0, n)
    f0 = librosa.yin(x, fmin=60, fmax=500, sr=SR, frame_length=640, hop_length=HOP)[:n]
    voiced = (db[:len(f0)] > top - 30) & (zcr[:len(f0)] < 0.2)
    st = 12 * np.log2(f0 / 100.0)
    v = np.flatnonzero(voiced)
    if len(v) >= 3:
        med = np.median(st[v])
        v = v[np.abs(st[v] - med) < 10]  # octave jumps of yin
    if len(v) >= 3:
        sv, tv = st[v], v * HOP / SR
        f0_mean, f0_std = float(sv.mean()), float(sv.std())
        f0_range = float(np.percentile(sv, 90) - np.percentile(sv, 10))
        f0_slope = float(np.polyfit(tv, sv, 1)[0])
        cont = np.diff(v) == 1
        f0_vel = float(np.mean(np.abs(np.diff(sv)[cont]))) * SR / HOP if cont.any() else 0.0
    else:
        f0_mean = f0_std = f0_range = f0_slope = f0_vel = 0.0
    e = db[speech]
    span = max(b - a, 1)
    env = np.convolve(rms[a:b], np.hanning(7) / np.hanning(7).sum(), mode="same")
    from scipy.signal import find_peaks
    peaks, _ = find_peaks(20 * np.log10(env + 1e-12), prominence=3.0, distance=8)
    trem = _band_share(db[a:b])
    if len(v) >= 10:  # the F0 contour over the voiced span, gaps bridged linearly
        grid = np.arange(v[0], v[-1] + 1)
        vib = _band_share(np.interp(grid, v, st[v]))
    else:
        vib = 0.0
    return np.array([f0_mean, f0_std, f0_range, f0_slope, f0_vel,
                     float(e.mean()), float(e.std()), float(np.percentile(e, 90) - np.percentile(e, 10)),
                     float(top), float(voiced[a:b].mean()), float(np.mean(db[a:b] < top - 35)),
                     len(peaks) / (span * HOP / SR), vib, trem], np.float64)


def _band_share(x: np.ndarray, band=(5.0, 7.0), ref=(2.0, 12.0)) -> float:
    """Share of a 100 Hz contour's modulation power (after removing a 0.5 s moving average) that
    lies in ``band`` Hz, of that in ``ref`` Hz: a 6 Hz vibrato or tremolo stands out."""
    if len(x) < 50:
        return 0.0
    k = 51
    trend = np.convolve(np.pad(x, k // 2, mode="edge"), np.ones(k) / k, mode="valid")
    p = np.abs(np.fft.rfft((x - trend) * np.hanning(len(x)))) ** 2
    hz = np.fft.rfftfreq(len(x), HOP / SR)
    total = p[(hz >= ref[0]) & (hz <= ref[1])].sum()
    return float(p[(hz >= band[0]) & (hz <= band[1])].sum() / total) if total > 0 else 0.0


def normalise_per_speaker(X: np.ndarray, speakers) -> np.ndarray:
    """Z-score every feature within each speaker (mean and std over that speaker's rows)."""
    X = np.asarray(X, np.float64)
    out = np.empty_like(X)
    speakers = np.asarray(speakers)
    for s in np.unique(speakers):
        m = speakers == s
        mu, sd = X[m].mean(0), X[m].std(0)
        out[m] = (X[m] - mu) / np.where(sd > 1e-9, sd, 1.0)
    return out


def macro_f1(y_true, y_pred, labels) -> float:
    """Macro-F1 over ``labels`` (a label never true nor predicted scores 0), as scikit-learn's
    ``f1_score(average="macro", zero_division=0)``, without its per-call overhead."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    f = []
    for lab in labels:
        t, p = y_true == lab, y_pred == lab
        den = int(t.sum() + p.sum())
        f.append(2 * int((t & p).sum()) / den if den else 0.0)
    return float(np.mean(f)) if f else 0.0


def baselines(y_train, y_test, labels=EMOTIONS, draws: int = 200, seed: int = 0) -> dict[str, float]:
    """Macro-F1 of the uniform-random, stratified-random (drawn at the training label
    frequencies) and majority classifiers on ``y_test`` (random ones averaged over ``draws``
    seeded draws)."""
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    labels = [l for l in labels if l in set(y_train) | set(y_test)]
    classes, counts = np.unique(y_train, return_counts=True)
    rng = np.random.default_rng(seed)
    out = {}
    for name, prior in (("uniform_random", None), ("stratified_random", counts / counts.sum())):
        out[name] = float(np.mean([macro_f1(y_test, rng.choice(classes, size=len(y_test), p=prior), labels)
                                   for _ in range(draws)]))
    out["majority"] = macro_f1(y_test, np.full(len(y_test), classes[np.argmax(counts)]), labels)
    return out


CLASSIFIERS = ("logreg", "forest")


def _models(seed: int, names=CLASSIFIERS):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    make = {"logreg": lambda: make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000)),
            "forest": lambda: RandomForestClassifier(n_estimators=300, min_samples_leaf=2, random_state=seed, n_jobs=1)}
    return {n: make[n]() for n in names}


def ceiling(X: np.ndarray, y, speakers, sentences, test_speakers, test_sentences, seed: int = 0,
            normalise: bool = True, classifiers=CLASSIFIERS) -> dict:
    """Macro-F1 on held-out voices x held-out sentences of the better of two plain classifiers
    (logistic regression, random forest; ``classifiers`` names which), chosen by cross-validation
    over training voices.

    ``X``: :func:`prosody_features` rows; ``y``: emotion names; ``speakers`` / ``sentences``: one id
    per row. Rows of a test voice with a training sentence (or the reverse) are not used."""
    from sklearn.metrics import f1_score
    from sklearn.model_selection import GroupKFold, cross_val_predict
    y, speakers, sentences = np.asarray(y), np.asarray(speakers), np.asarray(sentences)
    Xn = normalise_per_speaker(X, speakers) if normalise else np.asarray(X, np.float64)
    test_v, test_s = np.isin(speakers, list(test_speakers)), np.isin(sentences, list(test_sentences))
    tr, te = ~test_v & ~test_s, test_v & test_s
    if not tr.any() or not te.any():
        raise ValueError(f"empty split: {int(tr.sum())} training rows, {int(te.sum())} test rows")
    labels = [e for e in EMOTIONS if e in set(y[tr])]
    n_groups = len(np.unique(speakers[tr]))
    cv = {}
    for name, model in _models(seed, classifiers).items():
        if n_groups >= 2:
            pred = cross_val_predict(model, Xn[tr], y[tr], groups=speakers[tr], cv=GroupKFold(min(4, n_groups)))
            cv[name] = float(f1_score(y[tr], pred, labels=labels, average="macro", zero_division=0))
        else:
            cv[name] = 0.0
    best = max(cv, key=cv.get)
    model = _models(seed, (best,))[best].fit(Xn[tr], y[tr])
    pred = model.predict(Xn[te])
    f1 = float(f1_score(y[te], pred, labels=labels, average="macro", zero_division=0))
    from sklearn.metrics import confusion_matrix
    res = {"macro_f1": round(f1, 4), "classifier": best, "cv_macro_f1": {k: round(v, 4) for k, v in cv.items()},
           "train_rows": int(tr.sum()), "test_rows": int(te.sum()),
           "per_class_f1": dict(zip(labels, np.round(f1_score(y[te], pred, labels=labels, average=None,
                                                               zero_division=0), 3).tolist())),
           "confusion": {"labels": labels, "matrix": confusion_matrix(y[te], pred, labels=labels).tolist()},
           "baselines": {k: round(v, 4) for k, v in baselines(y[tr], y[te], labels, seed=seed).items()}}
    return res


def style_corpus(tts, voices, sentences, seed: int = 0, emotions=EMOTIONS):
    """Every (voice, sentence) in every emotion; pitch and speed tags drawn uniformly per utterance
    (seeded), as the script writer draws them for user turns. Yields dicts with ``wave`` and labels."""
    rng = np.random.default_rng(seed)
    for v in voices:
        for k, text in enumerate(sentences):
            for e in emotions:
                pitch, speed = str(rng.choice(PITCHES)), str(rng.choice(SPEEDS))
                sp = tts.synthesize(text, v, e, pitch, speed)
                yield {"wave": sp.wave, "voice": v, "sentence": k, "emotion": e, "pitch": pitch, "speed": speed}
