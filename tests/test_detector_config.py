"""The typed detector config: --set, TOML, validation, documentation."""

import pytest

from crampwatch.detector.config import DetectorConfig
from crampwatch.errors import ConfigError


def test_overrides_convert_types():
    cfg = DetectorConfig().with_overrides(["min_duration_s=5", "band_order=2", "mains_hz=60"])
    assert (cfg.min_duration_s, cfg.band_order, cfg.mains_hz) == (5.0, 2, "60")
    assert isinstance(cfg.min_duration_s, float) and isinstance(cfg.band_order, int)


@pytest.mark.parametrize("bad, key", [
    (["min_duraton_s=5"], "min_duraton_s"),
    (["min_duration_s=five"], "min_duration_s"),
    (["band_order=2.5"], "band_order"),
    (["mains_hz=55"], "mains_hz"),
    (["min_duration_s=-1"], "min_duration_s"),
    (["nonsense"], None),
])
def test_bad_overrides_are_config_errors(bad, key):
    with pytest.raises(ConfigError) as e:
        DetectorConfig().with_overrides(bad)
    assert e.value.key == key
    assert "\n" not in str(e.value)


def test_unknown_key_suggests_close_names():
    with pytest.raises(ConfigError, match="min_duration_s"):
        DetectorConfig().with_overrides(["min_duration=5"])


def test_toml_detector_table(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[detector]\nmin_duration_s = 7.5\nmains_hz = "50"\n')
    cfg = DetectorConfig.from_toml(str(p))
    assert cfg.min_duration_s == 7.5 and cfg.mains_hz == "50"
    p.write_text("[detector\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        DetectorConfig.from_toml(str(p))


def test_every_field_is_documented_with_a_unit_or_meaning():
    docs = DetectorConfig.field_docs()
    assert len(docs) > 30
    for name, doc, _ in docs:
        assert doc, name
        if name.endswith("_s"):
            assert "(s)" in doc or "s)" in doc, name
        if name.endswith("_uv"):
            assert "uV" in doc, name
