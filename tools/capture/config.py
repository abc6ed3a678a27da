"""The capture daemon's configuration: one frozen dataclass, loaded from TOML.

A config file has two tables, both optional::

    [capture]                       # this module: where from, where to, what else
    source = "serial:///dev/ttyUSB0?board=cyton"
    hook = "paplay /usr/share/sounds/freedesktop/stereo/bell.oga"
    channels = { "EMG L" = "left_calf", "EMG R" = "right_calf" }

    [detector]                      # crampwatch.detector.DetectorConfig
    min_duration_s = 10.0

A file without tables is read as detector parameters (what ``crampwatch
replay --config`` takes).  Unknown tables and keys are errors that name the
file and the key.  Every value is checked when the config is loaded: numbers
must be finite and within the key's range (:data:`RANGES`, stated in the
message), strings printable and of sane length; a file that cannot be read as
a config (binary, UTF-16, huge, nested without end) is one error too.
``crampwatch config show`` prints every key with its meaning, unit and default.

Examples
--------
>>> cfg = CaptureConfig().replace(source="sim://?seed=2", hook_timeout_s="5")
>>> cfg.source, cfg.hook_timeout_s
('sim://?seed=2', 5.0)
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import typing
from dataclasses import dataclass, fields

from crampwatch._validate import builtin_type_name, check_number, check_text, field_docs, read_toml
from crampwatch._validate import documented as _doc
from crampwatch.detector.config import DetectorConfig
from crampwatch.errors import ConfigError
from crampwatch.sites import normalize_site

__all__ = ["CaptureConfig", "LoadedConfig", "RANGES", "default_config_path", "load_config"]

CONFIG_ENV = "CRAMPWATCH_CONFIG"
CONFIG_NAME = "crampwatch.toml"


#: longest string value (a URL, a path, a hook command)
MAX_TEXT = 4096
#: longest channel label of [capture] channels (an EDF label has 16 characters)
MAX_LABEL = 64
#: most channels watched at once (the boards stream at most 8 EMG channels)
MAX_CHANNELS = 16


def _unit(name: str) -> str:
    return "s" if name.endswith("_s") else ("MB" if name.endswith("_mb") else "")


@dataclass(frozen=True)
class CaptureConfig:
    """Settings of ``crampwatch capture`` (units in the names and in each doc line)."""

    source: str = _doc(
        "where the samples come from: serial:///dev/ttyUSB0?board=cyton|bitalino|open, "
        "socket://HOST:PORT?board=..., ble://ADDRESS?board=open, sim:// (the built-in simulated "
        "board: a new user sees it work) or file://RECORDING (the capture ends at its end)",
        default="sim://")
    out_dir: str = _doc(
        "recordings directory ('' = recordings/ under the data directory; --out overrides)",
        default="")
    db_path: str = _doc(
        "episode log, SQLite ('' = episodes.sqlite under the data directory; --db overrides)",
        default="")
    emg_channel: str = _doc(
        "label of the one EMG channel the detector watches ('' = the board's first EMG "
        "channel, or the channels below; every channel is recorded)", default="")
    channels: dict = _doc(
        "the EMG channels to watch, each with its body site: a table of channel label = site, "
        "e.g. { \"EMG L\" = \"left_calf\", \"EMG R\" = \"right_calf\" } (sites: left_calf, "
        "right_calf, left_tibialis, right_tibialis, left_foot, right_foot or free text); each "
        "runs its own detector and every episode carries its site; labels must be the board's "
        "({} = one channel, as emg_channel says); --set channels='EMG L=left_calf,EMG R=right_calf'",
        default_factory=dict)
    stall_s: float = _doc(
        "live boards: no byte for this long counts as a disconnect, then reconnect with backoff "
        "all night (s; a stall_s= in the source URL wins)", default=5.0, lo=0.1, hi=3600.0)
    fsync_interval_s: float = _doc(
        "the recording is written and fsync'ed at least this often: a crash or power loss loses "
        "at most about this much (s)", default=1.0, lo=0.01, hi=60.0)
    disk_retry_s: float = _doc(
        "after a disk error (full, unwritable, gone) writing is retried this often; detection "
        "and the episode log go on meanwhile (s)", default=5.0, lo=0.05, hi=3600.0)
    write_queue_mb: float = _doc(
        "memory for samples not yet on disk while the disk fails (MB; 16 MB hold about 50 min "
        "at 1 kHz); beyond it samples are dropped and stored as gaps", default=16.0, lo=0.1, hi=4096.0)
    db_update_s: float = _doc(
        "how often the recording's row in the episode log (last sample, counts) is updated; an "
        "episode left open by a crash is closed at that point (s)", default=5.0, lo=0.05, hi=3600.0)
    status_line: str = _doc(
        "one-line live status on stderr: 'auto' (when stderr is a terminal), 'on' or 'off'",
        default="auto")
    status_interval_s: float = _doc("refresh interval of the live status line (s)", default=1.0, lo=0.05, hi=3600.0)
    log_interval_s: float = _doc(
        "without a status line: a progress line in the log (journal) this often (s; 0 = none)",
        default=300.0, lo=0.0, hi=86400.0)
    stop_at: str = _doc(
        "local clock time HH:MM at which the capture ends by itself, as on SIGTERM; started "
        "less than 4 h after it (a restart once the night is over) it ends at once "
        "('' = run until stopped)", default="")
    hook: str = _doc(
        "command run at each episode's onset, e.g. to vibrate or play a sound ('' = off); run "
        "without a shell, with the episode in CRAMPWATCH_* environment variables", default="")
    hook_timeout_s: float = _doc("a hook still running after this long is killed (s)",
                                 default=30.0, lo=0.1, hi=86400.0)
    lsl: bool = _doc(
        "publish the filtered EMG and its envelope as Lab Streaming Layer streams for live "
        "viewers (needs pip install 'crampwatch[lsl]')", default=False)
    lsl_name: str = _doc("name prefix of the LSL streams (NAME-emg, NAME-envelope)",
                         default="crampwatch")

    def __post_init__(self):
        where = "config [capture]"
        for f in fields(self):
            v = getattr(self, f.name)
            if f.metadata.get("lo") is not None:
                object.__setattr__(self, f.name, check_number(
                    f.name, v, f.metadata["lo"], f.metadata["hi"], float, where=where,
                    unit=_unit(f.name)))
            elif f.type in (str, "str"):
                check_text(f.name, v, MAX_TEXT, where=where)
            elif f.type in (dict, "dict"):
                object.__setattr__(self, f.name, parse_channels(v, where=where))
            elif f.type in (bool, "bool") and not isinstance(v, bool):
                raise ConfigError(f"{where} {f.name}={v!r} is not a valid bool (true or false)",
                                  key=f.name)
        if self.channels and self.emg_channel:
            raise ConfigError(f"{where}: emg_channel={self.emg_channel!r} and channels are both "
                              "set: name the watched channels in channels only", key="channels")
        if self.status_line not in ("auto", "on", "off"):
            raise ConfigError(f"config [capture] status_line={self.status_line!r}: use auto, on "
                              "or off", key="status_line")
        if self.stop_at and parse_clock(self.stop_at) is None:
            raise ConfigError(f"config [capture] stop_at={self.stop_at!r}: use HH:MM (local "
                              "time, 24 h) or ''", key="stop_at")
        if self.hook:
            try:
                argv = shlex.split(self.hook)
            except ValueError as exc:
                raise ConfigError(f"config [capture] hook={self.hook!r}: {exc}",
                                  key="hook") from exc
            if not argv:
                raise ConfigError("config [capture] hook is blank", key="hook")

    # ------------------------------------------------------------------------------
    @classmethod
    def field_docs(cls) -> list[tuple[str, str, object]]:
        """``(name, doc, default)`` for every key, in declaration order."""
        return field_docs(cls)

    def replace(self, **changes) -> CaptureConfig:
        """A copy with some keys changed (values converted and checked)."""
        return self.from_mapping(changes, base=self)

    @classmethod
    def from_mapping(cls, mapping: dict, base: CaptureConfig | None = None,
                     where: str = "config [capture]") -> CaptureConfig:
        """Build from names -> values (strings are converted to the key's type)."""
        base = base or cls()
        hints = typing.get_type_hints(cls)
        known = {f.name for f in fields(cls)}
        values = {}
        for key, raw in mapping.items():
            if key not in known:
                raise ConfigError(f"{where}: unknown key {key!r} (known: "
                                  f"{', '.join(f.name for f in fields(cls))})", key=key)
            values[key] = _convert(key, raw, hints[key], where)
        try:
            return dataclasses.replace(base, **values)
        except ConfigError as exc:       # a range check: say where the value came from
            raise ConfigError(str(exc).replace("config [capture]", where, 1),
                              key=exc.key) from None


RANGES: dict[str, tuple[float, float]] = {
    f.name: (f.metadata["lo"], f.metadata["hi"])
    for f in fields(CaptureConfig) if f.metadata.get("lo") is not None}
"""The allowed range of each numeric ``[capture]`` key (from its field)."""


def parse_clock(text: str) -> tuple[int, int] | None:
    """``"HH:MM"`` -> ``(hour, minute)``; None if it is not a clock time."""
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", text or "")
    if not m:
        return None
    h, mi = int(m.group(1)), int(m.group(2))
    return (h, mi) if h < 24 and mi < 60 else None


def parse_channels(value, where: str = "config [capture]") -> dict:
    """``[capture] channels`` as {channel label: site}: from a TOML table or from
    ``"LABEL=SITE,LABEL=SITE"`` (``--set``); sites normalised
    (:func:`crampwatch.sites.normalize_site`), labels and sites distinct.

    Examples
    --------
    >>> parse_channels("EMG L=left calf, EMG R=Right_Calf")
    {'EMG L': 'left_calf', 'EMG R': 'right_calf'}
    >>> parse_channels({"EMG L": "calf", "emg l": "foot"})
    Traceback (most recent call last):
    ...
    crampwatch.errors.ConfigError: config [capture] channels: the label 'emg l' is named twice
    """
    if isinstance(value, str):
        items = {}
        for part in (p for p in value.split(",") if p.strip()):
            if "=" not in part:
                raise ConfigError(f"{where} channels: {part.strip()!r} is not LABEL=SITE",
                                  key="channels")
            label, site = part.split("=", 1)
            if label.strip().lower() in (k.lower() for k in items):
                raise ConfigError(f"{where} channels: the label {label.strip()!r} is named "
                                  "twice", key="channels")
            items[label.strip()] = site.strip()
        value = items
    if not isinstance(value, dict):
        raise ConfigError(f"{where} channels: must be a table of channel label = site, not "
                          f"{builtin_type_name(value)}", key="channels")
    if len(value) > MAX_CHANNELS:
        raise ConfigError(f"{where} channels: {len(value)} channels; allowed: at most "
                          f"{MAX_CHANNELS}", key="channels")
    out: dict = {}
    for label, site in value.items():
        check_text("channels", label, MAX_LABEL, where=where)
        if not label.strip():
            raise ConfigError(f"{where} channels: a channel label is blank", key="channels")
        if not isinstance(site, str):
            raise ConfigError(f"{where} channels: the site of {label!r} must be a string, not "
                              f"{builtin_type_name(site)}", key="channels")
        check_text("channels", site, MAX_LABEL, where=where)
        if label.strip().lower() in (k.lower() for k in out):
            raise ConfigError(f"{where} channels: the label {label.strip()!r} is named twice",
                              key="channels")
        norm = normalize_site(site)
        if norm in out.values():
            raise ConfigError(f"{where} channels: the site {norm!r} is given to two channels "
                              "(each watched channel needs its own site)", key="channels")
        out[label.strip()] = norm
    return out


def _convert(key: str, raw, typ, where: str):
    if typ is dict:
        return parse_channels(raw, where=where)
    try:
        if typ is bool:
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.lower() in ("1", "true", "yes", "on"):
                return True
            if isinstance(raw, str) and raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ is float:
            lo, hi = RANGES.get(key, (None, None))
            return check_number(key, raw, lo, hi, float, where=where, unit=_unit(key))
        if typ is str:
            if not isinstance(raw, str):
                raise ValueError
            return check_text(key, raw, MAX_TEXT, where=where)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {key}={raw!r} is not a valid {typ.__name__}",
                          key=key) from exc
    return raw


