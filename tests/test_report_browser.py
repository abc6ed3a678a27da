"""crampwatch review --html: the report is self-contained (nothing fetched, no script) and,
rendered in headless Chromium, loads without console errors or network requests and shows the
night's timeline, one close-up per episode and the trends (checked in a full-page
screenshot); a night whose recording was deleted gets a note instead of close-ups.  A night
watched on both calves (cramps on either leg and an uncertain episode, logged through
EpisodeLog from a two-channel EDF) renders with one timeline lane per site, the sites in the
tables and the uncertain episode drawn hatched and counted apart.

Chromium is driven through the DevTools protocol over a pipe (``--remote-debugging-pipe``,
fds 3 and 4): no extra Python package, no port.  Skipped when no Chromium is installed
(Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import select
import shutil
import subprocess
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from crampwatch.detector import Episode
from crampwatch.firmware_bridge.edf import write_edf
from crampwatch.firmware_bridge.synth import NightSpec, SyntheticNight
from crampwatch.tools import _plots
from crampwatch.tools.cli import main
from crampwatch.tools.episode_log import EpisodeLog

START = datetime(2025, 4, 7, 21, 55, tzinfo=timezone.utc)
CHROMIUM = next((p for p in (shutil.which(n) for n in
                             ("chromium", "chromium-browser", "google-chrome")) if p), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium installed (Debian: apt-get install chromium)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--force-device-scale-factor=1"]


class Chromium:
    """Headless Chromium over the DevTools protocol on a pipe (fd 3: commands, fd 4: replies)."""

    def __init__(self, user_data_dir: str, timeout_s: float = 60.0):
        self.timeout_s = timeout_s
        to_child_r, self._w = os.pipe()
        self._r, from_child_w = os.pipe()

        def fds():                      # in the child: the pipe ends become fds 3 and 4
            a, b = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={user_data_dir}", "--remote-debugging-pipe",
             "about:blank"], preexec_fn=fds, close_fds=False, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []
        page = next(t for t in self.call("Target.getTargets")["targetInfos"]
                    if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", targetId=page["targetId"],
                                 flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=True)

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe: "
                                   + self.proc.stderr.read().decode()[-2000:])
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, session: bool = False, **params) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout_s
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str) -> dict:
        deadline = time.monotonic() + self.timeout_s
        seen = len(self.events)
        for ev in self.events[:seen]:
            if ev.get("method") == method:
                return ev
        while True:
            ev = self._read_message(deadline)
            self.events.append(ev)
            if ev.get("method") == method:
                return ev

    def open(self, url: str, width: int = 1200, height: int = 2000) -> None:
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width,
                  height=height, deviceScaleFactor=1, mobile=False)
        self.call("Page.navigate", session=True, url=url)
        self.wait_event("Page.loadEventFired")
        # one round trip more, so events queued during the load are in self.events
        self.call("Runtime.evaluate", session=True, expression="1")

    def evaluate(self, js: str):
        r = self.call("Runtime.evaluate", session=True, expression=js, returnByValue=True)
        return r["result"].get("value")

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions, and requests for anything but file:/data:."""
        out = []
        for ev in self.events:
            m, p = ev.get("method"), ev.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(f"exception: {p['exceptionDetails'].get('text')}")
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(f"console.{p['type']}: {p.get('args')}")
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append(f"log: {p['entry'].get('text')}")
            elif m == "Network.requestWillBeSent":
                url = p["request"]["url"]
                if not url.startswith(("file:", "data:")):
                    out.append(f"network request: {url}")
        return out

    def full_page_png(self, width: int = 1200) -> bytes:
        size = self.call("Page.getLayoutMetrics", session=True)["cssContentSize"]
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width,
                  height=int(np.ceil(size["height"])), deviceScaleFactor=1, mobile=False)
        shot = self.call("Page.captureScreenshot", session=True, format="png",
                         captureBeyondViewport=True)
        return base64.b64decode(shot["data"])

    def close(self) -> None:
        try:
            self._id += 1
            os.write(self._w, json.dumps({"id": self._id, "method": "Browser.close"}).encode()
                     + b"\0")
            self.proc.wait(timeout=15)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            os.close(self._w)
            os.close(self._r)
            self.proc.stderr.close()


def _png_array(png: bytes) -> np.ndarray:
    import matplotlib.image
    return matplotlib.image.imread(io.BytesIO(png), format="png")[..., :3]


