"""Scoring against labels: IoU matching, false positives by distractor kind."""

import pytest

from crampwatch.detector.evaluation import iou, match, score


def test_iou():
    assert iou((0, 10), (0, 10)) == 1.0
    assert iou((0, 10), (5, 15)) == pytest.approx(5 / 15)
    assert iou((0, 1), (2, 3)) == 0.0


def test_iou_threshold_is_inclusive_at_0_3():
    # 3 s overlap of a 10 s label by a 3 s episode: IoU exactly 0.3 -> found
    assert match([(0.0, 3.0)], [(0.0, 10.0)]) == [(0, 0, pytest.approx(0.3))]
    assert match([(0.0, 2.9)], [(0.0, 10.0)]) == []


def test_one_to_one_and_false_positives_by_kind():
    labels = [("cramp", 100, 160), ("turn", 300, 303), ("walk", 500, 620),
              ("cramp", 1000, 1030)]
    episodes = [(101, 158), (99, 161), (301, 320), (505, 600), (2000, 2020)]
    r = score(episodes, labels, duration_s=7200)
    assert r["true_positives"] == 1 and r["false_positives"] == 4 and r["false_negatives"] == 1
    assert r["false_positives_by_kind"] == {"cramp": 1, "turn": 1, "walk": 1, "none": 1}
    assert r["false_positives_per_hour"] == 2.0
    assert r["precision"] == 0.2 and r["recall"] == 0.5
    assert r["onset_error_median_s"] == 1.0      # the better match (IoU) was kept


def test_no_labels_no_episodes():
    r = score([], [], duration_s=3600)
    assert r["precision"] == 1.0 and r["recall"] == 1.0 and r["false_positives_per_hour"] == 0
