"""Labels files: CSV round trip, JSON Lines (episodes as labels), bad rows."""

from __future__ import annotations

import json

import pytest
from crampwatch.firmware_bridge.labels import LABEL_KINDS, Label, read_labels, write_labels

from crampwatch.errors import InputFileError


def test_csv_round_trip_keeps_every_field(tmp_path):
    labels = [
        Label(kind, 10.0 * i + 0.125, 10.0 * i + 3.5, f'note {i}, with comma "q"')
        for i, kind in enumerate(LABEL_KINDS)
    ]
    p = tmp_path / "n.labels.csv"
    write_labels(p, labels[::-1])
    got = read_labels(p)
    assert got == labels  # sorted by onset on writing
    assert p.read_text().splitlines()[0] == "kind,onset_s,offset_s,note"


def test_write_keeps_notes_on_one_line(tmp_path):
    p = tmp_path / "n.csv"
    write_labels(p, [Label("cramp", 1.0, 2.0, "two\nlines")])
    assert read_labels(p) == [Label("cramp", 1.0, 2.0, "two lines")]


def test_row_without_note_and_blank_lines(tmp_path):
    p = tmp_path / "n.csv"
    p.write_text("kind,onset_s,offset_s,note\nturn,1,2\n\ncramp,5.5,65\n")
    assert read_labels(p) == [Label("turn", 1.0, 2.0), Label("cramp", 5.5, 65.0)]


@pytest.mark.parametrize(
    "row,fragment",
    [
        ("spasm,1,2,", "unknown label kind 'spasm'"),
        ("cramp,abc,2,", "onset_s 'abc' is not a number"),
        ("cramp,5,2,", "offset_s 2 is before onset_s 5"),
        ("cramp,1,nan,", "offset_s 'nan' must be a finite number"),
        ("cramp,-1,2,", "onset_s '-1' must be a finite number >= 0"),
        ("cramp,1,2,x,y", "expected 3 or 4 fields"),
        ("cramp", "expected 3 or 4 fields"),
    ],
)
def test_bad_csv_row_names_file_and_line(tmp_path, row, fragment):
    p = tmp_path / "bad.csv"
    p.write_text(f"kind,onset_s,offset_s,note\nturn,1,2,ok\n{row}\n")
    with pytest.raises(InputFileError) as exc:
        read_labels(p)
    msg = str(exc.value)
    assert msg.startswith(f"{p}: line 3: ") and fragment in msg
    assert exc.value.path == str(p)


def test_wrong_header_and_empty_and_missing(tmp_path):
    p = tmp_path / "h.csv"
    p.write_text("start,end\n1,2\n")
    with pytest.raises(InputFileError, match="line 1: expected header"):
        read_labels(p)
    e = tmp_path / "e.csv"
    e.write_text("")
    with pytest.raises(InputFileError, match="empty"):
        read_labels(e)
    with pytest.raises(InputFileError, match="no such labels file"):
        read_labels(tmp_path / "missing.csv")


def test_jsonl_episodes_serve_as_labels(tmp_path):
    p = tmp_path / "episodes.jsonl"
    rows = [
        {"onset_s": 12.5, "offset_s": 70.0, "peak_uv": 120.0, "confidence": 0.9},
        {"kind": "turn", "onset_s": 80, "offset_s": 82, "note": "x"},
    ]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert read_labels(p) == [Label("cramp", 12.5, 70.0), Label("turn", 80.0, 82.0, "x")]


@pytest.mark.parametrize(
    "line,fragment",
    [
        ('{"onset_s": 1}', "missing offset_s"),
        ('{"onset_s": 1, "offset_s": 2', "not valid JSON"),
        ('{"onset_s": "soon", "offset_s": 2}', "is not a number"),
    ],
)
def test_bad_jsonl_line_names_line(tmp_path, line, fragment):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"onset_s": 1, "offset_s": 2}\n' + line + "\n")
    with pytest.raises(InputFileError) as exc:
        read_labels(p)
    assert f"{p}: line 2: " in str(exc.value) and fragment in str(exc.value)
