"""The episode assembler: a pure state machine.

Per-step decisions go in (:class:`StepDecision`), :class:`EpisodeStarted` and
:class:`EpisodeEnded` events come out.  No I/O: the capture daemon writes the
events to SQLite, replay writes them to JSON Lines.

States: ``idle`` -> ``candidate`` (tonic windows seen, not yet long enough)
-> ``active`` (confirmed: ``EpisodeStarted`` emitted, onset back-dated to
when the contraction began) -> ``ending`` (EMG fell below the off-threshold;
if tonic activity resumes within ``merge_gap_s`` the episode goes on) ->
``EpisodeEnded``.  A candidate that is interrupted for longer than
``max_gap_s`` before reaching ``min_duration_s`` is dropped.

Examples
--------
>>> from crampwatch.detector.episodes import EpisodeAssembler, StepDecision
>>> asm = EpisodeAssembler(min_duration_s=2.0, max_gap_s=1.0, end_gap_s=1.0, merge_gap_s=1.0)
>>> events = []
>>> for i in range(20):
...     t = 0.5 * (i + 1)
...     on = 1.0 <= t <= 6.0
...     events += asm.step(StepDecision(t_end_s=t, step_s=0.5, tonic=on, active=on,
...                                     onset_hint_s=0.8, rms_uv=50.0 if on else 2.0,
...                                     peak_uv=60.0 if on else 3.0, score=0.9 if on else 0.0))
>>> [type(e).__name__ for e in events]
['EpisodeStarted', 'EpisodeEnded']
>>> round(events[1].episode.onset_s, 2), round(events[1].episode.offset_s, 2)
(0.8, 6.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class StepDecision:
    """What the classifier said about one decision step.

    Attributes
    ----------
    t_end_s : float
        Time of the end of the step (s from the stream start).
    step_s : float
        Step length (s).
    tonic : bool
        The trailing window looks like a sustained tonic contraction.
    active : bool
        The EMG of this step is above the off-threshold (continuation).
    onset_hint_s : float
        Where the current contraction began to rise (s), used to back-date
        the onset of a confirmed episode.
    run_start_s : float or None
        Start of the current uninterrupted run of EMG activity above the
        off-threshold (s): the minimum-duration rule counts from here.
        None: same as ``onset_hint_s``.
    min_duration_s : float or None
        A longer minimum duration in force at this step (PLM series).
    prerun_s : float
        How much longer than a window before the first tonic window the
        duration may count from ``run_start_s`` (the run began with movement:
        grabbing the foot, kicking).
    level_uv : float or None
        Median envelope of the step (uV RMS); an episode's own level is the
        median of these over its steps.
    neutral : bool
        Neither for nor against a candidate (a fluctuation of a contraction
        that never came down); bridged like movement.
    offset_hint_s : float or None
        Last time within the step the EMG was above the off-threshold.
    rms_uv, peak_uv : float
        Mean and peak envelope of the step (uV RMS).
    score : float
        Tonic score of the window (0-1).
    label : str
        ``rest``, ``tonic``, ``phasic``, ``movement``, ``artifact``, ``active``,
        ``upright`` or ``nodata``.
    """

    t_end_s: float
    step_s: float
    tonic: bool
    active: bool
    onset_hint_s: float
    rms_uv: float
    peak_uv: float
    score: float
    offset_hint_s: float | None = None
    label: str = ""
    floor_uv: float = 0.0
    min_duration_s: float | None = None
    run_start_s: float | None = None
    prerun_s: float = 0.0
    level_uv: float | None = None
    neutral: bool = False


@dataclass(frozen=True)
class Episode:
    """One detected cramp (times in seconds from the stream start).

    ``status``: ``open`` (under way), ``closed``, ``truncated`` (the stream or a
    long gap cut it) or ``uncertain`` (closed with a final confidence below
    ``min_confidence``, or graded below its threshold by the candidate model:
    kept and shown, never counted as a cramp)."""

    episode_id: int
    onset_s: float
    offset_s: float | None
    peak_rms_uv: float
    mean_rms_uv: float
    confidence: float
    floor_uv: float
    status: str = "open"          # open | closed | truncated | uncertain

    @property
    def counted(self) -> bool:
        """Is it a cramp?  An ``uncertain`` episode (final confidence below
        ``min_confidence``) is kept in every output but never counted."""
        return self.status != "uncertain"

    @property
    def duration_s(self) -> float | None:
        return None if self.offset_s is None else self.offset_s - self.onset_s


@dataclass(frozen=True)
class EpisodeStarted:
    """Emitted when an onset is confirmed (``min_duration_s`` of tonic activity)."""

    episode: Episode
    confirmed_at_s: float


@dataclass(frozen=True)
class EpisodeEnded:
    """Emitted when an episode has ended (or the stream ended during it)."""

    episode: Episode


@dataclass
class _Run:
    onset_s: float
    start_s: float
    floor_uv: float
    last_tonic_s: float
    last_active_s: float
    steps: list = field(default_factory=list)   # (t_end_s, rms_uv, peak_uv, score, tonic)
    levels: list = field(default_factory=list)  # step medians while confirmed-active
    moved: int = 0                               # steps labelled movement (not counted)
    artifacts: int = 0                           # steps labelled artifact


class EpisodeAssembler:
    """Turns per-step decisions into episode events (see module docstring).

    Parameters (beyond the durations and shares, see ``DetectorConfig``)
    ----------
    confidence_fn : callable or None
        ``episode_features`` dict -> confidence (0-1); None: a heuristic.
    gate_fn : callable or None
        ``gate_fn(onset_s, t_s) -> bool``, asked each time the rules would
        confirm the candidate; False keeps it a candidate (asked again at its
        next step): the candidate classifier decides.
    grade_fn : callable or None
        ``grade_fn(onset_s, end_s, final) -> confidence``, replaces
        ``confidence_fn`` (at the confirmation and at the end).
    min_confidence : float
        An episode whose final confidence is below this ends ``uncertain``.
    gate_threshold : float or None
        ... and below this too (the gate's own threshold: the classifier
        changed its mind by the end).
    """

    def __init__(self, min_duration_s: float = 10.0, max_gap_s: float = 1.5,
                 end_gap_s: float = 2.0, merge_gap_s: float = 5.0,
                 candidate_tonic_fraction: float = 0.75, window_s: float = 2.0,
                 confidence_fn=None, movement_bridge_s: float = 0.0,
                 candidate_artifact_fraction: float = 1.0, gate_fn=None, grade_fn=None,
                 min_confidence: float = 0.0, gate_threshold: float | None = None):
        self.window_s = float(window_s)
        self.gate_fn = gate_fn
        self.grade_fn = grade_fn
        self.min_confidence = float(min_confidence)
        self.gate_threshold = gate_threshold
        self.candidate_artifact_fraction = float(candidate_artifact_fraction)
        self.movement_bridge_s = float(movement_bridge_s)
        self._last_offset_s = -math.inf      # episodes never overlap
        self._level_uv = 0.0
        self.confidence_fn = confidence_fn
        self.min_duration_s = float(min_duration_s)
        self.candidate_tonic_fraction = float(candidate_tonic_fraction)
        self.max_gap_s = float(max_gap_s)
        self.end_gap_s = float(end_gap_s)
        self.merge_gap_s = float(merge_gap_s)
        self.state = "idle"
        self._run: _Run | None = None
        self._next_id = 1
        self._current: Episode | None = None

    @property
    def level_uv(self) -> float:
        """The current episode's own level: the median of its steps' median
        envelopes (uV RMS); 0 outside an episode."""
        return self._level_uv if self.state in ("active", "ending") else 0.0

    # -------------------------------------------------------------------------
    def step(self, d: StepDecision) -> list:
        """Feed one decision; returns the events it caused (usually none)."""
        t = d.t_end_s
        if self.state == "idle":
            if d.tonic:
                # the duration rule counts from the start of the activity run, but
                # no earlier than the first tonic window's start (or a little more
                # when the run began with movement)
                start = d.run_start_s if d.run_start_s is not None else d.onset_hint_s
                start = min(max(start, t - self.window_s - d.prerun_s, self._last_offset_s), t)
                onset = max(min(d.onset_hint_s, start), self._last_offset_s)
                self._run = _Run(onset_s=onset, start_s=start,
                                 floor_uv=d.floor_uv, last_tonic_s=t, last_active_s=t)
                self._run.steps.append((t, d.rms_uv, d.peak_uv, d.score, True))
                self._add_level(d)
                self.state = "candidate"
                return self._maybe_confirm(t, d)
            return []
        run = self._run
        if self.state == "candidate":
            run.steps.append((t, d.rms_uv, d.peak_uv, d.score, d.tonic))
            if d.tonic:
                self._add_level(d)
                run.last_tonic_s = t
                run.last_active_s = d.offset_hint_s if d.offset_hint_s is not None else t
                return self._maybe_confirm(t, d)
            bridge = self.max_gap_s
            run.artifacts += d.label == "artifact"
            if d.active and (d.label == "movement" or d.neutral):
                # grabbing the foot or kicking during a cramp: neither for nor against it
                run.moved += 1
                bridge = max(bridge, self.movement_bridge_s)
            if d.active and d.label not in ("artifact", "nodata"):
                run.last_active_s = d.offset_hint_s if d.offset_hint_s is not None else t
                if t - run.last_tonic_s <= self.max_gap_s:
                    events = self._maybe_confirm(t, d)
                    if events:
                        return events
            if t - run.last_tonic_s > bridge:
                self.state, self._run = "idle", None
                if d.tonic:
                    return self.step(d)
            return []
        # active or ending: the EMG staying up carries the episode through movement; a
        # short artifact (the sleeper wakes and moves the foot during a cramp) is bridged
        # without extending it, a long one ends it at its last clean moment
        if (self.state == "active" and d.active and d.label == "artifact"
                and t - run.last_active_s <= self.movement_bridge_s):
            return []
        if d.active and d.label not in ("artifact", "nodata"):
            if self.state == "ending":
                if not d.tonic:
                    # only tonic activity revives an ending episode
                    return self._maybe_end(t)
                self.state = "active"
            run.steps.append((t, d.rms_uv, d.peak_uv, d.score, d.tonic))
            if d.tonic:
                self._add_level(d)
            run.last_active_s = d.offset_hint_s if d.offset_hint_s is not None else t
            return []
        return self._maybe_end(t)

    def _add_level(self, d: StepDecision) -> None:
        if d.level_uv is not None:
            lv = self._run.levels
            lv.append(d.level_uv)
            if len(lv) <= 64 or len(lv) % 8 == 0:      # a median refreshed as it grows
                self._level_uv = float(sorted(lv)[len(lv) // 2])

    def _maybe_confirm(self, t: float, d: StepDecision | None = None) -> list:
        run = self._run
        need_s = self.min_duration_s
        if d is not None and d.min_duration_s is not None:
            need_s = max(need_s, d.min_duration_s)
        # the contraction's length: from where it began to rise to the last moment
        # it was seen (tonic windows lag the signal by up to a window)
        # (the traced-back onset counts, but no more than a window before the candidate)
        if max(run.last_tonic_s - run.start_s,
               run.last_active_s - max(run.onset_s, run.start_s - self.window_s)) < need_s:
            return []
        n_tonic = sum(1 for s in run.steps if s[4])
        if n_tonic < self.candidate_tonic_fraction * (len(run.steps) - run.moved):
            return []
        if run.artifacts > self.candidate_artifact_fraction * len(run.steps):
            return []                   # not seen cleanly: a loose electrode, not a cramp
        if self.gate_fn is not None and not self.gate_fn(run.onset_s, t):
            return []                   # the classifier says no (yet): asked again next time
        self.state = "active"
        ep = self._summarise(episode_id=self._next_id, offset_s=None)
        self._next_id += 1
        self._current = ep
        return [EpisodeStarted(episode=ep, confirmed_at_s=t)]

    def _maybe_end(self, t: float) -> list:
        run = self._run
        if self.state == "active" and t - run.last_active_s >= self.end_gap_s:
            self.state = "ending"
        if self.state == "ending" and t - run.last_active_s >= self.end_gap_s + self.merge_gap_s:
            return [self._close("closed")]
        return []

    def _close(self, status: str, at_s: float | None = None) -> EpisodeEnded:
        run = self._run
        offset = run.last_active_s if at_s is None else at_s
        ep = self._summarise(self._current.episode_id, offset_s=offset, status=status)
        self._last_offset_s = max(self._last_offset_s, offset)
        self.state, self._run, self._current = "idle", None, None
        return EpisodeEnded(episode=ep)

    def _summarise(self, episode_id: int, offset_s: float | None, status: str = "open") -> Episode:
        run = self._run
        steps = [s for s in run.steps if offset_s is None or s[0] <= offset_s + 1e-9] or run.steps
        mean_rms = sum(s[1] for s in steps) / len(steps)
        peak = max(s[2] for s in steps)
        end = offset_s if offset_s is not None else run.last_active_s
        if self.grade_fn is not None:
            conf = float(round(self.grade_fn(run.onset_s, end, offset_s is not None), 3))
        else:
            feats = episode_features(steps, max(0.0, end - run.onset_s), run.floor_uv)
            if self.confidence_fn is not None:
                conf = float(round(self.confidence_fn(feats), 3))
            else:
                conf = _confidence(feats["mean_score"], feats["duration_s"], self.min_duration_s)
        if offset_s is not None:
            # the final confidence decides: below it the episode is kept, never counted
            need = max(self.min_confidence, self.gate_threshold or 0.0)
            if conf < need:
                status = "uncertain"
        return Episode(episode_id=episode_id, onset_s=run.onset_s, offset_s=offset_s,
                       peak_rms_uv=float(peak), mean_rms_uv=float(mean_rms),
                       confidence=conf, floor_uv=float(run.floor_uv), status=status)

    def finish(self, t_end_s: float, truncated: bool = False) -> list:
        """The stream ended at ``t_end_s``: close a confirmed episode (a
        candidate that already lasts ``min_duration_s`` is confirmed first)."""
        events = []
        if self.state == "candidate":
            events += self._maybe_confirm(t_end_s)
        if self.state in ("active", "ending"):
            status = "truncated" if truncated else "closed"
            events.append(self._close(status))
        self.state, self._run = "idle", None
        return events


def _confidence(mean_score: float, duration_s: float, min_duration_s: float) -> float:
    """0-1: how tonic the episode looked, tempered for episodes barely past the
    minimum duration."""
    dur_term = min(1.0, duration_s / (2.0 * min_duration_s)) if min_duration_s > 0 else 1.0
    return float(round(max(0.0, min(1.0, mean_score * (0.6 + 0.4 * dur_term))), 3))


EPISODE_FEATURES = ("log_duration_s", "log_level_ratio", "tonic_step_fraction")


def episode_features(steps: list, duration_s: float, floor_uv: float) -> dict:
    """Features of an episode for its confidence (see ``crampwatch.models``).

    ``steps`` are the episode's ``(t_end_s, rms_uv, peak_uv, score, tonic)``.
    """
    rms = [s[1] for s in steps]
    mean_rms = sum(rms) / len(rms)
    var = sum((r - mean_rms) ** 2 for r in rms) / len(rms)
    return {
        "duration_s": duration_s,
        "mean_score": sum(s[3] for s in steps) / len(steps),
        "log_duration_s": math.log(max(duration_s, 0.1)),
        "log_level_ratio": math.log(max(mean_rms, 1e-3) / max(floor_uv, 1e-3)),
        "tonic_step_fraction": sum(1 for s in steps if s[4]) / len(steps),
        "level_cv": math.sqrt(var) / mean_rms if mean_rms > 0 else 0.0,
    }
