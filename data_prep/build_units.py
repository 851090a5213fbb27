"""Build the built-in phonetic speech tokenizer (``pretrained:phone-units``) from our own TTS.

    python -m data_prep.build_units [--out DIR] [--quick] [--seed 0]

Without ``--out`` it assembles ``$OMNI_CACHE/phone-units`` (what ``make units`` runs; skipped
when a complete build of the same recipe is there). Steps, all seeded and offline:

1. Corpus: template-writer sentences (plus backchannels and interjections) voiced by espeak-ng
   (the training voices: every generator voice except the held-out family :data:`HELDOUT_VARIANTS`)
   and by the Piper voice family (joe variants), in random styles. Both backends report phoneme
   timings (``Speech.phones``): frames inside a phoneme get its class, quiet frames outside any
   phoneme are silence, loud unlabelled frames are ignored by the loss.
2. Augmentation: leading/trailing silence, gain in [-20, +6] dB, and for two of three copies
   procedural room noise at 5-35 dB SNR.
3. The recogniser (:func:`omni.speech.phonetic_train.train_recognizer`).
4. The decoder corpus: the target voice (Piper ``joe``, neutral) -> units by the recogniser
   just trained -> 4 frames of cepstra / log-F0 / voicing per unit; then
   :func:`omni.speech.phonetic_train.train_decoder`.

``--quick`` makes a small, fast build for tests (a few utterances, a few steps): it runs the
same code and loads as the same kind, but its units mean little.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from data_prep.synth import catalogue as C
from data_prep.synth import scenes
from data_prep.synth.scripts import TemplateWriter
from data_prep.synth.tts import ASSISTANT_VOICES, USER_VOICES, get_tts
from omni.speech import phonetic as P

NAME = "phone-units"
HELDOUT_VARIANTS = ("+f4", "+f5", "+Andy")   # voice family kept out of every training set
EXTRA_ESPEAK = ("en-us", "en", "en+m2", "en+m6", "en-us+f1", "en+f2", "en-us+m1", "en+klatt", "en-us+m6",
                "en+Mario", "en+Alicia", "en+boris", "en+michel", "en+steph", "en-us+f3", "en+m5")
STYLES = (("neutral", 6), ("happy", 1), ("sad", 1), ("angry", 1), ("surprised", 1), ("fearful", 1), ("disgusted", 1))
TARGET_VOICE = "joe"


def heldout(voice: str) -> bool:
    return any(voice.endswith(v) for v in HELDOUT_VARIANTS)


def training_voices() -> tuple[list[str], list[str]]:
    """(espeak voices, Piper voices) the tokenizer learns from; the held-out family excluded."""
    from data_prep.synth.piper_tts import VOICES as PIPER_VOICES
    espeak = [v for v in dict.fromkeys(USER_VOICES + ASSISTANT_VOICES + EXTRA_ESPEAK) if not heldout(v)]
    return espeak, list(PIPER_VOICES)


def sentences(seed: int, n: int) -> list[str]:
    rng = np.random.default_rng(seed)
    out: list[str] = []
    seen: set[str] = set()
    scen = ("chitchat", "emotion", "event", "music")
    while len(out) < n:
        script = TemplateWriter().write(rng, scen[int(rng.integers(len(scen)))], 6)
        for t in script.turns:
            if t.text not in seen:
                seen.add(t.text)
                out.append(t.text)
        if rng.random() < 0.15:
            out.append(str(rng.choice(C.BACKCHANNELS)).capitalize() + ".")
        if rng.random() < 0.1:
            out.append(f"{rng.choice(C.INTERJECTIONS)} {out[-2].lower() if len(out) > 1 else 'I see'}")
    return out[:n]


def group_phones(phones: list[tuple[str, float, float]]) -> list[tuple[int, float, float]]:
    """Backend phonemes -> (class id + 1, start_s, end_s). espeak gives whole phonemes; Piper one
    IPA character each: stress marks join the next phoneme, length marks the previous one, and
    consecutive characters join while the longer name is a known phoneme (longest match)."""
    names = set(P.PHONES) | set(P.MERGE)
    chars: list[list] = []
    for p, a, b in phones:
        if p in ("ˈ", "ˌ"):
            chars.append(["", a, b])     # a stress mark's time belongs to the next phoneme
            continue
        if p in ("ː", "ˑ") and chars:
            chars[-1][0] += p
            chars[-1][2] = b
            continue
        if chars and chars[-1][0] == "":
            chars[-1][0], chars[-1][2] = p, b
            continue
        chars.append([p, a, b])
    out: list[tuple[int, float, float]] = []
    i = 0
    while i < len(chars):
        best = 1
        for k in (3, 2):
            if i + k <= len(chars) and all(abs(chars[i + j][1] - chars[i + j - 1][2]) < 1e-4 for j in range(1, k)):
                if "".join(c[0] for c in chars[i:i + k]) in names:
                    best = k
                    break
        name = "".join(c[0] for c in chars[i:i + best])
        out.append((P.phone_id(name), chars[i][1], chars[i + best - 1][2]))
        i += best
    return out


def frame_labels(wave: np.ndarray, phones: list[tuple[int, float, float]], lead_s: float) -> np.ndarray:
    """Per 10 ms frame (own samples): phone class + 1, 0 silence, -100 ignore."""
    n = len(wave) // P.HOP
    lab = np.full(n, -100, np.int64)
    db = 10 * np.log10(np.mean(wave[: n * P.HOP].reshape(n, P.HOP).astype(np.float64) ** 2, 1) + 1e-20)
    lab[db < db.max() - 40] = 0
    centre = (np.arange(n) + 0.5) * P.HOP / P.SAMPLE_RATE_HZ
    for pid, a, b in phones:
        m = (centre >= a + lead_s) & (centre < b + lead_s)
        lab[m] = pid if pid else -100        # phonemes outside our classes: ignored, not silence
    return lab


def _augment(wave: np.ndarray, rng: np.random.Generator, noisy: bool, noise_bank):
    """(augmented audio, the clean audio on the same timeline, lead-in seconds)."""
    lead = float(rng.uniform(0.05, 0.6))
    tail = float(rng.uniform(0.05, 0.4))
    clean = np.concatenate([np.zeros(int(lead * P.SAMPLE_RATE_HZ), np.float32), wave,
                            np.zeros(int(tail * P.SAMPLE_RATE_HZ), np.float32)])
    x = clean * np.float32(10 ** (rng.uniform(-20, 6) / 20))
    if noisy:
        nz = noise_bank[int(rng.integers(len(noise_bank)))]
        o = int(rng.integers(0, max(1, len(nz) - len(x))))
        nz = np.resize(nz[o:], len(x))
        snr = rng.uniform(5, 35)
        x = x + nz * np.float32(np.sqrt(np.mean(x ** 2) / (np.mean(nz ** 2) + 1e-12) / 10 ** (snr / 10)))
    return np.clip(x, -1, 1).astype(np.float32), clean, lead


def frame_features(wave: np.ndarray, fe: P.Frontend) -> dict[str, np.ndarray]:
    padded = np.concatenate([np.zeros(P.WIN - P.HOP), wave.astype(np.float64)])
    return fe.analyse(fe.frames(padded))


def _say(log, msg):
    if log:
        log(msg)


def build(out_dir: Path, *, quick: bool = False, seed: int = 0, log=print) -> dict:
    """Build the tokenizer into ``out_dir``; returns the recipe + figures (also saved as build.json)."""
    from omni.speech import phonetic_train as T

    t_start = time.time()
    rng = np.random.default_rng(seed)
    fe = P.Frontend()
    espeak_voices, piper_voices = training_voices()
    n_espeak, n_piper, n_target = (24, 6, 8) if quick else (1400, 260, 420)
    rec_steps, dec_steps = (30, 30) if quick else (2200, 2500)
    texts = sentences(seed + 1, n_espeak + n_piper)
    espeak, piper = get_tts("espeak"), get_tts("piper")
    noise_bank = [scenes.synth_noise(12.0, np.random.default_rng(seed + 100 + i))[0].astype(np.float32)
                  for i in range(3 if quick else 10)]
    styles = [s for s, w in STYLES for _ in range(w)]

    # 1-2. labelled, augmented recogniser corpus
    feats, labels, t0 = [], [], time.time()
    utts = [(espeak, espeak_voices, t) for t in texts[:n_espeak]] + [(piper, piper_voices, t) for t in texts[n_espeak:]]
    for k, (tts, voices, text) in enumerate(utts):
        sp = tts.synthesize(text, voices[int(rng.integers(len(voices)))], styles[int(rng.integers(len(styles)))],
                            str(rng.choice(["low", "normal", "high"])), str(rng.choice(["slow", "normal", "fast"])))
        phones = group_phones(sp.phones)
        for copy in range(3):
            x, clean, lead = _augment(sp.wave, rng, noisy=copy > 0, noise_bank=noise_bank)
            f = frame_features(x, fe)
            lab = frame_labels(clean, phones, lead)
            feats.append(f["logmel"])
            labels.append(lab[: len(f["logmel"])])
        if (k + 1) % 200 == 0:
            _say(log, f"corpus: {k + 1}/{len(utts)} utterances ({time.time() - t0:.0f} s)")
    corpus_s = time.time() - t0
    hours = sum(len(f) for f in feats) * P.HOP / P.SAMPLE_RATE_HZ / 3600
    cover = np.concatenate(labels)
    _say(log, f"corpus: {len(utts)} utterances x 3 copies = {hours:.2f} h of frames, "
              f"{np.mean(cover == -100):.1%} ignored, {corpus_s:.0f} s")

    # 3. recogniser
    dil = (1, 2, 4, 8, 16, 1)
    lookahead = 4
    rec_w, rec_stats = T.train_recognizer(feats, labels, len(P.PHONES) + 1, dilations=dil, lookahead=lookahead,
                                          steps=rec_steps, seed=seed, log=log)

    # 4. decoder on the target voice, units from the recogniser
    info = {"phones": list(P.PHONES), "lookahead_frames": lookahead, "decoder_lookahead_units": 1,
            "rec_dilations": list(dil), "dec_dilations": [1, 2, 4, 1], "silence_dbfs": -60.0, "pitch_bin": 0.1,
            "f0_prior_hz": 140.0, "f0_prior_frames": 10.0, "noise_seed": 0, "target_voice": f"piper:{TARGET_VOICE}",
            "heldout_voice_variants": list(HELDOUT_VARIANTS)}
    dec_dummy = T.CausalStack(96, 8, 4 * (P.N_CEP + 2), info["dec_dilations"], vocab=P.num_units()).export("dec")
    dec_dummy["dec.tgt_mu"], dec_dummy["dec.tgt_sd"] = np.zeros(4 * (P.N_CEP + 2)), np.ones(4 * (P.N_CEP + 2))
    tok = P.PhoneticTokenizer({**rec_w, **dec_dummy}, {**info, "num_units": P.num_units()})
    units, targets, t0 = [], [], time.time()
    for text in sentences(seed + 2, n_target):
        sp = piper.synthesize(text, TARGET_VOICE, "neutral", "normal", str(rng.choice(["slow", "normal", "normal", "fast"])))
        wave = np.concatenate([np.zeros(1600, np.float32), sp.wave, np.zeros(1600, np.float32)])
        u = tok.encode(wave)
        f = frame_features(wave, fe)
        n = min(len(u), len(f["cep"]) // P.FRAMES_PER_UNIT)
        v = P.voiced(f["per"], f["db"])
        lf0 = _fill_unvoiced(f["lf0"], v)
        y = np.concatenate([f["cep"], lf0[:, None], v[:, None].astype(np.float64)], 1)
        units.append(u[:n])
        targets.append(y[: n * P.FRAMES_PER_UNIT].reshape(n, -1))
    _say(log, f"decoder corpus: {n_target} target-voice utterances, {sum(len(u) for u in units) / 25 / 60:.1f} min "
              f"({time.time() - t0:.0f} s)")
    dec_w, dec_stats = T.train_decoder(units, targets, P.num_units(), dilations=info["dec_dilations"],
                                       steps=dec_steps, seed=seed, log=log)
    tok = P.PhoneticTokenizer({**rec_w, **dec_w}, {**info, "num_units": P.num_units()})
    tok.save(out_dir)
    report = {"recipe": {"quick": quick, "seed": seed, "espeak_utterances": n_espeak, "piper_utterances": n_piper,
                         "target_utterances": n_target, "rec_steps": rec_steps, "dec_steps": dec_steps,
                         "espeak_voices": espeak_voices, "piper_voices": piper_voices},
              "corpus_hours": round(hours, 3), "recogniser": rec_stats, "decoder": dec_stats,
              "units_used": int(len(np.unique(np.concatenate(units)))), "build_s": round(time.time() - t_start, 1)}
    (out_dir / "build.json").write_text(json.dumps(report, indent=1))
    return report


def _fill_unvoiced(lf0: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Log-F0 with unvoiced frames filled by the nearest voiced value (a smooth target)."""
    idx = np.flatnonzero(v)
    if not idx.size:
        return np.full_like(lf0, np.log(120.0))
    return np.interp(np.arange(len(lf0)), idx, lf0[idx])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m data_prep.build_units", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help="output folder (default: the pretrained cache, as `make units`)")
    ap.add_argument("--quick", action="store_true", help="tiny build for tests")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        rep = build(out, quick=a.quick, seed=a.seed)
        print(json.dumps({k: rep[k] for k in ("corpus_hours", "units_used", "build_s")}))
        return 0
    from omni.pretrained import phone_units_dir
    t0 = time.time()
    path = phone_units_dir(build=lambda tmp: build(tmp, quick=a.quick, seed=a.seed)["recipe"])
    print(f"{NAME}: {path} ({time.time() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