def default_config_path() -> str:
    """Where the config file is looked for when ``--config`` is not given:
    ``$CRAMPWATCH_CONFIG``, else ``crampwatch.toml`` in ``$CRAMPWATCH_HOME``
    if that is set, else in the platform's user config directory (Linux:
    ``~/.config/crampwatch/crampwatch.toml``).  The file need not exist."""
    if os.environ.get(CONFIG_ENV):
        return os.environ[CONFIG_ENV]
    home = os.environ.get("CRAMPWATCH_HOME")
    if home:
        return os.path.join(home, CONFIG_NAME)
    from platformdirs import user_config_dir
    return os.path.join(user_config_dir("crampwatch", appauthor=False), CONFIG_NAME)


@dataclass(frozen=True)
class LoadedConfig:
    """The effective configuration and where it came from."""

    capture: CaptureConfig
    detector: DetectorConfig
    path: str | None          # the file read, None when no file was used


def load_config(path: str | None = None, overrides: list[str] | None = None, *,
                use_default: bool = True) -> LoadedConfig:
    """Read a config file (``[capture]`` and ``[detector]`` tables) and apply
    ``NAME=VALUE`` overrides.

    Parameters
    ----------
    path : str or None
        The TOML file; None looks for :func:`default_config_path` (when
        ``use_default``) and uses the defaults if there is none.
    overrides : list of str
        ``NAME=VALUE`` (the CLI's ``--set``); ``NAME`` is a detector or a
        capture key, or ``capture.NAME`` / ``detector.NAME``.

    Raises
    ------
    ConfigError
        Missing file (when named explicitly), invalid TOML, unknown table or
        key, a value of the wrong type or out of range.

    Examples
    --------
    >>> cfg = load_config(None, ["hook_timeout_s=5", "min_duration_s=12"], use_default=False)
    >>> cfg.capture.hook_timeout_s, cfg.detector.min_duration_s
    (5.0, 12.0)
    """
    used = None
    data: dict = {}
    if path is None and use_default:
        candidate = default_config_path()
        if os.path.isfile(candidate):
            path = candidate
    if path is not None:
        data = read_toml(path)
        used = path
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    unknown = sorted(set(tables) - {"capture", "detector"})
    if unknown:
        raise ConfigError(f"{path}: unknown table [{unknown[0]}] (known: [capture], [detector])",
                          key=unknown[0])
    if scalars and tables:
        key = min(scalars)
        raise ConfigError(f"{path}: key {key!r} is outside any table: put it under [capture] "
                          "or [detector]", key=key)
    det_map = tables.get("detector", scalars)
    cap = CaptureConfig.from_mapping(tables.get("capture", {}), where=f"{path} [capture]")
    try:
        det = DetectorConfig.from_mapping(det_map, where=f"{path} [detector]")
    except ConfigError as exc:
        if path is None or str(path) in str(exc):
            raise
        raise ConfigError(f"{path} [detector]: {exc}", key=exc.key) from None
    except (TypeError, ValueError, OverflowError) as exc:
        # a value of a type the detector's own checks do not expect (a table, a date)
        raise ConfigError(f"{path} [detector]: a value of the wrong type ({exc})") from None
    cap_over, det_over = _split_overrides(overrides or [])
    if cap_over:
        cap = CaptureConfig.from_mapping(cap_over, base=cap, where="--set")
    det = det.with_overrides(det_over)
    return LoadedConfig(cap, det, used)


def _split_overrides(items: list[str]) -> tuple[dict, list[str]]:
    cap_keys = {f.name for f in fields(CaptureConfig)}
    det_keys = {f.name for f in fields(DetectorConfig)}
    cap, det = {}, []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected NAME=VALUE")
        name, value = (s.strip() for s in item.split("=", 1))
        table, _, bare = name.rpartition(".")
        if table not in ("", "capture", "detector"):
            raise ConfigError(f"--set {item!r}: unknown table {table!r} (capture or detector)")
        if table == "capture" or (not table and bare in cap_keys and bare not in det_keys):
            cap[bare] = value
        elif table == "detector" or bare in det_keys:
            det.append(f"{bare}={value}")
        else:
            raise ConfigError(f"--set {item!r}: unknown key {bare!r} (see 'crampwatch config "
                              "show')", key=bare)
    return cap, det
