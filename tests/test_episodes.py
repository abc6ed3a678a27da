"""The episode assembler as a pure state machine: decisions in, events out."""

import pytest

from crampwatch.detector.episodes import EpisodeAssembler, EpisodeEnded, EpisodeStarted, StepDecision


def _feed(pattern, step_s=1.0, **kw):
    """pattern: one character a step: T tonic, A active (not tonic), . rest,
    X artifact."""
    asm = EpisodeAssembler(**kw)
    events = []
    for i, c in enumerate(pattern):
        t = (i + 1) * step_s
        events += asm.step(StepDecision(
            t_end_s=t, step_s=step_s, tonic=c == "T", active=c in "TAX",
            onset_hint_s=t - step_s, run_start_s=None, rms_uv=50.0 if c != "." else 2.0,
            peak_uv=80.0 if c != "." else 3.0, score=0.9 if c == "T" else 0.1,
            label={"T": "tonic", "A": "active", ".": "rest", "X": "artifact"}[c]))
    events += asm.finish(len(pattern) * step_s)
    return events


def _spans(events):
    return [(e.episode.onset_s, e.episode.offset_s) for e in events if isinstance(e, EpisodeEnded)]


@pytest.mark.parametrize("pattern, spans", [
    ("....." + "T" * 12 + "......." * 3, [(5.0, 17.0)]),        # 12 s tonic: one episode
    ("....." + "T" * 8 + "......." * 3, []),                     # 8 s: below min_duration
    ("..." + "TTTTTT.TTTTTT" + "." * 20, [(3.0, 16.0)]),         # a 1 s dip does not split it
    ("..." + "TTTTT...TTTTT" + "." * 20, []),                    # a 3 s gap kills a candidate
    ("..." + "T" * 12 + "AAAA" + "." * 20, [(3.0, 19.0)]),       # active continues an episode
    ("..." + "T" * 12 + "...." + "T" * 3 + "." * 20, [(3.0, 22.0)]),   # resumed within merge gap
    ("..." + "T" * 12 + "." * 10 + "T" * 12 + "." * 20, [(3.0, 15.0), (25.0, 37.0)]),
    ("..." + "T" * 12 + "XXXXXXXXXX" + "." * 5, [(3.0, 15.0)]),  # artifact ends it
])
def test_assembler_table(pattern, spans):
    assert _spans(_feed(pattern, min_duration_s=10.0, max_gap_s=2.5, end_gap_s=2.0,
                        merge_gap_s=5.0)) == spans


def test_started_comes_when_minimum_duration_is_met():
    events = _feed("..." + "T" * 30 + "." * 10, min_duration_s=10.0)
    started = [e for e in events if isinstance(e, EpisodeStarted)]
    assert len(started) == 1
    assert started[0].confirmed_at_s == 13.0           # onset 3 s + 10 s
    assert started[0].episode.offset_s is None and started[0].episode.status == "open"


def test_stream_end_during_episode_is_truncated_when_asked():
    asm = EpisodeAssembler(min_duration_s=5.0)
    for i in range(10):
        asm.step(StepDecision(t_end_s=i + 1.0, step_s=1.0, tonic=True, active=True,
                              onset_hint_s=0.0, rms_uv=40, peak_uv=50, score=1.0))
    (ended,) = asm.finish(10.0, truncated=True)
    assert ended.episode.status == "truncated" and ended.episode.onset_s == 0.0


def test_candidate_needs_mostly_tonic_steps():
    # long activity with only occasional tonic windows (bursty movement)
    assert _spans(_feed("..." + "TAATAATAATAATAA" + "." * 20, min_duration_s=10.0,
                        max_gap_s=2.5)) == []


def test_confidence_is_a_probability_and_rises_with_tonic_evidence():
    strong = _feed("." + "T" * 40 + "." * 10)
    weak = _feed("." + "TTTA" * 4 + "." * 10, min_duration_s=10.0, max_gap_s=2.5)
    (s,) = [e.episode for e in strong if isinstance(e, EpisodeEnded)]
    assert 0.0 <= s.confidence <= 1.0
    w = [e.episode for e in weak if isinstance(e, EpisodeEnded)]
    assert w and w[0].confidence < s.confidence


def _tonic_run(asm, n, start=0):
    ev = []
    for i in range(start, start + n):
        on = i < start + n - 10
        ev += asm.step(StepDecision(t_end_s=i + 1.0, step_s=1.0, tonic=on, active=on,
                                    onset_hint_s=float(start), rms_uv=40 if on else 2,
                                    peak_uv=50 if on else 3, score=1.0 if on else 0.0))
    return ev


def test_a_gate_that_says_no_keeps_the_candidate_and_is_asked_again():
    asked = []

    def gate(onset_s, t_s):
        asked.append(t_s)
        return t_s >= 15.0
    asm = EpisodeAssembler(min_duration_s=5.0, gate_fn=gate)
    ev = _tonic_run(asm, 40)
    (started,) = [e for e in ev if isinstance(e, EpisodeStarted)]
    assert asked[0] == 5.0 and started.confirmed_at_s == 15.0
    assert started.episode.onset_s == 0.0           # the onset is not moved by the wait
    no = EpisodeAssembler(min_duration_s=5.0, gate_fn=lambda o, t: False)
    assert _tonic_run(no, 40) + no.finish(40.0) == []


@pytest.mark.parametrize("conf,threshold,min_conf,status", [
    (0.4, None, 0.0, "closed"), (0.4, None, 0.5, "uncertain"), (0.4, 0.5, 0.0, "uncertain"),
    (0.6, 0.5, 0.0, "closed"), (0.6, 0.5, 0.7, "uncertain")])
def test_final_confidence_below_the_bar_makes_an_uncertain_episode(conf, threshold, min_conf,
                                                                    status):
    asm = EpisodeAssembler(min_duration_s=5.0, grade_fn=lambda o, e, final: conf,
                           min_confidence=min_conf, gate_threshold=threshold)
    ev = _tonic_run(asm, 40)
    (ended,) = [e.episode for e in ev if isinstance(e, EpisodeEnded)]
    assert ended.status == status and ended.counted == (status != "uncertain")
    (started,) = [e.episode for e in ev if isinstance(e, EpisodeStarted)]
    assert started.status == "open"                  # decided at the end, never before
