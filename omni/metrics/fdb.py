"""Full-Duplex-Bench metrics from voice activity (+ time-aligned words when an ASR is available).

Definitions follow Full-Duplex-Bench v1.0 (Lin et al., arXiv 2503.04721, section "Evaluation
Metrics" / the four task sections: Pause Handling, Backchanneling, Smooth Turn-Taking, User
Interruption) as implemented in the benchmark's ``evaluation/eval_*.py`` scripts, and the
timing metrics of v1.5 (arXiv 2507.23159, section "Evaluation Metrics", "Stop and response
latency", computed by its ``evaluation/get_timing.py``). Section titles are cited rather than
numbers because the numbering differs between the arXiv versions.

Everything here is a plain function on plain data: segments are ``(start_s, end_s)`` tuples on
the clip's timeline, words are dicts ``{"word", "start", "end"}`` (seconds). Deviations from the
reference scripts are listed where they happen (search "Deviation").

Voice activity, as the benchmark scores it: Silero VAD with the settings its scripts use
(:data:`omni.vad.FDB_SILERO`; the model is the v6 ONNX file that faster-whisper ships).
``vad="energy"`` scores with the absolute energy threshold of :func:`omni.vad.energy_segments`
instead (no model; any loud sound counts): an option for constructed signals, not the benchmark.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import soundfile as sf

from omni.vad import Segment, merge_segments, speech_segments

TURN_MIN_S = 1.0            # v1.0: output spanning >= 1 s is a turn ...
TURN_MAX_WORDS = 3          # ... or one with more than 3 words (eval_pause_handling.py)
BACKCHANNEL_MAX_S = 1.0     # v1.0 backchannel task: a VAD segment < 1 s with <= 2 words is a backchannel
BACKCHANNEL_MAX_WORDS = 2
BACKCHANNEL_TURN_S = 3.0    # ... and a segment > 3 s is a takeover whatever its words
JSD_WINDOW_S = 0.2          # v1.0: backchannel timing histogram bin
JSD_EPS = 1e-10
STOP_MERGE_GAP_S = 0.5      # v1.5 get_timing.py: model segments split by <= 0.5 s are merged

TASKS = ("pause_handling", "backchannel", "smooth_turn_taking", "user_interruption")

# Published Full-Duplex-Bench v1.0 rows (issue 13; the benchmark README's v1.0 table).
PUBLISHED_V1 = {
    "PersonaPlex": {"pause_tor": 0.584, "backchannel_tor": 0.327, "turn_taking_tor": 0.992,
                    "turn_taking_latency_s": 0.070, "interruption_tor": 1.000, "interruption_latency_s": 0.400},
    "Moshi": {"pause_tor": 0.985, "backchannel_tor": 1.000, "turn_taking_tor": 0.941,
              "turn_taking_latency_s": 0.265, "interruption_tor": 1.000, "interruption_latency_s": 0.257},
    "Freeze-Omni": {"pause_tor": 0.642, "backchannel_tor": 0.636, "turn_taking_tor": 0.336,
                    "turn_taking_latency_s": 0.953, "interruption_tor": 0.867, "interruption_latency_s": 1.409},
    "GPT-Realtime": {"pause_tor": 0.010, "backchannel_tor": 0.000, "turn_taking_tor": 1.000,
                     "turn_taking_latency_s": 1.470, "interruption_tor": 0.970, "interruption_latency_s": 1.500},
}


def clip_segments(segments, start_s: float, end_s: float) -> list[Segment]:
    """The parts of ``segments`` inside ``[start_s, end_s]``."""
    return [(max(s, start_s), min(e, end_s)) for s, e in segments if e > start_s and s < end_s]


def words_in(words, start_s: float, end_s: float) -> list[dict]:
    """Words that start inside ``[start_s, end_s)`` (the benchmark truncates audio at a start time)."""
    return [w for w in (words or []) if start_s <= float(w["start"]) < end_s]


# ---------------------------------------------------------------------------- turn decisions
def takes_turn(segments, start_s: float, end_s: float, words=None) -> tuple[bool, float | None]:
    """(took the turn, onset_s) of the model's output inside ``[start_s, end_s]``.

    v1.0 rule (Pause Handling / Smooth Turn-Taking / User Interruption; ``eval_pause_handling.py``):
    with words, the output is a turn when ``last.end - first.start >= 1 s`` or it has more than 3
    words; no words = no turn. Without an ASR the same duration test runs on voice activity:
    first voiced onset to last voiced offset inside the window >= 1 s. ``onset_s`` is the first
    word start (or voiced onset) and is what the latencies are measured from.
    """
    if words is not None:
        ws = words_in(words, start_s, end_s)
        if not ws:
            return False, None
        span = float(ws[-1]["end"]) - float(ws[0]["start"])
        return (span >= TURN_MIN_S or len(ws) > TURN_MAX_WORDS), float(ws[0]["start"])
    segs = clip_segments(segments, start_s, end_s)
    if not segs:
        return False, None
    return segs[-1][1] - segs[0][0] >= TURN_MIN_S, segs[0][0]


def classify_backchannels(segments, start_s: float, end_s: float, words=None) -> tuple[bool, list[Segment]]:
    """(took the turn, backchannel segments) inside ``[start_s, end_s]`` (v1.0 Backchanneling,
    ``eval_backchannel.py``): a VAD segment longer than 3 s is a takeover; otherwise, with words,
    more than 3 words is a takeover, < 1 s with <= 2 words a backchannel, anything else a
    takeover; without words, < 1 s is a backchannel and >= 1 s a takeover.

    Deviation: the reference script keeps the verdict of the *last* segment and empties the
    backchannel list after a takeover; here any takeover sets TOR = 1 and every short segment
    counts as a backchannel (order-independent, so a reader can check it by hand).
    """
    took, bcs = False, []
    for s, e in clip_segments(segments, start_s, end_s):
        dur = e - s
        if dur > BACKCHANNEL_TURN_S:
            took = True
            continue
        if words is not None:
            n = sum(1 for w in words if float(w["start"]) < e and float(w["end"]) > s)
            is_bc = n <= BACKCHANNEL_MAX_WORDS and dur < BACKCHANNEL_MAX_S
        else:
            is_bc = dur < BACKCHANNEL_MAX_S
        if is_bc:
            bcs.append((s, e))
        else:
            took = True
    return took, bcs


def timing_histogram(intervals, duration_s: float, window_s: float = JSD_WINDOW_S) -> np.ndarray:
    """Normalised counts of ``intervals`` per ``window_s`` bin over ``[0, duration_s]`` (+eps),
    as the v1.0 backchannel script builds its prediction distribution."""
    bins = np.zeros(int(duration_s / window_s) + 1)
    for s, e in intervals:
        a = min(int(s / window_s), len(bins) - 1)
        b = min(int(e / window_s), len(bins) - 1)
        bins[a:b + 1] += 1
    bins = bins + JSD_EPS
    return bins / bins.sum()


def js_distance(p, q) -> float:
    """Jensen-Shannon *distance* (sqrt of the divergence, natural log), what the benchmark
    reports as "JSD" (it calls ``scipy.spatial.distance.jensenshannon``). Inputs are normalised."""
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    if len(p) != len(q):  # the reference interpolates the ground truth onto the prediction's bins
        q = np.interp(np.linspace(0, 1, len(p)), np.linspace(0, 1, len(q)), q)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a, b):
        nz = a > 0
        return float(np.sum(a[nz] * np.log(a[nz] / b[nz])))

    return math.sqrt(max(0.0, (kl(p, m) + kl(q, m)) / 2))


# ---------------------------------------------------------------------------- per clip
def pause_handling_clip(segments, ref: dict, words=None) -> dict:
    """Pause Handling (v1.0): TOR = 1 when the model takes the turn while the user holds it
    (``[user_start_s, user_end_s]``, pauses included). Lower is better."""
    took, _ = takes_turn(segments, ref["user_start_s"], ref["user_end_s"], words)
    return {"tor": int(took)}


def backchannel_clip(segments, ref: dict, duration_s: float, words=None) -> dict:
    """Backchanneling (v1.0): TOR (lower is better), frequency = backchannels per second of the
    clip (higher is better), JSD between the model's backchannel timing histogram and the
    reference one (``ref["backchannels"]``; 200 ms bins; 1.0 when the model never backchannels).
    Deviation: the reference distribution is our generator's listener-backchannel placement
    (at the user's phrase boundaries), not the ICC human annotations."""
    took, bcs = classify_backchannels(segments, ref["user_start_s"], ref["user_end_s"], words)
    out = {"tor": int(took), "backchannels": len(bcs), "freq_hz": len(bcs) / duration_s}
    if not bcs or not ref.get("backchannels"):
        out["jsd"] = 1.0
    else:
        out["jsd"] = js_distance(timing_histogram(bcs, duration_s), timing_histogram(ref["backchannels"], duration_s))
    return out


def smooth_turn_taking_clip(segments, ref: dict, duration_s: float, words=None) -> dict:
    """Smooth Turn-Taking (v1.0): TOR = 1 when the model takes the turn after the user's end of
    turn (higher is better); takeover latency = onset - ``user_end_s`` (clamped at 0, as the
    reference does), only for clips with TOR = 1. Deviation: only output from ``user_end_s`` on
    is considered (the reference transcribes the whole output; speech over the user's turn then
    shows up as latency 0 there, and as latency 0 here too when it continues past the end)."""
    took, onset = takes_turn(segments, ref["user_end_s"], duration_s, words)
    return {"tor": int(took), "latency_s": max(0.0, onset - ref["user_end_s"]) if took else None}


def user_interruption_clip(segments, ref: dict, duration_s: float, words=None) -> dict:
    """User Interruption. v1.0: TOR = 1 when the model takes the turn after the interruption
    ends (``interrupt_end_s``; higher is better), latency = onset - ``interrupt_end_s`` (>= 0).
    v1.5 (get_timing.py): model segments merged across <= 0.5 s; stop latency = length of the
    first overlap between the model's speech and the user's interruption (None when the model was
    silent during it); ``stopped`` = that overlap ended before the user did; response latency =
    next model onset strictly after ``interrupt_end_s`` minus ``interrupt_end_s``."""
    a, b = ref["interrupt_start_s"], ref["interrupt_end_s"]
    took, onset = takes_turn(segments, b, duration_s, words)
    out = {"tor": int(took), "latency_s": max(0.0, onset - b) if took else None,
           "stop_latency_s": None, "stopped": None, "response_latency_s": None}
    merged = merge_segments(segments, STOP_MERGE_GAP_S)
    over = clip_segments(merged, a, b)
    if over:
        s, e = over[0]
        out["stop_latency_s"] = e - s
        out["stopped"] = int(e < b - 1e-9)
    nxt = [s for s, _ in merged if s > b]
    if nxt:
        out["response_latency_s"] = min(nxt) - b
    return out


def v15_timing(user_segments, model_segments) -> dict:
    """v1.5 ``get_timing.py`` on two VAD timelines: stop intervals = overlaps between user and
    model speech (one per end time, the shortest kept), response intervals = user end -> next
    model start. Returns lists of ``[start_s, end_s]`` and their mean lengths."""
    user, model = sorted(user_segments), sorted(model_segments)
    raw, i, j = [], 0, 0
    while i < len(user) and j < len(model):
        s, e = max(user[i][0], model[j][0]), min(user[i][1], model[j][1])
        if e > s:
            raw.append((s, e))
        if user[i][1] < model[j][1]:
            i += 1
        else:
            j += 1
    best: dict[int, Segment] = {}
    for s, e in raw:
        k = round(e * 1000)
        if k not in best or e - s < best[k][1] - best[k][0]:
            best[k] = (s, e)
    stops = sorted(best.values(), key=lambda x: x[1])
    resp: dict[int, Segment] = {}
    for _, ue in user:
        nxt = next((s for s, _ in model if s > ue), None)
        if nxt is not None:
            k = round(nxt * 1000)
            if k not in resp or ue > resp[k][0]:
                resp[k] = (ue, nxt)
    responses = sorted(resp.values(), key=lambda x: x[1])
    mean = lambda xs: float(np.mean([e - s for s, e in xs])) if xs else None
    return {"stop": stops, "response": responses, "stop_latency_s": mean(stops), "response_latency_s": mean(responses)}


def aggregate(task: str, clips: list[dict]) -> dict:
    """Task-level figures: means of each clip field over the clips where it is defined."""
    out: dict = {"clips": len(clips)}
    keys = sorted({k for c in clips for k, v in c.items() if v is None or isinstance(v, (int, float))})
    for k in keys:
        vals = [float(c[k]) for c in clips if c.get(k) is not None]
        out[k] = float(np.mean(vals)) if vals else None
        if k.endswith("_s"):
            out[f"{k[:-2]}_n"] = len(vals)
    return out


# ---------------------------------------------------------------------------- folders
def load_reference(clip_dir) -> tuple[str, dict]:
    """(task, reference timings) of one clip folder: our ``metadata.json`` (``task``,
    ``reference``), else the benchmark's own files (``interrupt.json``: ``[{"timestamp": [start,
    end]}]``; ``turn_taking.json``: ``[{"timestamp": [end, ...]}]``), else the parent folder's
    name as the task with the whole clip as the user's turn."""
    d = Path(clip_dir)
    if (d / "metadata.json").exists():
        meta = json.loads((d / "metadata.json").read_text())
        if meta.get("task") in TASKS and isinstance(meta.get("reference"), dict):
            return meta["task"], meta["reference"]
    task = d.parent.name if d.parent.name in TASKS else None
    if (d / "interrupt.json").exists():
        ts = json.loads((d / "interrupt.json").read_text())[0]["timestamp"]
        return "user_interruption", {"interrupt_start_s": float(ts[0]), "interrupt_end_s": float(ts[1])}
    if (d / "turn_taking.json").exists():
        end = float(json.loads((d / "turn_taking.json").read_text())[0]["timestamp"][0])
        return "smooth_turn_taking", {"user_start_s": 0.0, "user_end_s": end}
    if task in ("pause_handling", "backchannel"):
        return task, {"user_start_s": 0.0, "user_end_s": float("inf")}
    raise FileNotFoundError(f"{d}: no metadata.json with task/reference (make task sets with "
                            "`python -m data_prep.fdb_tasks`), no interrupt.json/turn_taking.json, "
                            f"and the parent folder is not one of {', '.join(TASKS)}")


def load_transcript(clip_dir) -> list[dict] | None:
    """Word timings ``[{"word", "start", "end"}]`` from ``clip_dir/output.json`` in the benchmark's
    format (``{"text", "chunks": [{"text", "timestamp": [start, end]}]}``, on the clip's timeline,
    as ``jobs.duplex_infer --transcribe`` or the benchmark's ``get_transcript/asr.py`` write it);
    None when there is no such file. Chunks without a start are dropped; a missing end is the start."""
    f = Path(clip_dir) / "output.json"
    if not f.exists():
        return None
    try:
        chunks = json.loads(f.read_text()).get("chunks") or []
    except (ValueError, AttributeError) as e:
        raise ValueError(f"{f}: not a Full-Duplex-Bench output.json ({e}); delete it or rerun "
                         "`python -m jobs.duplex_infer ... --transcribe`") from None
    out = []
    for c in chunks:
        ts = list(c.get("timestamp") or [None, None]) + [None, None]
        if ts[0] is None:
            continue
        out.append({"word": str(c.get("text", "")).strip(), "start": float(ts[0]),
                    "end": float(ts[1] if ts[1] is not None else ts[0])})
    return out


def clip_metrics(clip_dir, asr=None, vad_kwargs: dict | None = None, transcripts: bool = True,
                 vad: str = "silero") -> dict:
    """Metrics of one folder holding ``output.wav`` (+ reference, see :func:`load_reference`).
    ``asr`` (optional) adds word timings: see :func:`transcribe_words`; without one, and with
    ``transcripts``, an ``output.json`` beside ``output.wav`` supplies them (see
    :func:`load_transcript`). ``words_from`` says which: ``"asr"``, ``"output.json"`` or ``"vad"``.
    ``vad``/``vad_kwargs``: the voice-activity back-end and its settings (:func:`omni.vad.speech_segments`;
    default Silero with the benchmark's settings)."""
    d = Path(clip_dir)
    if not (d / "output.wav").exists():
        raise FileNotFoundError(f"{d}/output.wav is missing: run `python -m jobs.duplex_infer "
                                f"--checkpoint MODEL --input-dir {d.parent}` first")
    task, ref = load_reference(d)
    wave, sr = sf.read(d / "output.wav", dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    duration_s = len(wave) / sr
    ref = {k: (min(v, duration_s) if isinstance(v, float) else v) for k, v in ref.items()}
    segs = speech_segments(wave, sr, vad, **(vad_kwargs or {}))
    if asr is not None:
        words, words_from = transcribe_words(asr, wave, sr), "asr"
    else:
        words = load_transcript(d) if transcripts else None
        words_from = "vad" if words is None else "output.json"
    if task == "pause_handling":
        m = pause_handling_clip(segs, ref, words)
    elif task == "backchannel":
        m = backchannel_clip(segs, ref, duration_s, words)
    elif task == "smooth_turn_taking":
        m = smooth_turn_taking_clip(segs, ref, duration_s, words)
    else:
        m = user_interruption_clip(segs, ref, duration_s, words)
    return {"clip": d.name, "task": task, "words_from": words_from, **m}


def fdb_report(root_dir, *, asr=None, vad_kwargs: dict | None = None, model_name: str = "omni",
               transcripts: bool = True, vad: str = "silero") -> dict:
    """Full-Duplex-Bench figures for every ``*/output.wav`` under ``root_dir`` (any depth).

    Returns ``{"tasks": {task: aggregate}, "clips": [...], "metrics": {flat name: value} (for
    MLflow), "row": our row in the published table's columns, "markdown": table with the
    published v1.0 rows, "transcripts": whether any clip had word timings}``. ``asr`` and
    ``transcripts`` as in :func:`clip_metrics` (asr=None: each clip's ``output.json`` when present
    and ``transcripts``, else voice activity only); ``vad`` as in :func:`clip_metrics`."""
    root = Path(root_dir)
    dirs = sorted({p.parent for p in root.rglob("output.wav")})
    if not dirs:
        raise FileNotFoundError(f"no */output.wav under {root}: run `python -m jobs.duplex_infer "
                                f"--checkpoint MODEL --input-dir {root}` first")
    clips = [clip_metrics(d, asr, vad_kwargs, transcripts, vad) for d in dirs]
    tasks = {t: aggregate(t, [c for c in clips if c["task"] == t]) for t in TASKS if any(c["task"] == t for c in clips)}
    metrics = {f"fdb/{t}/{k}": v for t, agg in tasks.items() for k, v in agg.items() if v is not None}
    g = lambda t, k: tasks.get(t, {}).get(k)
    row = {"pause_tor": g("pause_handling", "tor"), "backchannel_tor": g("backchannel", "tor"),
           "turn_taking_tor": g("smooth_turn_taking", "tor"), "turn_taking_latency_s": g("smooth_turn_taking", "latency_s"),
           "interruption_tor": g("user_interruption", "tor"), "interruption_latency_s": g("user_interruption", "latency_s")}
    return {"tasks": tasks, "clips": clips, "metrics": metrics, "row": row,
            "markdown": fdb_markdown({model_name: row}),
            "transcripts": any(c["words_from"] != "vad" for c in clips)}


COLUMNS = (("pause_tor", "pause TOR ↓"), ("backchannel_tor", "backchannel TOR ↓"),
           ("turn_taking_tor", "smooth turn-taking TOR ↑"), ("turn_taking_latency_s", "turn-taking latency s ↓"),
           ("interruption_tor", "interruption TOR ↑"), ("interruption_latency_s", "interruption latency s ↓"))


def fdb_markdown(rows: dict[str, dict], published: bool = True) -> str:
    """Markdown table: ``rows`` (ours, name -> row) under the published v1.0 rows. Published
    figures are on the benchmark's own sets (pause TOR: its synthetic set); ours are on our task
    sets, so the comparison is of behaviour, not of identical inputs."""
    head = "| model | " + " | ".join(c for _, c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"
    for name, row in ({**({f"{k} (published)": v for k, v in PUBLISHED_V1.items()} if published else {}), **rows}).items():
        lines.append(f"| {name} | " + " | ".join(fmt(row.get(k)) for k, _ in COLUMNS) + " |")
    return "\n".join(lines)


def default_asr():
    """Whisper base (``omni.asr.WhisperASR``, faster-whisper) when it and its model are
    installed, else None (metrics then use voice activity only)."""
    try:
        from omni.asr import WhisperASR  # issue 15; optional
        return WhisperASR()
    except (ImportError, OSError, RuntimeError, ValueError):  # package or model missing / unloadable
        return None


def transcribe_words(asr, wave, sample_rate_hz: int) -> list[dict]:
    """Word timings as ``[{"word", "start", "end"}]`` from either an ``omni.asr`` recogniser
    (``.transcribe(audio, sample_rate_hz) -> [Word(text, start_s, end_s)]``) or a plain callable
    ``asr(wave, sample_rate_hz)`` returning such words or dicts."""
    got = asr.transcribe(wave, sample_rate_hz) if hasattr(asr, "transcribe") else asr(wave, sample_rate_hz)
    out = []
    for w in got:
        if isinstance(w, dict):
            text, a, b = w.get("word", w.get("text")), w.get("start", w.get("start_s")), w.get("end", w.get("end_s"))
        else:
            text, a, b = getattr(w, "text", getattr(w, "word", "")), getattr(w, "start_s", None), getattr(w, "end_s", None)
        if a is None or b is None:
            raise ValueError(f"{type(asr).__name__} gives no word timings; use omni.asr.WhisperASR or asr=None "
                             "(voice activity only)")
        out.append({"word": str(text), "start": float(a), "end": float(b)})
    return out
