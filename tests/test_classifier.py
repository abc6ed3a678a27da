"""The learned candidate classifier (issue 11): settings, the model path,
uncertain episodes, hostile model files through the CLI, and retraining from
the stored table reproducing the shipped model."""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from crampwatch.detector import DetectorConfig, EpisodeEnded, EpisodeStarted, Pipeline
from crampwatch.detector.features import CANDIDATE_FEATURES
from crampwatch.errors import ConfigError
from crampwatch.models import fit_model, load_model, params_sha256, shipped_table
from crampwatch.tools.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "recordings", "sample_night.edf")


# ----------------------------------------------------------------- settings
def test_classifier_settings_from_set_and_toml(tmp_path):
    cfg = DetectorConfig().with_overrides(["classifier=model", "min_confidence=0.7",
                                           "model_file=/some/where/own.json"])
    assert (cfg.classifier, cfg.min_confidence, cfg.model_file) == \
        ("model", 0.7, "/some/where/own.json")
    toml = tmp_path / "c.toml"
    toml.write_text('[detector]\nclassifier = "model"\nmin_confidence = 0.25\n')
    assert DetectorConfig.from_toml(str(toml)).classifier == "model"
    for bad in (["classifier=forest"], ["min_confidence=1.5"]):
        with pytest.raises(ConfigError):
            DetectorConfig().with_overrides(bad)


def test_bad_classifier_value_is_one_line_listing_the_choices(capsys):
    assert main(["replay", SAMPLE, "--set", "classifier=forest", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("crampwatch: ") and "rules" in err and "model" in err
    assert "\n" not in err


def test_model_path_needs_a_candidate_model():
    with pytest.raises(ConfigError, match="candidate model"):
        Pipeline(DetectorConfig(classifier="model"), 1000.0, confidence_model=lambda f: 0.5)


# ----------------------------------------------------------------- the model path
def _night(seed=203, hours=0.3, family="behaviour"):
    from crampwatch.firmware_bridge.synth import SyntheticNight, randomized_spec
    return SyntheticNight(randomized_spec(seed, family, hours=hours))


def _run(night, cfg, block_s=300.0, model=None):
    view = night.for_file()
    pipe = Pipeline(cfg, view.emg_fs_hz, view.acc_fs_hz, keep_trace=False,
                    confidence_model=model or load_model(), acc_wait_s=block_s + 1.0)
    ev = []
    ne = int(block_s * view.emg_fs_hz)
    for k, i in enumerate(range(0, night.n_emg_samples, ne)):
        if view.acc_fs_hz:
            na = int(block_s * view.acc_fs_hz)
            n = min(na, night.n_acc_samples - k * na)
            if n > 0:
                ev += pipe.process_acc(view.render_acc(k * na, n), k * na)
        ev += pipe.process_emg(view.render_emg(i, min(ne, night.n_emg_samples - i)), i)
    return ev + pipe.finish()


@pytest.fixture(scope="module")
def night():
    return _night()


@pytest.fixture(scope="module")
def runs(night):
    return {"rules": _run(night, DetectorConfig()),
            "model": _run(night, DetectorConfig(classifier="model")),
            "model, 37 s blocks": _run(night, DetectorConfig(classifier="model"), block_s=37.0)}


def test_model_path_same_events_whatever_the_blocks(runs):
    a, b = runs["model"], runs["model, 37 s blocks"]
    assert any(isinstance(e, EpisodeEnded) for e in a)
    assert [type(e).__name__ for e in a] == [type(e).__name__ for e in b]
    ea = [e.episode for e in a if isinstance(e, EpisodeEnded)]
    eb = [e.episode for e in b if isinstance(e, EpisodeEnded)]
    assert [(x.onset_s, x.offset_s, x.confidence, x.status) for x in ea] == \
        [(x.onset_s, x.offset_s, x.confidence, x.status) for x in eb]


def test_model_agreeing_keeps_the_rules_onset_latency(night, runs):
    cramps = [(lb.onset_s, lb.offset_s) for lb in night.labels if lb.kind == "cramp"]
    rules = [e for e in runs["rules"] if isinstance(e, EpisodeStarted)]
    model = [e for e in runs["model"] if isinstance(e, EpisodeStarted)]
    found = 0
    for c in cramps:
        r = [e for e in rules if abs(e.episode.onset_s - c[0]) < 5]
        m = [e for e in model if abs(e.episode.onset_s - c[0]) < 5]
        if r and m and m[0].episode.confidence >= 0.5:
            assert m[0].confirmed_at_s == r[0].confirmed_at_s
            found += 1
    assert found >= 1


def test_uncertain_episodes_are_kept_and_not_counted(sim_night, tmp_path):
    out = tmp_path / "e.jsonl"
    assert main(["replay", sim_night[0], "--episodes", str(out), "--quiet",
                 "--set", "min_confidence=1.0"]) == 0
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert recs and all(r["status"] == "uncertain" for r in recs)
    js = tmp_path / "m.json"
    assert main(["evaluate", sim_night[0], "--labels", sim_night[1], "--json", str(js),
                 "--set", "min_confidence=1.0", "--jobs", "1"]) == 0
    pooled = json.loads(js.read_text())["pooled"]
    assert pooled["n_reported"] == 0 and pooled["true_positives"] == 0
    assert pooled["n_uncertain"] == len(recs)


def test_evaluate_compare_shows_both_classifiers(sim_night, capsys):
    assert main(["evaluate", sim_night[0], "--labels", sim_night[1], "--compare",
                 "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    head = [ln for ln in out.splitlines() if "rules" in ln and "model" in ln]
    assert head, out
    f1 = [ln for ln in out.splitlines() if ln.strip().startswith("F1")]
    assert len(f1) == 1 and len(f1[0].split()) == 3


# ----------------------------------------------------------------- hostile model files
def _replay_with(model_file, tmp_path, capsys):
    if capsys is not None:      # in this process, through the CLI's main()
        code = main(["replay", SAMPLE, "--set", "classifier=model", "--set",
                     f"model_file={model_file}", "--episodes", str(tmp_path / "e.jsonl"),
                     "--quiet"])
        return subprocess.CompletedProcess([], code, "", capsys.readouterr().err)
    return subprocess.run([sys.executable, "-m", "crampwatch.tools.cli", "replay", SAMPLE,
                           "--set", "classifier=model", "--set", f"model_file={model_file}",
                           "--episodes", str(tmp_path / "e.jsonl"), "--quiet"],
                          capture_output=True, text=True, cwd=str(tmp_path), timeout=120)


class _Marker:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))        # unpickling would create the marker file


def _hostile(kind, tmp_path):
    path = tmp_path / f"{kind}.json"
    spec = load_model().to_spec()
    if kind == "random":
        path.write_bytes(np.random.default_rng(7).bytes(2048))
    elif kind == "truncated":
        path.write_text(json.dumps(spec)[:300])
    elif kind == "pickle":
        path.write_bytes(pickle.dumps(_Marker(str(tmp_path / "PWNED"))))
    elif kind == "coefficient":
        spec["params"]["coef"][3] += 0.5
        path.write_text(json.dumps(spec))
    elif kind == "features":
        spec["feature_names"] = [n + "_v9" for n in spec["feature_names"]]
        spec["params_sha256"] = params_sha256(spec["params"])
        path.write_text(json.dumps(spec))
    return path


@pytest.mark.parametrize("kind,what", [
    ("random", "not a JSON model file"), ("truncated", "not valid JSON"),
    ("pickle", "pickle"), ("coefficient", "params_sha256"), ("features", "other features")])
def test_hostile_model_file_is_one_clear_error(kind, what, tmp_path, capsys):
    path = _hostile(kind, tmp_path)
    # the pickle through the installed command in its own process; the rest in this one
    r = _replay_with(path, tmp_path, None if kind == "pickle" else capsys)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"crampwatch: model {path}: "), r.stderr
    assert what in lines[0]
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "PWNED").exists()
    assert not (tmp_path / "e.jsonl").exists() or not (tmp_path / "e.jsonl").read_text()