def _count_color(region: np.ndarray, color, alpha: float = 1.0, tol: float = 0.05) -> int:
    """Pixels within ``tol`` of ``color`` drawn with ``alpha`` over white."""
    from matplotlib.colors import to_rgb
    rgb = 1.0 - alpha * (1.0 - np.array(to_rgb(color)))
    return int((np.abs(region - rgb).max(axis=-1) < tol).sum())


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A log with the night of START (two cramps, its EDF present) and the night before
    (one episode whose recording file was deleted); the HTML report of both."""
    d = tmp_path_factory.mktemp("report")
    edf = d / "night.edf"
    write_edf(edf, SyntheticNight(NightSpec(hours=0.25, seed=3, n_cramps=2, start_utc=START)))
    db = d / "episodes.sqlite"
    assert main(["replay", str(edf), "--db", str(db), "--quiet"]) == 0
    gone = d / "deleted.edf"                  # never there: as if deleted
    with EpisodeLog(str(db)) as log:
        start = START - timedelta(days=1)
        nid = log.night_for(start)
        rid = log.add_recording(nid, str(gone), start, channel="EMG calf", emg_fs_hz=1000.0,
                                acc_fs_hz=100.0)
        log.update_recording(rid, ended_utc=start + timedelta(minutes=20))
        ep = Episode(1, 300.0, 345.0, 120.0, 60.0, 0.9, 2.0, "closed")
        log.close_episode(log.open_episode(nid, rid, start, ep, 1000.0, "EMG calf"), start, ep,
                          1000.0)
    out = d / "report.html"
    assert main(["review", "--db", str(db), "--html", str(out), "--nights", "2"]) == 0
    with EpisodeLog(str(db)) as log:
        night = log.night_by_date(log.nights()[-1]["night_date"])
        n_eps = len(log.episodes(night["night_id"]))
    assert n_eps >= 1
    return {"dir": d, "html": out, "n_episodes": n_eps, "deleted": str(gone),
            "night": night["night_date"]}


def test_report_is_self_contained(report):
    text = report["html"].read_text()
    outside_images = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
    assert "http" not in outside_images.lower(), "a URL in a self-contained report"
    assert "url(" not in outside_images and "//" not in outside_images.replace("://", "")
    srcs = re.findall(r'\b(?:src|href)="([^"]*)"', text)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<script" not in text and "<link" not in text and "@import" not in text
    assert text.count('class="plot timeline"') == 2                   # one per night
    assert text.count('class="plot closeup"') == report["n_episodes"]   # the deleted file's
    assert text.count("is missing (moved or deleted)") == 1            # episode: a note
    assert report["deleted"] in text
    assert oct(report["html"].stat().st_mode & 0o777) == "0o600"
    # one site: as it always was (no lanes list, no site column, no per-site rows)
    assert 'class="lanes"' not in text and "<th>site</th>" not in text
    assert "Cramps, " not in text and 'class="sites"' not in text


@needs_chromium
def test_chromium_renders_timeline_closeups_and_trends(report, tmp_path):
    browser = Chromium(str(tmp_path / "profile"))
    try:
        browser.open(report["html"].resolve().as_uri())
        problems = browser.problems()
        images = browser.evaluate(
            "JSON.stringify([...document.images].map(i => {const r = i.getBoundingClientRect();"
            " return {id: i.id, cls: i.className, w: i.naturalWidth, h: i.naturalHeight,"
            " x: r.left + scrollX, y: r.top + scrollY, cw: r.width, ch: r.height,"
            " src: i.src.length};}))")
        text = browser.evaluate("document.body.innerText")
        png = browser.full_page_png()
    finally:
        browser.close()
    shot_path = tmp_path / "report-screenshot.png"
    shot_path.write_bytes(png)
    print(f"screenshot: {shot_path}")
    assert problems == []
    images = json.loads(images)
    assert all(im["w"] > 0 and im["h"] > 0 for im in images), "an image did not load"
    kinds = [im["cls"].split()[-1] for im in images]
    assert kinds.count("timeline") == 2 and kinds.count("trends") == 1
    assert kinds.count("closeup") == report["n_episodes"]
    assert "is missing (moved or deleted)" in text

    shot = _png_array(png)
    assert shot.std() > 0.05                                    # not a blank page
    html = report["html"].read_text()
    for im in images:
        assert (im["cw"], im["ch"]) == (im["w"], im["h"]), "image scaled: colours blurred"
        x, y = int(round(im["x"])), int(round(im["y"]))
        region = shot[y:y + im["h"], x:x + im["w"]]
        assert region.shape[:2] == (im["h"], im["w"])
        # what the browser shows is the embedded figure, pixel for pixel (almost)
        data = re.search(rf'id="{im["id"]}"[^>]*src="data:image/png;base64,([^"]+)"', html)
        embedded = _png_array(base64.b64decode(data.group(1)))
        assert np.mean(np.abs(region - embedded)) < 0.02, im["id"]
        kind = im["cls"].split()[-1]
        if kind == "timeline":
            assert _count_color(region, _plots.EPISODE_COLOR, alpha=0.28, tol=0.03) > 500
            if im["id"] == f"timeline-{report['night']}":   # per-minute summary: curves
                assert _count_color(region, _plots.ENVELOPE_COLOR) > 200
                assert _count_color(region, _plots.MOTION_COLOR) > 100
                assert _count_color(region, _plots.GOOD_COLOR) > 1000
            else:                                           # the night without one
                assert _count_color(region, _plots.ENVELOPE_COLOR) == 0
        elif kind == "closeup":
            assert _count_color(region, _plots.RAW_COLOR, tol=0.08) > 500
            assert _count_color(region, _plots.ENVELOPE_COLOR) > 500
            assert _count_color(region, _plots.ONSET_COLOR) > 300      # onset lines
            assert _count_color(region, _plots.OFFSET_COLOR) > 150     # dashed offset lines
            assert sum(_count_color(region, c) for c in _plots.ACC_COLORS) > 300
        else:
            assert _count_color(region, _plots.EPISODE_COLOR) > 100    # cramp bars


@needs_chromium
def test_the_browser_check_catches_errors_and_network_requests(tmp_path):
    """The harness itself: a page with a script error and a remote image must be caught."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/x.png">'
                   "<script>console.error('broken'); undefinedFunction();</script></body></html>")
    browser = Chromium(str(tmp_path / "profile"))
    try:
        browser.open(bad.as_uri())
        problems = browser.problems()
    finally:
        browser.close()
    assert any(p.startswith("exception:") for p in problems)
    assert any(p.startswith("console.error") for p in problems)
    assert any("network request: http://127.0.0.1:9/x.png" in p for p in problems)


