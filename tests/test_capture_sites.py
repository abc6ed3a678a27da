"""Capture watching every configured channel: ``[capture] channels`` maps channel
labels to body sites, each watched channel runs its own pipeline, and every
episode carries its site and channel.

- a two-channel night (a cramp on the right leg between three on the left),
  captured through ``crampwatch capture`` with ``[capture] channels`` from a
  TOML file: each cramp is logged once, on its leg; ``crampwatch replay
  RECORDING --emg A,B`` of the capture's recording gives the same episodes
  per site (onsets and offsets within 0.05 s, as tests/test_capture_e2e.py);
  the onset hook gets ``CRAMPWATCH_SITE`` and ``CRAMPWATCH_CHANNEL``;
- a label the board does not have: one line naming it and the board's
  channels, exit status 2;
- without ``channels`` the first EMG channel is watched, as before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from boardsim_helpers import db_rows
from signals import muscle_noise

from crampwatch.firmware_bridge.edf import write_edf
from crampwatch.firmware_bridge.synth import NightSpec, SyntheticNight
from crampwatch.tools.cli import main

LABELS = ("EMG L calf", "EMG R calf")
#: the right leg's cramp: the left's third cramp (320.8-363.0 s, after its twitches
#: end at 318.8 s) copied onto the right channel here, while the left is between cramps
RIGHT_AT_S = 135.0
SEGMENT_S = (319.0, 368.0)


class TwoLegs:
    """The 9 min night of seed 2 (three cramps, on the left calf) plus a right calf
    channel: resting muscle noise with one cramp of its own."""

    labels = LABELS

    def __init__(self):
        self.night = night = SyntheticNight(NightSpec(hours=0.15, seed=2))
        self.emg_fs_hz, self.acc_fs_hz = night.emg_fs_hz, night.acc_fs_hz
        self.duration_s, self.start_time = night.duration_s, night.start_time
        self.emg_labels = LABELS
        fs = self.emg_fs_hz
        self.left = night.render_emg(0, night.n_emg_samples)
        self.right = muscle_noise(np.random.default_rng(7), night.n_emg_samples, fs, 2.0)
        a, b = (int(t * fs) for t in SEGMENT_S)
        t0 = int(RIGHT_AT_S * fs)
        self.right[t0:t0 + b - a] += self.left[a:b]
        self.left_cramps = [lab for lab in night.labels if lab.kind == "cramp"]
        self.right_onset_s = RIGHT_AT_S + (self.left_cramps[2].onset_s - SEGMENT_S[0])

    def render_emg(self, start, n):
        return np.stack([self.left[start:start + n], self.right[start:start + n]], axis=1)

    def render_acc(self, start, n):
        return self.night.render_acc(start, n)


@pytest.fixture(scope="module")
def two_legs(tmp_path_factory):
    night = TwoLegs()
    path = tmp_path_factory.mktemp("two_legs") / "two_legs.edf"
    write_edf(str(path), night)
    return night, str(path)


def _write_config(path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_two_channels_live_equal_replay_per_site(two_legs, tmp_path, monkeypatch, capsys):
    night, edf = two_legs
    home = tmp_path / "home"
    monkeypatch.setenv("CRAMPWATCH_HOME", str(home))
    hook_out = tmp_path / "hook.txt"
    cfg = _write_config(tmp_path / "crampwatch.toml", f"""