def test_a_sleepers_own_model_file_is_used(tmp_path):
    own = load_model().to_spec()
    own["params"]["threshold"] = 1.0         # this one never confirms anything
    own["params_sha256"] = params_sha256(own["params"])
    path = tmp_path / "own.json"
    path.write_text(json.dumps(own))
    out = tmp_path / "e.jsonl"
    assert main(["replay", SAMPLE, "--set", "classifier=model", "--set", f"model_file={path}",
                 "--episodes", str(out), "--quiet"]) == 0
    assert out.read_text().strip() == ""
    assert main(["replay", SAMPLE, "--set", "classifier=model",
                 "--episodes", str(out), "--quiet"]) == 0
    assert out.read_text().strip() != ""


# ----------------------------------------------------------------- reproducibility
def test_refit_from_the_stored_table_gives_the_shipped_parameters():
    shipped = load_model()
    refit = fit_model(shipped_table())
    assert refit.training_data_sha256 == shipped.training_data_sha256
    for k in ("mean", "scale", "coef"):
        np.testing.assert_allclose(getattr(refit, k), getattr(shipped, k), rtol=1e-9, atol=1e-12)
    assert refit.intercept == pytest.approx(shipped.intercept, rel=1e-9, abs=1e-12)
    assert refit.threshold == shipped.threshold


@pytest.mark.parametrize("family,seed", [("behaviour", 2)])
def test_reextracted_training_night_matches_the_stored_rows(family, seed):
    sys.path.insert(0, os.path.join(ROOT, "models"))
    try:
        import train_candidates as tc
    finally:
        sys.path.pop(0)
    rows = tc.sim_rows((family, seed, tc.SIM_HOURS, False))
    stored = [r for r in shipped_table() if r["source"] == f"sim:{family}"
              and r["seed"] == seed and r["family"] == family]
    assert rows and len(rows) == len(stored)
    for a, b in zip(rows, stored):
        assert (a["stage"], a["label"]) == (b["stage"], b["label"])
        for k in ("onset_s", "t_s") + CANDIDATE_FEATURES:
            assert a[k] == pytest.approx(b[k], rel=1e-9, abs=1e-9), k


def test_fit_on_top_of_the_shipped_table_weights_the_own_rows():
    base = shipped_table()
    own = [dict(r, label=1 - r["label"]) for r in base if r["source"] == "sim:tidy"][:40]
    m = fit_model(own, base_rows=base)
    assert m.training["own_rows"] == len(own) and m.training["base_rows"] == len(base)
    assert m.training["own_weight"] >= 1.0
    assert m.coef != load_model().coef
    with pytest.raises(Exception, match="one class"):
        fit_model([dict(r, label=1) for r in own])
