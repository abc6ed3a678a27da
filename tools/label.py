"""``crampwatch label``: the user's verdict on an episode, stored in the episode log.

``--confirmed`` (it was a cramp) or ``--false`` (it was not), with an optional
note; ``--clear`` removes the verdict.  ``crampwatch review`` lists episodes
marked false without counting them, and ``crampwatch evaluate FILE --db LOG``
scores the detector against the verdicts (:func:`verdict_labels`).

Examples
--------
>>> from crampwatch.tools.cli import main
>>> main(["label", "3", "--false", "--note", "turned over", "--db", "episodes.sqlite"])  # doctest: +SKIP
episode #3 (night 2026-03-05, 23:21:54 UTC+01:00, 21.2 s): marked false; note: turned over
0
"""

from __future__ import annotations

import os

from crampwatch.errors import ConfigError, InputFileError
from crampwatch.tools.episode_log import EpisodeLog, parse_utc

__all__ = ["VERDICT_DISTRACTOR_KIND", "verdict_labels"]

HELP = "record your verdict on an episode (--confirmed or --false) in the episode log"
DESCRIPTION = """Record whether an episode was really a cramp. The verdict is stored in the
episode log: 'crampwatch review' lists episodes marked false without counting them, and
'crampwatch evaluate FILE --db LOG' uses the verdicts as labels (confirmed episodes are cramps,
false ones distractors). Episode ids are the ones 'crampwatch review' shows."""

VERDICT_DISTRACTOR_KIND = "user_false"
"""Label kind of an episode the user marked false (a distractor for evaluation)."""
#: longest note stored with a verdict (characters)
MAX_NOTE_CHARS = 2000


def add_arguments(p) -> None:
    p.add_argument("episode_id", type=int, metavar="EPISODE_ID",
                   help="the episode's id (first column of 'crampwatch review')")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--confirmed", dest="verdict", action="store_const", const="confirmed",
                   help="it was a cramp")
    g.add_argument("--false", dest="verdict", action="store_const", const="false",
                   help="it was not a cramp (it is then not counted)")
    g.add_argument("--clear", dest="verdict", action="store_const", const="clear",
                   help="remove the verdict")
    p.add_argument("--note", metavar="TEXT", help="a note stored with the verdict")
    p.add_argument("--db", metavar="FILE",
                   help="episode log (default: the data directory's episodes.sqlite)")


def run(args) -> int:
    from crampwatch._text import sanitize_text
    from crampwatch.tools.review import format_duration, open_log, utc_offset_label
    if args.note is not None and len(args.note) > MAX_NOTE_CHARS:
        raise ConfigError(f"--note: {len(args.note)} characters; at most {MAX_NOTE_CHARS}",
                          key="note")
    with open_log(args.db) as log:
        ep = log.episode(args.episode_id)
        if ep is None:
            n, lo, hi = log.episode_id_range()
            held = f"ids {lo} to {hi}" if n else "no episode yet"
            raise InputFileError(f"no episode #{args.episode_id} in the episode log "
                                 f"{os.path.abspath(log.path)} ({held}; see 'crampwatch "
                                 f"review')", path=log.path)
        verdict = None if args.verdict == "clear" else args.verdict
        note = None if verdict is None else args.note
        log.set_verdict(args.episode_id, verdict, note)
        night = log.get_night(ep["night_id"]) or {}
        onset = parse_utc(ep["onset_utc"]).astimezone()
        dur = None if ep["offset_s"] is None else float(ep["offset_s"]) - float(ep["onset_s"])
        what = "verdict cleared" if verdict is None else f"marked {verdict}"
        line = (f"episode #{args.episode_id} (night {night.get('night_date', '?')}, "
                f"{onset:%H:%M:%S} {utc_offset_label(onset)}, {format_duration(dur)}): {what}")
        if note:
            line += f"; note: {sanitize_text(note, 300)}"
        print(line)
    return 0


def verdict_labels(log: EpisodeLog, recording_path: str, site: str | None = None):
    """The verdicts on one recording's episodes, as evaluation labels.

    Returns ``(labels, unreviewed)``: ``labels`` a list of ``(kind, onset_s,
    offset_s)`` with kind ``"cramp"`` for confirmed episodes and
    :data:`VERDICT_DISTRACTOR_KIND` for false ones, and ``unreviewed`` the
    ``(onset_s, offset_s)`` of episodes without a verdict (times from the
    recording's first sample).  ``site``: only that body site's episodes (None:
    every site's).  ``None`` if the recording is not in the log.

    Examples
    --------
    >>> labels, unreviewed = verdict_labels(log, "night.edf")   # doctest: +SKIP
    >>> labels[0]                                              # doctest: +SKIP
    ('cramp', 714.75, 736.0)
    """
    row = log.recording_by_path(recording_path)
    if row is None:
        return None
    labels, unreviewed = [], []
    end_s = None
    if row["ended_utc"]:
        end_s = (parse_utc(row["ended_utc"]) - parse_utc(row["started_utc"])).total_seconds()
    for ep in log.recording_episodes(row["recording_id"], site=site):
        on = float(ep["onset_s"])
        off = float(ep["offset_s"]) if ep["offset_s"] is not None else (end_s or on)
        if ep["verdict"] == "confirmed":
            labels.append(("cramp", on, off))
        elif ep["verdict"] == "false":
            labels.append((VERDICT_DISTRACTOR_KIND, on, off))
        else:
            unreviewed.append((on, off))
    return labels, unreviewed