[capture]
source = "file://{edf}?speed=max&emg=all"
status_line = "off"
hook = "sh -c 'echo \\"$CRAMPWATCH_SITE|$CRAMPWATCH_CHANNEL|$CRAMPWATCH_ONSET_S\\" >> {hook_out}'"
channels = {{ "emg l calf" = "Left Calf", "EMG R calf" = "right soleus" }}
""")
    assert main(["capture", "--config", cfg]) == 0
    summary = capsys.readouterr().out
    assert "left calf: 3 episodes" in summary and "right soleus: 1 episode," in summary

    db = home / "episodes.sqlite"
    live = db_rows(db, "SELECT * FROM episodes ORDER BY onset_s")
    by_site = {s: [e for e in live if e["site"] == s] for s in ("left_calf", "right_soleus")}
    assert {e["site"] for e in live} == {"left_calf", "right_soleus"}
    assert all(e["channel"] == {"left_calf": LABELS[0], "right_soleus": LABELS[1]}[e["site"]]
               for e in live)
    # each cramp once, on its leg
    assert len(by_site["left_calf"]) == len(night.left_cramps) == 3
    for e, lab in zip(by_site["left_calf"], night.left_cramps):
        assert abs(e["onset_s"] - lab.onset_s) <= 2.0, (e, lab)
        assert e["status"] == "closed"
    assert len(by_site["right_soleus"]) == 1
    assert abs(by_site["right_soleus"][0]["onset_s"] - night.right_onset_s) <= 2.0
    # one row per minute per watched site
    minutes = db_rows(db, "SELECT site, COUNT(*) AS n FROM minutes GROUP BY site ORDER BY site")
    assert [(m["site"], m["n"]) for m in minutes] == [("left_calf", 9), ("right_soleus", 9)]
    rec = db_rows(db, "SELECT path, channel FROM recordings")
    assert len(rec) == 1 and rec[0]["channel"] == ",".join(LABELS)

    # replay of the capture's recording (no --emg: the channels and sites watched live,
    # from its header, "right soleus" included, which no label would suggest): the same
    # episodes per site
    out = tmp_path / "replay.jsonl"
    assert main(["replay", rec[0]["path"], "--episodes", str(out), "--quiet"]) == 0
    replayed = [json.loads(line) for line in out.read_text().splitlines()]
    for site, mine in by_site.items():
        theirs = sorted((r for r in replayed if r["site"] == site), key=lambda r: r["onset_s"])
        assert len(theirs) == len(mine), (site, theirs, mine)
        for r, e in zip(theirs, mine):
            assert r["channel"] == e["channel"]
            assert abs(r["onset_s"] - e["onset_s"]) <= 0.05
            assert abs(r["offset_s"] - e["offset_s"]) <= 0.05

    # the hook knew each onset's site and channel
    hooks = sorted(line.split("|") for line in hook_out.read_text().splitlines())
    assert sorted((s, c) for s, c, _ in hooks) == sorted((e["site"], e["channel"]) for e in live)
    for site, channel, onset_s in hooks:
        assert any(abs(float(onset_s) - e["onset_s"]) < 1e-3 for e in by_site[site])


def test_a_label_the_board_lacks_is_one_line_naming_it_and_the_channels(two_legs, tmp_path):
    _, edf = two_legs
    cfg = _write_config(tmp_path / "c.toml", f"""
[capture]
source = "file://{edf}?speed=max&emg=all"
channels = {{ "EMG L calf" = "left_calf", "EMG Left foot" = "left_foot" }}
""")
    proc = subprocess.run(
        [sys.executable, "-m", "crampwatch.tools.cli", "capture", "--config", cfg],
        env={**os.environ, "CRAMPWATCH_HOME": str(tmp_path / "home")},
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("crampwatch: config [capture] channels:")
    assert "'EMG Left foot'" in last and "'EMG L calf', 'EMG R calf'" in last
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("bad, why", [
    ('channels = { "EMG L" = "calf", "emg l" = "foot" }', "named twice"),
    ('channels = { "EMG L" = "calf", "EMG R" = "Calf" }', "given to two channels"),
    ('channels = { "EMG L" = 3 }', "must be a string"),
    ('channels = "EMG L"', "not LABEL=SITE"),
    ('channels = { "EMG L" = "left_calf" }\nemg_channel = "EMG L"', "both set"),
])
def test_bad_channels_tables_are_refused_when_loaded(tmp_path, bad, why):
    from crampwatch.errors import ConfigError
    from crampwatch.tools.capture.config import load_config
    path = _write_config(tmp_path / "c.toml", f"[capture]\n{bad}\n")
    with pytest.raises(ConfigError, match=why):
        load_config(path)


def test_without_channels_the_first_emg_channel_is_watched(two_legs, tmp_path, monkeypatch,
                                                          capsys):
    night, edf = two_legs
    monkeypatch.setenv("CRAMPWATCH_HOME", str(tmp_path / "home"))
    assert main(["capture", "--source", f"file://{edf}?speed=max&emg=all",
                 "--set", "status_line=off"]) == 0
    rows = db_rows(tmp_path / "home" / "episodes.sqlite", "SELECT * FROM episodes")
    assert {(e["site"], e["channel"]) for e in rows} == {("left_calf", LABELS[0])}
    assert len(rows) == len(night.left_cramps)
    assert "left calf:" not in capsys.readouterr().out      # one site: no per-site lines
