"""``crampwatch simulate``: write a synthetic night as EDF+ with its labels file.

The EDF+ holds the calf EMG ("EMG calf", uV) and the accelerometer ("Acc X",
"Acc Y", "Acc Z", g); ``OUT.labels.csv`` beside it (same stem) lists every
cramp and every distractor (kind,onset_s,offset_s,note).  See
:mod:`crampwatch.firmware_bridge.synth` for what a night holds.

``--randomize`` draws the night of a domain-randomised family
(:func:`~crampwatch.firmware_bridge.synth.randomized_spec`); options given
explicitly (``--fs``, ``--acc-fs``, ``--mains``, ``--floor-uv``, ``--cramps``,
``--start``) override what the family draws.  A night without an accelerometer
is written without the "Acc" channels; accelerometer samples that a failed
sensor never gave (NaN in the simulator) are written as zeros.

``--legs 2`` writes both calves ("EMG L calf", "EMG R calf") and the left
shank's accelerometer (:mod:`crampwatch.firmware_bridge.synth.two_legs`):
cramps on either leg, body movements on both; the labels file gains a ``site``
column.  The left leg is the one-leg night of the same options.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from datetime import datetime, timezone

from crampwatch.errors import ConfigError, InputFileError
from crampwatch.firmware_bridge.synth.randomize import FAMILIES

HELP = "write a synthetic night (EDF+ with EMG and accelerometer) and its labels file"
DESCRIPTION = (
    "Simulate a night of calf EMG (uV) and 3-axis leg acceleration (g) with nocturnal cramps "
    "and everything that must not be mistaken for one (turns, periodic limb movements, walks, "
    "stretches, resting tone, twitches, electrode pops, lead-off, mains, ECG, drift). Writes "
    "OUT (EDF+, or BDF+ if it ends in .bdf) and OUT's stem + .labels.csv. With --randomize, "
    "a domain-randomised night: board (noise floor, settling, floor steps, ADC step, rates, "
    "mains), behaviour (standing, sitting, leg movements, movement at cramp onset), faults "
    "(loose electrode, accelerometer failures or none), strength (weak, strong, short, slowly "
    "building cramps) or shifted (all at once)."
)


def labels_path_for(out_path: str) -> str:
    """``night.edf`` -> ``night.labels.csv`` (same folder, same stem)."""
    stem, _ = os.path.splitext(out_path)
    return stem + ".labels.csv"


def _start(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"--start {text!r} is not an ISO 8601 date and time (e.g. 2024-03-05T23:10:00Z)",
            key="start",
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc)


def add_arguments(parser) -> None:
    parser.add_argument("out", metavar="OUT.edf", help="EDF+ file to write (.bdf for BDF+)")
    parser.add_argument("--hours", type=float, default=8.0, help="length of the night (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--fs",
        type=float,
        default=None,
        metavar="HZ",
        help="EMG sample rate, 200-4000 Hz (default 1000, or drawn with --randomize)",
    )
    parser.add_argument(
        "--acc-fs",
        type=float,
        default=None,
        metavar="HZ",
        help="accelerometer sample rate, 20-200 Hz (default 100, or drawn with --randomize)",
    )
    parser.add_argument(
        "--mains",
        type=float,
        default=None,
        choices=[50.0, 60.0],
        help="mains frequency of the interference (default 50, or drawn with --randomize)",
    )
    parser.add_argument(
        "--randomize",
        action="store_true",
        help="draw a domain-randomised night of --family (see crampwatch.firmware_bridge.synth)",
    )
    parser.add_argument(
        "--family",
        default=None,
        choices=FAMILIES,
        help="family of the randomised night (with --randomize; default shifted): "
        + ", ".join(FAMILIES),
    )
    parser.add_argument(
        "--cramps",
        type=int,
        default=None,
        metavar="N",
        help="number of cramps (default: random 1-4)",
    )
    parser.add_argument(
        "--start",
        default=None,
        metavar="ISO8601",
        help="start of the night, e.g. 2024-03-05T23:10:00Z (default: from the seed)",
    )
    parser.add_argument(
        "--floor-uv",
        type=float,
        default=None,
        metavar="UV",
        help="EMG noise floor, uV RMS in 20-450 Hz (default: random 1.5-5, or as the family draws)",
    )
    parser.add_argument(
        "--no-annotations",
        action="store_true",
        help="do not store the labels as EDF+ annotations in the file",
    )
    parser.add_argument(
        "--legs",
        type=int,
        default=1,
        choices=[1, 2],
        help="1 (default): one calf; 2: both calves, cramps on either leg, turns and walks "
        "seen on both",
    )
    parser.add_argument(
        "--labels",
        default=None,
        metavar="PATH",
        help="labels file to write (default: OUT's stem + .labels.csv)",
    )


def run(args) -> int:
    from crampwatch._files import make_private, private_umask
    from crampwatch.firmware_bridge.edf import write_edf
    from crampwatch.firmware_bridge.labels import LABEL_KINDS, write_labels
    from crampwatch.firmware_bridge.synth import (
        NightSpec,
        SyntheticNight,
        describe_spec,
        randomized_spec,
    )

    if args.fs is not None and not 200.0 <= args.fs <= 4000.0:
        raise ConfigError(f"--fs {args.fs:g} Hz is outside 200-4000 Hz", key="fs")
    if args.acc_fs is not None and not 20.0 <= args.acc_fs <= 200.0:
        raise ConfigError(f"--acc-fs {args.acc_fs:g} Hz is outside 20-200 Hz", key="acc_fs")
    if not 0 < args.hours <= 24:
        raise ConfigError(f"--hours {args.hours:g} must be within (0, 24]", key="hours")
    if args.seed < 0:
        raise ConfigError(f"--seed {args.seed} must be >= 0", key="seed")
    if args.cramps is not None and args.cramps < 0:
        raise ConfigError(f"--cramps {args.cramps} must be >= 0", key="cramps")
    if args.floor_uv is not None and not args.floor_uv > 0:
        raise ConfigError(f"--floor-uv {args.floor_uv:g} must be > 0", key="floor_uv")
    if args.family is not None and not args.randomize:
        raise ConfigError("--family needs --randomize", key="family")
    start = _start(args.start) if args.start else None
    out = args.out
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise InputFileError(f"{out}: folder {folder} does not exist", path=out)
    given = dict(
        emg_fs_hz=args.fs,
        acc_fs_hz=args.acc_fs,
        mains_hz=args.mains,
        n_cramps=args.cramps,
        start_utc=start,
        floor_rms_uv=args.floor_uv,
    )
    if args.randomize:
        family = args.family or "shifted"
        changes = {k: v for k, v in given.items() if v is not None}
        spec = randomized_spec(args.seed, family, hours=args.hours, **changes)
    else:
        defaults = dict(emg_fs_hz=1000.0, acc_fs_hz=100.0, mains_hz=50.0)
        spec = NightSpec(
            hours=args.hours,
            seed=args.seed,
            **{k: (defaults.get(k) if v is None else v) for k, v in given.items()},
        )
    if args.legs == 2:
        from crampwatch.firmware_bridge.synth.two_legs import TwoLegNight

        night = TwoLegNight(spec)
        floor_uv = night.left.floor_rms_uv
        annotations = [(lab.onset_s, lab.offset_s - lab.onset_s,
                        " ".join(x for x in (lab.kind, lab.site) if x)
                        + (f": {lab.note}" if lab.note else "")) for lab in night.labels]
    else:
        night = SyntheticNight(spec)
        floor_uv = night.floor_rms_uv
        annotations = night.labels

    bar = None
    progress = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(
            total=round(night.duration_s), unit="s", desc="simulate", file=sys.stderr, leave=False
        )

        def progress(done_s, total_s):
            bar.update(round(done_s) - bar.n)

    note = f"synthetic seed {args.seed}" + (f" {spec.family}" if args.randomize else "")
    labels_path = args.labels or labels_path_for(out)
    try:
        # health data, even simulated: 0600 whatever the umask (pyedflib opens the file)
        with private_umask():
            res = write_edf(
                out,
                night.for_file(),
                annotations=None if args.no_annotations else annotations,
                recording_note=note,
                progress=progress,
            )
            write_labels(labels_path, night.labels)
    finally:
        if bar is not None:
            bar.close()
    make_private(out)
    make_private(labels_path)
    counts = Counter(lab.kind for lab in night.labels)
    distractors = ", ".join(f"{k} {counts[k]}" for k in LABEL_KINDS if k != "cramp" and counts[k])
    if args.randomize:
        rates = describe_spec(spec, floor_uv)
    else:
        rates = f"EMG {spec.emg_fs_hz:g} Hz, acc {spec.acc_fs_hz:g} Hz"
    if args.legs == 2:
        per_leg = Counter(lab.site for lab in night.labels if lab.kind == "cramp")
        cramps = (f"{counts['cramp']} cramps ("
                  + ", ".join(f"{site.replace('_', ' ')} {per_leg[site]}" for site in night.sites)
                  + ")")
    else:
        cramps = f"{counts['cramp']} cramps"
    print(
        f"{out}: {res.duration_s / 3600:.2f} h ({res.duration_s:.0f} s), {rates}, "
        f"{cramps}; distractors: {distractors}; labels {labels_path}"
    )
    return 0
