"""Duplex behaviours of the synthetic generator (issue 19): mid-turn pauses, monologues with
backchannels, response timing, interruption reaction, held-out voices; and their counts."""
import numpy as np
import pytest

from data_prep.synth import catalogue as C
from data_prep.synth import generate_dialogue
from data_prep.synth.duplex import BEHAVIOURS, count_behaviours
from data_prep.synth.generate import dialogue_rngs, write_script
from data_prep.synth.voices import check_voices, pool
from omni.config import SynthConfig

SR = 16000
QUIET = (90.0, 90.0)  # noise 90 dB under speech


def _cfg(**kw):
    base = dict(scenarios=["chitchat", "emotion"], min_turns=4, max_turns=6, noise_snr_db=QUIET,
                interrupt_prob=0.0, backchannel_prob=0.0)
    base.update(kw)
    return SynthConfig(**base)


def _frame_db(x, hop=80):
    n = len(x) // hop
    return 10 * np.log10(np.mean(x[:n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1) + 1e-20)


def _silent(x, a_s, b_s, ref_db, margin_s=0.03):
    """True when x[a_s+margin, b_s-margin] has no 5 ms frame within 40 dB of ``ref_db`` (what
    duplex.voiced_span calls voiced)."""
    seg = x[int((a_s + margin_s) * SR):int((b_s - margin_s) * SR)]
    return len(seg) < 80 or _frame_db(seg).max() < ref_db - 40


def _recs(cfg, n):
    return [generate_dialogue(i, cfg) for i in range(n)]


def test_mid_turn_pause_is_one_silent_user_turn():
    cfg = _cfg(mid_turn_pause_prob=1.0, mid_turn_pause_s=(0.5, 2.2))
    seen = []
    for rec in _recs(cfg, 4):
        m = rec["meta"]
        ref_a, ref_u = _frame_db(rec["assistant"]).max(), _frame_db(rec["user"]).max()
        script = write_script(m["index"], cfg, dialogue_rngs(m["index"], cfg.seed)["script"], cfg.seed)
        users = [t for t in m["turns"] if t["speaker"] == "user" and t["kind"] == "turn"]
        assert len(users) == sum(t.speaker == "user" for t in script.turns)  # still one meta turn per turn
        for t, st in zip(users, [x for x in script.turns if x.speaker == "user"]):
            assert t["text"] == st.text
            if t.get("parts_kind") != "pause":
                assert len(t["text"].split()) < 5  # too short to split
                continue
            first, second = st.parts
            assert first.endswith(",") and len(first.split()) >= 2 and len(second.split()) >= 2
            (a, b), = t["pauses"]
            seen.append(b - a)
            assert t["start_s"] < a < b < t["end_s"]
            before = [w["word"] for w in t["words"] if w["end_s"] <= a + 1e-3]
            assert before and before[-1].endswith(",")  # the pause follows the comma
            assert 0.5 - 0.011 <= b - a <= 2.2 + 0.011
            assert _silent(rec["user"], a, b, ref_u)          # the user really pauses
            assert _silent(rec["assistant"], a, b, ref_a)     # and the assistant stays silent
            assert all(not (x["start_s"] < b and a < x["end_s"]) for x in m["turns"] if x["speaker"] == "assistant")
            words = [w for w in t["words"] if a - 1e-3 <= w["start_s"] and w["end_s"] <= b + 1e-3]
            assert not words  # word timings skip the pause
        assert m["behaviours"]["mid_turn_pause"] == sum(t.get("parts_kind") == "pause" for t in users)
    assert len(seen) >= 5 and max(seen) - min(seen) > 0.5  # drawn from the range, not constant


def test_monologue_backchannels_sit_inside_gaps_and_the_answer_follows():
    cfg = _cfg(monologue_prob=1.0, monologue_sentences=(2, 4), monologue_gap_s=(0.3, 0.8),
               monologue_backchannel_prob=1.0, backchannel_max_s=0.7)
    n_gaps = n_bc = 0
    for rec in _recs(cfg, 4):
        m = rec["meta"]
        turns = m["turns"]
        ref_a = _frame_db(rec["assistant"]).max()
        bcs = [t for t in turns if t["kind"] == "backchannel"]
        for k, t in enumerate(turns):
            if t.get("parts_kind") != "monologue":
                continue
            assert 2 <= len(t["pauses"]) + 1 <= 4
            mine = [b for b in bcs if t["start_s"] <= b["start_s"] < t["end_s"]]
            for a, b in t["pauses"]:
                n_gaps += 1
                assert 0.3 - 0.011 <= b - a <= 0.8 + 0.011
                inside = [x for x in mine if a <= x["start_s"] and x["end_s"] <= b]
                n_bc += len(inside)
                for x in inside:
                    assert x["speaker"] == "assistant" and x["text"] in C.SHORT_BACKCHANNELS
                    assert x["end_s"] - x["start_s"] <= 0.7
            assert all(any(a <= x["start_s"] and x["end_s"] <= b for a, b in t["pauses"]) for x in mine)
            # the assistant is silent over the monologue except in its backchannels
            cuts = [t["start_s"]] + [v for x in sorted(mine, key=lambda x: x["start_s"])
                                     for v in (x["start_s"], x["end_s"])] + [t["end_s"]]
            for a, b in zip(cuts[::2], cuts[1::2]):
                assert _silent(rec["assistant"], a, b, ref_a)
            after = [x for x in turns[k + 1:] if x["speaker"] == "assistant" and x["kind"] == "turn"]
            if after:
                assert after[0]["start_s"] >= t["end_s"]   # the answer comes after the monologue
        assert m["behaviours"]["monologue"] == sum(t.get("parts_kind") == "monologue" for t in turns)
        assert m["behaviours"]["backchannel_no_takeover"] == len([b for b in bcs if b["speaker"] == "assistant"])
    assert n_gaps >= 6 and n_bc >= n_gaps // 3  # backchannels are placed when the range can hold them


def test_response_delay_distribution():
    exact = _recs(_cfg(response_delay_mean_s=0.3, response_delay_std_s=0.0), 2)
    drawn = _recs(_cfg(response_delay_mean_s=0.3, response_delay_std_s=0.12, response_delay_range_s=(0.1, 0.7),
                       pause_mean_s=1.5, pause_std_s=0.0), 4)
    for recs, check in ((exact, lambda g: abs(g - 0.3) < 0.011), (drawn, lambda g: 0.1 - 0.011 <= g <= 0.7 + 0.011)):
        gaps, other = [], []
        for rec in recs:
            turns = [t for t in rec["meta"]["turns"] if t["kind"] == "turn"]
            for u, a in zip(turns, turns[1:]):
                (gaps if (u["speaker"], a["speaker"]) == ("user", "assistant") else other).append(a["start_s"] - u["end_s"])
            assert rec["meta"]["behaviours"]["answer_after_turn_end"] == sum(
                t["speaker"] == "assistant" for t in turns[1:])
        assert gaps and all(check(g) for g in gaps), gaps
    assert other and all(abs(g - 1.5) < 0.011 for g in other)  # user replies keep the generic pause
    assert np.std(gaps) > 0.03


def test_interruption_stops_within_the_reaction_bound():
    cfg = _cfg(interrupt_prob=1.0, interrupt_react_s=(0.1, 0.3), scenarios=["chitchat"])
    leads, n = set(), 0
    for rec in _recs(cfg, 8):
        m = rec["meta"]
        ref_a = _frame_db(rec["assistant"]).max()
        turns = m["turns"]
        for k, t in enumerate(turns):
            if not t["interrupted"]:
                continue
            n += 1
            onset = t["interrupt_at_s"]
            assert 0 < t["end_s"] - onset <= 0.3 + 1e-3
            nxt = next((x for x in turns[k + 1:] if x["speaker"] == "assistant"), None)
            user = next(x for x in turns if x.get("interrupts") and abs(x["start_s"] - onset) < 1e-3)
            stop = onset + 0.3 + 0.02  # + the 20 ms fade
            assert _silent(rec["assistant"], stop, nxt["start_s"] if nxt else m["duration_s"], ref_a, margin_s=0.005)
            if nxt is not None:
                assert nxt["start_s"] >= user["end_s"]  # answers after the interruption ends
            leads.add(next(x for x in C.INTERJECTIONS if user["text"].startswith(x)))
        assert m["behaviours"]["yield_to_interruption"] == sum(t["interrupted"] for t in turns)
    assert n >= 6 and len(leads) >= 3
    assert "Sorry to interrupt," in C.INTERJECTIONS  # fdb_tasks' interruption opener is a trained one


def test_count_behaviours_on_a_constructed_timeline():
    u = lambda s, e, **kw: {"speaker": "user", "kind": "turn", "start_s": s, "end_s": e, "interrupted": False, **kw}
    a = lambda s, e, **kw: {"speaker": "assistant", "kind": "turn", "start_s": s, "end_s": e, "interrupted": False, **kw}
    turns = [u(0.0, 3.0, parts_kind="pause", pauses=[[1.0, 2.0]]),
             a(3.2, 6.0, interrupted=True, interrupt_at_s=5.5),
             u(5.5, 7.0, interrupts=True),
             a(7.3, 9.0),
             u(9.5, 14.0, parts_kind="monologue", pauses=[[10.0, 10.6], [11.0, 11.5]]),
             {**a(10.1, 10.5), "kind": "backchannel"},
             a(13.0, 15.0),                      # starts inside the user's turn: not an answer after its end
             u(16.0, 17.0, parts_kind="pause", pauses=[[16.2, 16.8]]),
             {**a(16.3, 16.5), "kind": "backchannel"},  # a sound inside a pause
             {**u(13.5, 13.8), "kind": "backchannel"}]
    turns.sort(key=lambda t: t["start_s"])
    got = count_behaviours(turns, react_max_s=0.6)
    assert set(got) == set(BEHAVIOURS)
    assert got == {"mid_turn_pause": 1, "monologue": 1, "monologue_gap": 2, "backchannel_no_takeover": 2,
                   "answer_after_turn_end": 2, "yield_to_interruption": 1, "keep_turn_through_backchannel": 1}
    assert count_behaviours(turns, react_max_s=0.4)["yield_to_interruption"] == 0


def test_behaviours_off_by_default_and_in_formats():
    from omni.formats import Dialogue, align_pairs, half_duplex_rounds

    rec = generate_dialogue(0, SynthConfig(seed=3))
    assert not any("pauses" in t or "parts_kind" in t for t in rec["meta"]["turns"])
    assert set(rec["meta"]["behaviours"]) == set(BEHAVIOURS)
    assert SynthConfig().content_dump() == SynthConfig(mid_turn_pause_s=(0.5, 2.2)).content_dump()
    assert "mid_turn_pause_prob" in SynthConfig(mid_turn_pause_prob=0.2).content_dump()
    # a corpus with pauses and monologues still flattens: one user turn each, pauses included
    cfg = _cfg(mid_turn_pause_prob=0.5, monologue_prob=0.5, monologue_backchannel_prob=1.0)
    rec = generate_dialogue(1, cfg)
    n = int(np.ceil(rec["meta"]["duration_s"] * 25))
    meta = {**rec["meta"], "turns": [{**t, "text_ids": [1 + i]} for i, t in enumerate(rec["meta"]["turns"])]}
    d = Dialogue.from_record({"meta": meta, "user_units": np.ones(n, int), "assistant_units": np.ones(n, int)})
    shaped = [t for t in rec["meta"]["turns"] if t.get("pauses")]
    assert shaped
    rounds = half_duplex_rounds(d)
    assert len(rounds) == sum(t["speaker"] == "assistant" and t["kind"] == "turn" for t in rec["meta"]["turns"])
    asr = [p for p in align_pairs(d, asr_speakers=("user",), tts_speakers=()) if len(p.text_ids) == 1]
    for t in shaped:
        pair = next(p for p in asr if p.text_ids[0] == 1 + rec["meta"]["turns"].index(t))
        assert len(pair.units) == round(t["end_s"] * 25) - round(t["start_s"] * 25)  # spans the pauses


def test_held_out_voices_never_voice_training_dialogues():
    cfg = SynthConfig(heldout_voices=["+m7", "en-us+f4"])
    assert "en-us+m7" not in pool(cfg, "espeak", "user") and "en-us+f4" not in pool(cfg, "espeak", "user")
    assert set(pool(cfg, "espeak", "user")) < set(pool(SynthConfig(), "espeak", "user"))
    seen = {generate_dialogue(i, cfg)["meta"]["voices"]["user"] for i in range(12)}
    assert not seen & {"en-us+m7", "en-us+f4"} and len(seen) >= 3
    only = SynthConfig(user_voices=["en+m3", "joe"], tts_weights={"espeak": 1, "piper": 1})
    assert pool(only, "espeak", "user") == ("en+m3",) and pool(only, "piper", "user") == ("joe",)
    for bad, msg in ((SynthConfig(user_voices=["en+nope"]), "not a voice"),
                     (SynthConfig(assistant_voices=["joe"]), "not a voice"),  # a Piper voice, espeak backend
                     (SynthConfig(heldout_voices=["+zz9"]), "not an espeak-ng variant"),
                     (SynthConfig(user_voices=["en+m3"], tts_weights={"espeak": 1, "piper": 1}),
                      "no user voice left for the piper backend"),  # each backend needs a voice of its own
                     (SynthConfig(user_voices=["en+m3", "joe"], heldout_voices=["+m1"],
                                  tts_weights={"espeak": 1, "piper": 1}), None)):
        if msg is None:
            check_voices(bad)
            continue
        with pytest.raises(ValueError, match=msg):
            check_voices(bad)
    with pytest.raises(ValueError, match="held-out voice"):
        SynthConfig(user_voices=["en+m7"], heldout_voices=["+m7"])


def test_synth_cli_summary_sums_the_behaviour_counts(tmp_path):
    import json

    from data_prep.synth.__main__ import main

    over = ["synth.num_dialogues=3", "synth.min_turns=4", "synth.max_turns=4", "synth.mid_turn_pause_prob=0.5",
            "synth.monologue_prob=0.5", "synth.interrupt_prob=0.5"]
    assert main(["--out", str(tmp_path), *over]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    metas = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("syn-*/script.json"))]
    assert len(metas) == summary["kept"] == 3
    assert summary["behaviours"] == {k: sum(m["behaviours"][k] for m in metas) for k in BEHAVIOURS}
    assert summary["behaviours"]["mid_turn_pause"] + summary["behaviours"]["monologue"] > 0


def test_manifest_sums_counts_key_wise():
    from data_prep.pipeline import sum_counts

    assert sum_counts([{"monologue": 1, "mid_turn_pause": 2}, None, {"monologue": 3, "answer_after_turn_end": 0}]) == {
        "answer_after_turn_end": 0, "mid_turn_pause": 2, "monologue": 4}
    assert sum_counts([]) == {}
