"""Make docs/simulated_night.png: what ``crampwatch simulate`` makes.

Reads the sample night (recordings/sample_night.edf and its labels file) and
draws four excerpts side by side -- a cramp, turning over, walking, a series
of periodic limb movements -- each with the calf EMG (uV, raw and its 250 ms
RMS envelope) above the accelerometer (g, three axes), labelled spans shaded.

    python docs/make_figure.py [EDF] [--out docs/simulated_night.png]
"""

from __future__ import annotations

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from crampwatch.firmware_bridge.edf import open_edf  # noqa: E402
from crampwatch.firmware_bridge.labels import read_labels  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

COLORS = {
    "cramp": "#d62728",
    "turn": "#9467bd",
    "walk": "#2ca02c",
    "plm": "#ff7f0e",
    "twitches": "#8c564b",
    "stretch": "#e377c2",
    "resting_tone": "#7f7f7f",
    "pop": "#17becf",
    "lead_off": "#000000",
    "mains": "#bcbd22",
    "ecg": "#1f77b4",
    "drift": "#aec7e8",
}


def _window(labels, kind, pick, pad_before, pad_after, max_len=None, note=None):
    cands = [lab for lab in labels if lab.kind == kind and (note is None or note in lab.note)]
    if not cands:
        raise SystemExit(f"no {kind} in the labels")
    lab = pick(cands)
    a = max(0.0, lab.onset_s - pad_before)
    b = lab.offset_s + pad_after
    if max_len is not None:
        b = min(b, a + max_len)
    return lab, a, b


def _envelope(x, fs, win_s=0.25):
    w = max(1, int(win_s * fs))
    m = len(x) // w
    env = np.sqrt(np.mean(x[: m * w].reshape(m, w) ** 2, axis=1))
    t = (np.arange(m) + 0.5) * w / fs
    return t, env


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("edf", nargs="?", default=os.path.join(ROOT, "recordings", "sample_night.edf"))
    p.add_argument("--out", default=os.path.join(HERE, "simulated_night.png"))
    args = p.parse_args(argv)
    labels = read_labels(os.path.splitext(args.edf)[0] + ".labels.csv")

    with open_edf(args.edf) as rec:
        fs_e, fs_a = rec.emg.fs_hz, rec.acc.fs_hz
        cramp, ca, cb = _window(
            labels, "cramp", lambda c: max(c, key=lambda x: x.duration_s), 30.0, 20.0, max_len=240.0
        )
        turn, ta, tb = _window(
            labels, "turn", lambda c: max(c, key=lambda x: x.duration_s), 6.0, 8.0
        )
        walk, wa, _ = _window(labels, "walk", lambda c: c[0], 0.0, 0.0, note="getting up")
        wa, wb = wa + 2.0, wa + 22.0
        plms = [lab for lab in labels if lab.kind == "plm"]
        pa = max(0.0, plms[0].onset_s - 8.0)
        pb = min(pa + 190.0, plms[-1].offset_s + 8.0)
        panels = [
            (f"Cramp ({cramp.duration_s:.0f} s)", ca, cb),
            ("Turning over in bed", ta, tb),
            ("Getting up and walking", wa, wb),
            ("Periodic limb movements", pa, pb),
        ]

        fig, axes = plt.subplots(
            2,
            4,
            figsize=(17, 6.2),
            sharex="col",
            gridspec_kw=dict(height_ratios=[1.6, 1.0], hspace=0.08, wspace=0.28),
        )
        for col, (title, a, b) in enumerate(panels):
            e = rec.read_emg(int(a * fs_e), int((b - a) * fs_e)).astype(float)
            acc = rec.read_acc(int(a * fs_a), int((b - a) * fs_a)).astype(float)
            te = a + np.arange(e.size) / fs_e
            ta_ = a + np.arange(acc.shape[0]) / fs_a
            ax_e, ax_a = axes[0, col], axes[1, col]
            shown = [lab for lab in labels if lab.offset_s >= a and lab.onset_s <= b]
            for j, lab in enumerate(shown):
                for ax in (ax_e, ax_a):
                    ax.axvspan(
                        max(lab.onset_s, a),
                        min(lab.offset_s, b),
                        color=COLORS[lab.kind],
                        alpha=0.13,
                        lw=0,
                    )
                if lab.kind == "plm" and j and shown[j - 1].kind == "plm":
                    continue  # one name for a series
                ax_e.text(
                    max(lab.onset_s, a),
                    0.99 - 0.07 * (j % 3),
                    " " + lab.kind.replace("_", " "),
                    transform=ax_e.get_xaxis_transform(),
                    va="top",
                    ha="left",
                    fontsize=7.5,
                    color=COLORS[lab.kind],
                )
            ax_e.plot(te, e - np.median(e), lw=0.35, color="0.35", label="EMG (raw)")
            tenv, env = _envelope(e - np.median(e), fs_e)
            ax_e.plot(a + tenv, env, lw=1.4, color="#d62728", label="250 ms RMS")
            lim = max(30.0, np.percentile(np.abs(e - np.median(e)), 99.7) * 1.15)
            ax_e.set_ylim(-lim, lim * 1.25)
            ax_e.set_title(title, fontsize=11)
            for k, (name, c) in enumerate(zip("xyz", ("#1f77b4", "#ff7f0e", "#2ca02c"))):
                ax_a.plot(ta_, acc[:, k], lw=0.9, color=c, label=f"acc {name}")
            ax_a.set_ylim(-1.6 if col != 2 else -2.5, 1.6 if col != 2 else 3.0)
            ax_a.set_xlabel("time in the night (s)")
            ax_a.set_xlim(a, b)
            if col == 0:
                ax_e.set_ylabel("calf EMG (\u00b5V)")
                ax_a.set_ylabel("acceleration (g)")
            ax_e.grid(alpha=0.25)
            ax_a.grid(alpha=0.25)
        axes[0, 0].legend(loc="lower left", fontsize=7.5, framealpha=0.8)
        axes[1, 0].legend(loc="lower left", fontsize=7.5, ncol=3, framealpha=0.8)
        fig.suptitle(
            f"crampwatch simulate: {os.path.basename(args.edf)} (EMG {fs_e:g} Hz, "
            f"accelerometer {fs_a:g} Hz; shaded: labelled events)",
            fontsize=12,
        )
        fig.subplots_adjust(left=0.05, right=0.99, top=0.89, bottom=0.09)
        fig.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