# --------------------------------------------------------------------------- two sites
TWO_START = START + timedelta(days=3)


class _TwoCalves:
    """Two one-leg synthetic nights side by side: EMG (n, 2), left then right."""

    emg_labels = ("EMG L calf", "EMG R calf")

    def __init__(self, left, right):
        self.left, self.right = left, right
        for k in ("emg_fs_hz", "acc_fs_hz", "duration_s", "n_emg_samples", "n_acc_samples",
                  "has_accelerometer", "mains_hz"):
            setattr(self, k, getattr(left, k))
        self.start_time = left.spec.start_utc

    def render_emg(self, start, n):
        return np.column_stack([np.asarray(self.left.render_emg(start, n)).reshape(-1),
                                np.asarray(self.right.render_emg(start, n)).reshape(-1)])

    def render_acc(self, start, n):
        return self.left.render_acc(start, n)


@pytest.fixture(scope="module")
def two_sites(tmp_path_factory):
    """A night on both calves: the left leg's cramps and the right leg's in one EDF of two
    EMG channels, logged per site through EpisodeLog, and an uncertain episode on the right;
    the HTML report."""
    from crampwatch.tools.episode_log import utc_iso
    d = tmp_path_factory.mktemp("two-sites")
    left = SyntheticNight(NightSpec(hours=0.25, seed=3, n_cramps=2, start_utc=TWO_START))
    right = SyntheticNight(NightSpec(hours=0.25, seed=5, n_cramps=1, start_utc=TWO_START))
    edf = d / "two.edf"
    write_edf(edf, _TwoCalves(left, right))
    sites = {"left_calf": ("EMG L calf", left), "right_calf": ("EMG R calf", right)}
    want = {}
    db = d / "episodes.sqlite"
    with EpisodeLog(str(db)) as log:
        nid = log.night_for(TWO_START)
        rid = log.add_recording(nid, str(edf), TWO_START, channel="EMG L calf,EMG R calf",
                                emg_fs_hz=left.emg_fs_hz, acc_fs_hz=left.acc_fs_hz)
        log.update_recording(rid, ended_utc=TWO_START + timedelta(seconds=left.duration_s))
        for site, (channel, night) in sites.items():
            cramps = [lab for lab in night.labels if lab.kind == "cramp"]
            want[site] = len(cramps)
            busy = {int(m) for lab in cramps for m in range(int(lab.onset_s // 60),
                                                            int(lab.offset_s // 60) + 1)}
            log.add_minutes(rid, [{"minute_utc": utc_iso(TWO_START + timedelta(minutes=m)),
                                   "rms_uv": 80.0 if m in busy else 3.0, "rms_p95_uv": 6.0,
                                   "floor_uv": 2.0, "motion_g": 0.01, "good_s": 58.0,
                                   "artifact_s": 2.0, "nodata_s": 0.0}
                                  for m in range(15)], site=site)
            for i, lab in enumerate(cramps):
                ep = Episode(i + 1, lab.onset_s, lab.offset_s, 150.0, 90.0, 0.9, 2.0, "closed")
                log.add_episode(nid, rid, TWO_START, ep, left.emg_fs_hz, channel, site)
        quiet = Episode(9, 840.0, 852.0, 30.0, 20.0, 0.31, 2.0, "uncertain")
        log.add_episode(nid, rid, TWO_START, quiet, left.emg_fs_hz, "EMG R calf", "right_calf")
        n_eps = len(log.episodes(nid))
    out = d / "two.html"
    assert main(["review", "--db", str(db), "--html", str(out)]) == 0
    assert want["left_calf"] >= 1 and want["right_calf"] >= 1
    return {"html": out, "want": want, "n_episodes": n_eps}


@needs_chromium
def test_chromium_renders_a_two_site_night_with_lanes_and_sites(two_sites, tmp_path):
    browser = Chromium(str(tmp_path / "profile"))
    try:
        browser.open(two_sites["html"].resolve().as_uri())
        problems = browser.problems()
        dom = json.loads(browser.evaluate(
            "JSON.stringify({lanes: [...document.querySelectorAll('.lane')].map(e => "
            "[e.dataset.site, e.innerText]), cells: [...document.querySelectorAll('td.site')]"
            ".map(e => [e.dataset.site, e.closest('tr').className]), facts: [...document."
            "querySelectorAll('table.facts tr')].map(r => r.innerText), trend: [...document."
            "querySelectorAll('table.sites tr[data-site]')].map(r => [r.dataset.site, "
            "r.cells[1].innerText]), images: [...document.images].map(i => {const r = "
            "i.getBoundingClientRect(); return {id: i.id, cls: i.className, alt: i.alt, "
            "w: i.naturalWidth, h: i.naturalHeight, x: r.left + scrollX, y: r.top + scrollY};})})"))
        text = browser.evaluate("document.body.innerText")
        png = browser.full_page_png()
    finally:
        browser.close()
    (tmp_path / "two-sites.png").write_bytes(png)
    assert problems == []
    want = two_sites["want"]
    assert dom["lanes"] == [["left_calf", "left calf"], ["right_calf", "right calf"]]
    cells = dom["cells"]
    assert len(cells) == two_sites["n_episodes"]
    assert sum(1 for site, _ in cells if site == "left_calf") == want["left_calf"]
    assert [c for c in cells if c[1] == "uncertain"] == [["right_calf", "uncertain"]]
    facts = "\n".join(dom["facts"])
    assert re.search(rf"Cramps\t{want['left_calf'] + want['right_calf']}\b", facts), facts
    assert re.search(rf"Cramps, left calf\t{want['left_calf']}\b", facts)
    assert re.search(rf"Cramps, right calf\t{want['right_calf']}\b.*1 uncertain", facts)
    assert re.search(r"Uncertain\t1 \(not counted", facts)
    assert dict(dom["trend"]) == {k: str(v) for k, v in want.items()}
    assert "Episode #" in text and "(uncertain: not counted)" in text

    shot = _png_array(png)
    kinds = [im["cls"].split()[-1] for im in dom["images"]]
    assert kinds.count("closeup") == two_sites["n_episodes"]     # each from its own channel
    tl = next(im for im in dom["images"] if im["cls"].endswith("timeline"))
    assert "one lane per site: left calf, right calf" in tl["alt"]
    x, y = int(round(tl["x"])), int(round(tl["y"]))
    region = shot[y:y + tl["h"], x:x + tl["w"]]
    top, middle = region[: tl["h"] * 2 // 5], region[tl["h"] * 2 // 5: tl["h"] * 4 // 5]
    for lane in (top, middle):                  # an envelope and a cramp in each leg's lane
        assert _count_color(lane, _plots.ENVELOPE_COLOR) > 100
        assert _count_color(lane, _plots.EPISODE_COLOR, alpha=0.28, tol=0.03) > 200
    assert _count_color(top, _plots.UNCERTAIN_COLOR, tol=0.08) == 0
    assert _count_color(middle, _plots.UNCERTAIN_COLOR, tol=0.08) > 30   # hatched, right leg
