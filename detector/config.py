"""One typed, frozen configuration for the whole detection pipeline.

Every parameter has its unit in its name and one docstring line (shown by
``crampwatch config show``).  ``--set NAME=VALUE`` on the command line and a
TOML file (table ``[detector]`` or top level) both map onto it.

Examples
--------
>>> from crampwatch.detector.config import DetectorConfig
>>> cfg = DetectorConfig().with_overrides(["min_duration_s=5"])
>>> cfg.min_duration_s
5.0
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, fields

from crampwatch._validate import check_number, check_text, read_toml
from crampwatch._validate import documented as _doc   # the one helper both configs use
from crampwatch.errors import ConfigError


CLASSIFIERS = ("rules", "model")
"""The values of ``DetectorConfig.classifier``."""


@dataclass(frozen=True)
class DetectorConfig:
    """Parameters of the detection pipeline (units in the names)."""

    # --- filters ---------------------------------------------------------------
    band_low_hz: float = _doc("EMG band-pass lower edge (Hz); removes motion artifact and drift",
                              default=20.0, lo=1.0, hi=1000)
    band_high_hz: float = _doc("EMG band-pass upper edge (Hz); clipped to 0.45 x sample rate",
                               default=450.0, lo=0, hi=20000, lo_open=True)
    band_order: int = _doc("Butterworth order of each band-pass edge", default=4, lo=1, hi=10)
    mains_hz: str = _doc("mains notch: '50', '60', 'auto' (both families) or 'off'",
                         default="auto")
    notch_width_hz: float = _doc("-3 dB width of each mains notch (Hz)", default=2.0, lo=0.1, hi=20)
    # --- envelope and framing ----------------------------------------------------
    frame_s: float = _doc("frame hop of the envelope (s)", default=0.05, lo=0.005, hi=1)
    rms_window_s: float = _doc("RMS envelope window (s)", default=0.25, lo=0.01, hi=10)
    step_s: float = _doc("decision step: how often a window is classified (s)", default=1.0, lo=0.05, hi=10)
    window_s: float = _doc("classification window, trailing (s)", default=2.0, lo=0.1, hi=60)
    rhythm_window_s: float = _doc("window for rhythm (periodic burst) detection (s)", default=6.0, lo=0.5, hi=120)
    # --- adaptive baseline -------------------------------------------------------
    floor_start_uv: float = _doc(
        "floor assumed when a recording starts during a contraction (uV RMS); otherwise the "
        "first second's level is the first estimate", default=2.0, lo=0, hi=1000, lo_open=True)
    floor_min_uv: float = _doc("the noise floor is never taken lower than this (uV RMS)",
                               default=0.5, lo=0, hi=1000, lo_open=True)
    floor_up_s: float = _doc("fastest doubling time of the floor estimate while resting (s)",
                             default=20.0, lo=1.0, hi=3600)
    floor_down_s: float = _doc("time constant of the floor falling to a quieter level (s)",
                               default=2.0, lo=0.1, hi=3600)
    floor_window_s: float = _doc(
        "look-back of resting steps whose 20th percentile the floor rises to (s)", default=30.0, lo=1, hi=3600)
    # --- activity thresholds -----------------------------------------------------
    on_ratio: float = _doc("EMG counts as contracting above this multiple of the floor",
                           default=3.0, lo=1, hi=100)
    muscle_on_ratio: float = _doc(
        "... or above this multiple where the spectrum shows the added power is muscle "
        "(RMS frequency well below white noise's; bands reaching 400 Hz)", default=1.7, lo=1, hi=100)
    on_min_uv: float = _doc(
        "... and above this absolute RMS level (uV): a cramp recruits many motor units; below "
        "it the EMG is a few low-threshold units (resting tone), under ~5 % of a calf's "
        "maximal EMG", default=10.0, lo=0, hi=10000)
    off_ratio: float = _doc(
        "an episode continues while EMG stays above this multiple of the floor (scaled by "
        "muscle_on_ratio / on_ratio where the spectrum shows muscle)", default=2.0, lo=1, hi=100)
    # --- tonic-versus-phasic decision --------------------------------------------
    tonic_min_fraction: float = _doc(
        "fraction of envelope frames above the off-threshold (with the window median above the "
        "on-threshold) for a window to be tonic", default=0.9, lo=0, hi=1)
    modulation_min: float = _doc(
        "10th/90th percentile ratio of the envelope in a window; lower = bursty (phasic)",
        default=0.35, lo=0, hi=1)
    rhythm_max: float = _doc(
        "envelope autocorrelation peak (0.4-2.5 s lags) above which a window is rhythmic (walking)",
        default=0.6, lo=0, hi=1)
    motion_max_g: float = _doc(
        "dynamic acceleration (g, window mean) above which a window is movement, not a cramp onset",
        default=0.05, lo=0, hi=16, lo_open=True)
    posture_change_max_deg: float = _doc(
        "posture change across a window (degrees) above which it is movement", default=20.0, lo=0, hi=180)
    sustained_p10_ratio: float = _doc(
        "a bursty-looking window whose 10th percentile stays above this multiple of the floor "
        "is a fluctuating sustained contraction, not phasic bursts", default=10.0, lo=1, hi=1000)
    sustained_rhythm_max: float = _doc(
        "... and whose envelope is less rhythmic than this (gait with background activity "
        "between its bursts keeps a stride rhythm of 0.4-0.8)", default=0.4, lo=0, hi=1)
    upright_axis: str = _doc(
        "accelerometer axis along the shank ('x', 'y', 'z' or 'none'): gravity along it means "
        "standing, and no cramp onset is taken while upright (off by default: boards are "
        "strapped on differently; walking context does this job)", default="none")
    upright_max_deg: float = _doc(
        "gravity within this angle of the shank axis counts as upright (degrees)", default=40.0, lo=0, hi=90)
    hum_max_ratio: float = _doc(
        "mains hum power / EMG power above which a window is mains-dominated (artifact)",
        default=3.0, lo=0, hi=1000000.0, lo_open=True)
    hum_min_uv: float = _doc(
        "... and the hum is above this RMS level (uV): smaller hum is removed by the notches "
        "and leaves the signal usable", default=100.0, lo=0, hi=1000000.0)
    drift_max_uv: float = _doc(
        "low-frequency swing of the raw EMG (uV, std of 50 ms means over a window) above which "
        "a window is artifact (motion, pop, lead-off)", default=500.0, lo=0, hi=1000000.0, lo_open=True)
    muscle_max_hz: float = _doc(
        "highest RMS frequency of surface muscle EMG (Hz; 112-158 Hz in the real holds): "
        "added power whose RMS frequency lies well above it, towards white noise, is broadband "
        "noise of a loose electrode, not a contraction (used where the band reaches 400 Hz)",
        default=160.0, lo=0, hi=1000, lo_open=True)
    acc_wait_s: float = _doc(
        "longest wait for accelerometer samples before a step is decided without them (s)",
        default=2.0, lo=0, hi=3600)
    drift_ratio_max: float = _doc(
        "low-frequency swing of the raw EMG (as drift_max_uv) larger than this multiple of the "
        "window's median envelope, while the leg is still, is a loose electrode: the real holds "
        "and walking in ../shared/data stay below 0.45", default=1.0, lo=0, hi=1e4, lo_open=True)
    # --- episodes -------------------------------------------------------------------
    min_duration_s: float = _doc("minimum cramp duration (s)", default=10.0, lo=0.5, hi=3600)
    candidate_tonic_fraction: float = _doc(
        "share of a candidate's decision steps that must be tonic before it is confirmed",
        default=0.75, lo=0, hi=1)
    candidate_artifact_fraction: float = _doc(
        "... and at most this share of them artifact (a contraction seen through a loose "
        "electrode cannot be confirmed)", default=0.15, lo=0, hi=1)
    max_gap_s: float = _doc("a candidate survives non-tonic interruptions up to this long (s)",
                            default=2.5, lo=0, hi=600)
    end_gap_s: float = _doc("an episode ends after EMG stays below the off-threshold this long (s)",
                            default=2.0, lo=0, hi=600)
    merge_gap_s: float = _doc("episodes separated by less than this are merged (s)", default=5.0, lo=0, hi=3600)
    end_level_fraction: float = _doc(
        "an episode also ends when its EMG stays below this fraction of its own level (its "
        "median so far) for end_gap_s; the level left behind becomes the floor", default=0.2, lo=0, hi=1)
    movement_bridge_s: float = _doc(
        "movement with sustained EMG (grabbing the foot, kicking) neither starts nor breaks a "
        "candidate cramp for up to this long (s)", default=5.0, lo=0, hi=60)
    onset_ratio: float = _doc(
        "an onset is traced back to where the envelope last rose above this multiple of the floor",
        default=1.5, lo=1, hi=100)
    walk_steps: int = _doc(
        "rhythmic windows in a row (at most 2 s apart) that make walking", default=3, lo=1, hi=100)
    getup_min_deg: float = _doc(
        "with an accelerometer, steps count as walking after the shank turned by more than "
        "this (degrees, getting up from lying) or in the posture of an earlier walk",
        default=30.0, lo=0, hi=180)
    walk_rhythm_min: float = _doc(
        "envelope rhythm (as rhythm_max) above which a window of strong, long bursts is a "
        "step of walking", default=0.6, lo=0, hi=1)
    walk_min_duty: float = _doc(
        "share of a walking window the EMG is active: calf push-off bursts last 0.25-0.45 s "
        "of each ~1 s stride (twitches last tens of ms)", default=0.25, lo=0, hi=1)
    walk_window_s: float = _doc("look-back for the steps of walking (s)", default=20.0, lo=1, hi=600)
    walk_context_s: float = _doc(
        "after walking, no cramp onset is taken while the leg keeps its walking posture (with "
        "an accelerometer, at most this long) or, without one, for this long (s)",
        default=300.0, lo=0, hi=86400)
    walk_override_ratio: float = _doc(
        "... except for contractions stronger than this multiple of the floor", default=15.0, lo=1, hi=10000.0)
    walk_override_uv: float = _doc(
        "... and than this level (uV RMS): quiet standing's postural activity stays below "
        "about 10 % of a calf's maximal EMG", default=150.0, lo=0, hi=1e5)
    plm_series_bursts: int = _doc(
        "leg movements of 0.5-10 s, each 5-90 s after the last (AASM), that make a "
        "periodic-limb-movement series", default=4, lo=2, hi=100)
    plm_max_tonic_s: float = _doc(
        "a leg movement of a PLM series is a brief burst: a contraction that stayed tonic "
        "longer than this (s) is not counted as one", default=3.0, lo=0, hi=60)
    plm_min_interval_s: float = _doc("shortest onset-to-onset interval in a PLM series (s)",
                                     default=5.0, lo=0, hi=600)
    plm_max_interval_s: float = _doc(
        "longest onset-to-onset interval in a PLM series; the series is over this long after "
        "its last movement (s)", default=90.0, lo=1, hi=3600)
    plm_min_duration_s: float = _doc(
        "minimum cramp duration while a PLM series is going on (s); AASM bursts last <= 10 s",
        default=15.0, lo=0, hi=3600)
    onset_lookback_s: float = _doc(
        "how far back the onset of a confirmed episode is searched for (s)", default=15.0, lo=0, hi=600)
    # --- classifier -----------------------------------------------------------------
    classifier: str = _doc(
        "who decides a candidate: 'rules' (the thresholds above confirm it) or 'model' (the "
        "rules propose it, the trained candidate model confirms it when the rules would, and "
        "grades it again at its end; see models/MODEL_CARD.md)", default="rules",
        choices=CLASSIFIERS)
    min_confidence: float = _doc(
        "an episode whose final confidence (0-1) is below this is kept with status "
        "'uncertain' and never counted as a cramp (0: none; with classifier=model, an episode "
        "the model grades below its own threshold at the end is uncertain too)",
        default=0.0, lo=0, hi=1)
    model_file: str = _doc(
        "candidate model file (JSON) for the confidence and classifier=model; '' = the "
        "shipped model (a sleeper's own, from 'crampwatch train', is chosen here)",
        default="", max_len=4096)

    # ------------------------------------------------------------------------------
    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            if hints[f.name] in (int, float):
                md = f.metadata
                value = check_number(f.name, getattr(self, f.name), md.get("lo"), md.get("hi"),
                                     type=hints[f.name], lo_open=md.get("lo_open", False))
                object.__setattr__(self, f.name, value)
        if self.classifier not in CLASSIFIERS:
            raise ConfigError(f"config classifier={self.classifier!r}: use "
                              f"{' or '.join(CLASSIFIERS)}", key="classifier")
        if self.mains_hz not in ("50", "60", "auto", "off"):
            raise ConfigError(f"config mains_hz={self.mains_hz!r}: use 50, 60, auto or off",
                              key="mains_hz")
        if self.upright_axis not in ("x", "y", "z", "none"):
            raise ConfigError(f"config upright_axis={self.upright_axis!r}: use x, y, z or none",
                              key="upright_axis")
        if self.band_high_hz <= self.band_low_hz:
            raise ConfigError(
                f"config band_low_hz={self.band_low_hz}, band_high_hz={self.band_high_hz}: "
                "need 0 < band_low_hz < band_high_hz", key="band_low_hz")
        if self.off_ratio > self.on_ratio:
            raise ConfigError(f"config off_ratio={self.off_ratio} must not exceed "
                              f"on_ratio={self.on_ratio}", key="off_ratio")
        if self.plm_max_interval_s < self.plm_min_interval_s:
            raise ConfigError(f"config plm_max_interval_s={self.plm_max_interval_s} must not be "
                              f"below plm_min_interval_s={self.plm_min_interval_s}",
                              key="plm_max_interval_s")

    # ------------------------------------------------------------------------------
    @classmethod
    def field_docs(cls) -> list[tuple[str, str, object]]:
        """``(name, doc, default)`` for every parameter, in declaration order."""
        return [(f.name, f.metadata.get("doc", ""), f.default) for f in fields(cls)]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "DetectorConfig":
        """A copy with some fields changed (values converted and checked)."""
        return self.from_mapping(changes, base=self)

    @classmethod
    def from_mapping(cls, mapping: dict, base: "DetectorConfig | None" = None,
                     where: str = "config") -> "DetectorConfig":
        """Build from a mapping of names to values (strings are converted)."""
        base = base or cls()
        hints = typing.get_type_hints(cls)
        meta = {f.name: f.metadata for f in fields(cls)}
        known = set(meta)
        values = {}
        for key, raw in mapping.items():
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=5, cutoff=0.5)
                hint = f" (did you mean: {', '.join(close)}?)" if close else ""
                raise ConfigError(f"{where}: unknown parameter {key!r}{hint}", key=key)
            values[key] = _convert(key, raw, hints[key], where, meta[key])
        return dataclasses.replace(base, **values)

    def with_overrides(self, assignments: list[str] | None) -> "DetectorConfig":
        """Apply ``NAME=VALUE`` strings (the CLI's ``--set``)."""
        mapping = {}
        for item in assignments or []:
            if "=" not in item:
                raise ConfigError(f"--set {item!r}: expected NAME=VALUE")
            k, v = item.split("=", 1)
            k = k.strip()
            mapping[k.removeprefix("detector.")] = v.strip()   # as capture's --set takes it
        return self.from_mapping(mapping, base=self, where="--set")

    @classmethod
    def from_toml(cls, path: str, base: "DetectorConfig | None" = None) -> "DetectorConfig":
        """Read ``[detector]`` (or the top level) of a TOML file."""
        data = read_toml(path)
        section = data.get("detector", {k: v for k, v in data.items()
                                        if not isinstance(v, dict)})
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: [detector] must be a table")
        return cls.from_mapping(section, base=base, where=path)


def _convert(key: str, raw, typ, where: str, meta):
    if typ in (int, float):
        return check_number(key, raw, meta.get("lo"), meta.get("hi"), type=typ,
                            lo_open=meta.get("lo_open", False), where=where)
    if typ is str:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            raw = f"{raw:g}"                # mains_hz = 50 in TOML
        text = check_text(key, raw, max_len=meta.get("max_len") or 64, where=where)
        choices = meta.get("choices")
        if choices and text not in choices:
            raise ConfigError(f"{where} {key}={text!r}: use {', '.join(choices)}", key=key)
        return text
    return raw
