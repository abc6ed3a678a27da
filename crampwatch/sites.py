"""Body sites of EMG channels: which muscle of which leg a channel watches.

A site is a short name: one of :data:`KNOWN_SITES` (``left_calf``,
``right_calf``, ``left_tibialis``, ...) or free text given by the user
(``[capture] channels`` maps channel labels to sites; ``replay`` guesses
from the label).  Sites are what people read in the review: "left calf".

Examples
--------
>>> site_for("EMG L gastroc")
'left_calf'
>>> site_for("Right Leg")
'right_leg'
>>> site_for("ch3", {"CH3": "left tibialis"})
'left_tibialis'
>>> site_for("EMG calf")
'calf'
>>> site_label("left_calf")
'left calf'
"""

from __future__ import annotations

import re

KNOWN_SITES = ("left_calf", "right_calf", "left_tibialis", "right_tibialis", "left_foot",
               "right_foot", "left_leg", "right_leg", "calf", "tibialis", "foot", "leg")
"""Sites the review knows how to group by leg (free text is allowed too)."""

_MUSCLES = (
    ("calf", ("calf", "gastroc", "gastrocnemius", "gm", "gl", "soleus", "sol", "triceps")),
    ("tibialis", ("tibialis", "ta", "tib", "anterior", "shin")),
    ("foot", ("foot", "plantar", "toe", "toes", "fdb", "ah")),
    ("leg", ("leg", "legs", "limb", "lat")),
)
_SIDES = (("left", ("left", "l", "lt", "li", "sx")), ("right", ("right", "r", "rt", "re", "dx")))
MAX_SITE_CHARS = 40


def normalize_site(text: str) -> str:
    """A site as stored: lower case, words joined by ``_``, at most 40 characters
    of letters, digits and ``_``."""
    words = re.findall(r"[a-z0-9]+", str(text).lower())
    return "_".join(words)[:MAX_SITE_CHARS] or "emg"


def site_for(label: str, mapping: dict | None = None) -> str:
    """The site of the channel ``label``: from ``mapping`` (labels matched
    case-insensitively, values normalised), else guessed from the label's words
    (side and muscle), else the label itself, normalised."""
    if mapping:
        for key, site in mapping.items():
            if str(key).strip().lower() == str(label).strip().lower():
                return normalize_site(site)
    words = set(re.findall(r"[a-z]+", str(label).lower()))
    # "LLeg"/"RLeg" style labels of sleep labs
    for w in list(words):
        m = re.fullmatch(r"([lr])(leg|calf|ta|gm|gl)", w)
        if m:
            words |= {m.group(1), m.group(2)}
    side = next((s for s, keys in _SIDES if words & set(keys)), None)
    muscle = next((m for m, keys in _MUSCLES if words & set(keys)), None)
    if muscle is None and side is not None:
        muscle = "leg"
    if muscle is None:
        return normalize_site(label)
    return f"{side}_{muscle}" if side else muscle


def site_label(site: str) -> str:
    """How a site reads on screen: ``left_calf`` -> ``left calf``."""
    return str(site).replace("_", " ")


def leg_of(site: str) -> str | None:
    """``"left"``, ``"right"`` or None (unknown side)."""
    head = str(site).split("_", 1)[0]
    return head if head in ("left", "right") else None
