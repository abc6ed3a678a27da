"""`crampwatch tune` picks settings by their score on labelled recordings."""

from crampwatch.detector.config import DetectorConfig
from crampwatch.tools.cli import main


def test_tune_prefers_settings_that_find_the_cramps(sim_night, tmp_path, capsys):
    edf, labels = sim_night
    best = tmp_path / "best.toml"
    # 600 s minimum duration finds nothing; 10 s finds the long cramp
    assert main(["tune", edf, "--labels", labels, "--try", "min_duration_s=600,10",
                 "--write", str(best)]) == 0
    out = capsys.readouterr().out
    assert "best: min_duration_s=10" in out
    assert DetectorConfig.from_toml(str(best)).min_duration_s == 10.0


def test_tune_rejects_bad_values_before_replaying(sim_night, capsys):
    edf, labels = sim_night
    assert main(["tune", edf, "--labels", labels, "--try", "min_duration_s=ten"]) == 2
    assert "min_duration_s" in capsys.readouterr().err
