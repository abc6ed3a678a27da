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
