"""Fixed-hop frames aligned to absolute sample indices.

Frame ``k`` of the EMG stream covers samples ``[k*hop_n, (k+1)*hop_n)``,
whatever the chunking, so live and replay compute the same frames.  The
accelerometer is mapped onto the same frames by time.
"""

from __future__ import annotations

import numpy as np


class EmgFrames:
    """Per-frame reductions of the filtered EMG, the removed hum and the raw signal.

    ``process(emg_uv, hum_uv, raw_uv) -> dict of arrays`` for the frames that
    this chunk completed: ``ms_uv2`` (mean square of the filtered EMG),
    ``dms_uv2`` (mean square of its sample-to-sample difference: with
    ``ms_uv2`` it gives the RMS frequency of the signal, Rice's formula),
    ``hum_ms_uv2``, ``raw_mean_uv`` and ``raw_ptp_uv`` (peak-to-peak of the raw
    signal, for flat-line and saturation checks).  Samples of an incomplete
    frame are kept for the next call.
    """

    def __init__(self, hop_n: int):
        self.hop_n = int(hop_n)
        self._rest = None  # (y, h, x) leftovers shorter than one frame
        self._prev_y = None  # the filtered sample before the first leftover
        self.next_frame = 0

    def reset_to(self, sample_index: int) -> None:
        """Restart after a gap: drop leftovers, next frame starts at the frame
        containing ``sample_index`` (rounded up to a frame boundary)."""
        self._rest = None
        self._prev_y = None
        self.next_frame = -(-int(sample_index) // self.hop_n)

    def process(self, y: np.ndarray, h: np.ndarray, x: np.ndarray) -> dict:
        if self._rest is not None:
            y = np.concatenate([self._rest[0], y])
            h = np.concatenate([self._rest[1], h])
            x = np.concatenate([self._rest[2], x])
        n_full = len(y) // self.hop_n
        m = n_full * self.hop_n
        self._rest = (y[m:], h[m:], x[m:]) if m < len(y) else None
        if len(y):
            prev = y[:1] if self._prev_y is None else self._prev_y
            d = np.diff(np.concatenate([prev, y[:m]]))
            if m:
                self._prev_y = y[m - 1:m]
        else:
            d = np.zeros(0)
        df = d.reshape(n_full, self.hop_n)
        yf = y[:m].reshape(n_full, self.hop_n)
        hf = h[:m].reshape(n_full, self.hop_n)
        xf = x[:m].reshape(n_full, self.hop_n)
        out = {
            "first_frame": self.next_frame,
            "ms_uv2": np.einsum("ij,ij->i", yf, yf) / self.hop_n,
            "dms_uv2": np.einsum("ij,ij->i", df, df) / self.hop_n,
            "hum_ms_uv2": np.einsum("ij,ij->i", hf, hf) / self.hop_n,
            "raw_mean_uv": xf.mean(axis=1),
            "raw_ptp_uv": np.ptp(xf, axis=1) if n_full else np.zeros(0),
        }
        self.next_frame += n_full
        return out


class AccFrames:
    """Accelerometer samples mapped onto EMG frames by time.

    Frame ``k`` spans ``[k*frame_s, (k+1)*frame_s)`` with ``frame_s =
    hop_n / emg_fs_hz``; accelerometer sample ``j`` lies at ``j / acc_fs_hz``.
    ``process(gravity_g, dynamic_g, first_index, bad)`` accumulates sums per
    frame (``bad``: per-sample flags of a failed sensor); ``pop_ready(upto_frame)``
    returns per-frame means and the share of good samples for completed frames.
    A frame with no sample holds the previous frame's value for up to
    ``max_fill_s`` (slow accelerometers), then is NaN with health 0: a sensor
    that went silent is never taken as a still leg.
    """

    def __init__(self, acc_fs_hz: float, emg_fs_hz: float, hop_n: int, max_fill_s: float = 0.25):
        self.acc_fs_hz = float(acc_fs_hz)
        self.frame_s = hop_n / float(emg_fs_hz)
        self.max_fill_n = max(1, int(round(max(max_fill_s, 1.5 / self.acc_fs_hz) / self.frame_s)))
        self.next_frame = 0          # first frame not yet returned (= row 0 of _buf)
        self.covered_frame = 0       # frames below this are complete
        self._buf = np.zeros((0, 6))  # rows: sum gx, gy, gz, sum dyn, count, good count
        self._last = np.full(5, np.nan)
        self._last_frame = -(10 ** 9)  # frame of _last

    def frame_of(self, index):
        # the small epsilon keeps exact boundaries in the later frame
        return np.floor(np.asarray(index) / self.acc_fs_hz / self.frame_s + 1e-9).astype(np.int64)

    def process(self, gravity_g: np.ndarray, dynamic_g: np.ndarray, first_index: int,
                bad: np.ndarray | None = None) -> None:
        n = len(dynamic_g)
        if n == 0:
            return
        if bad is None:
            bad = np.zeros(n, dtype=bool)
        k = self.frame_of(np.arange(first_index, first_index + n))
        keep = k >= self.next_frame
        k, gravity_g, dynamic_g, bad = k[keep], gravity_g[keep], dynamic_g[keep], bad[keep]
        self.covered_frame = max(self.covered_frame, int(self.frame_of(first_index + n)))
        if len(k) == 0:
            return
        rel = k - self.next_frame
        size = int(rel[-1]) + 1
        if size > len(self._buf):
            self._buf = np.vstack([self._buf, np.zeros((size - len(self._buf), 6))])
        for i in range(3):
            self._buf[:size, i] += np.bincount(rel, weights=gravity_g[:, i], minlength=size)
        self._buf[:size, 3] += np.bincount(rel, weights=dynamic_g, minlength=size)
        self._buf[:size, 4] += np.bincount(rel, minlength=size)
        self._buf[:size, 5] += np.bincount(rel, weights=(~bad).astype(np.float64), minlength=size)

    def skip_to(self, frame: int) -> None:
        """Forget frames before ``frame`` (after a long EMG gap), without
        allocating for them."""
        n = frame - self.next_frame
        if n <= 0:
            return
        self._buf = self._buf[n:] if n < len(self._buf) else np.zeros((0, 6))
        self.next_frame = frame
        self.covered_frame = max(self.covered_frame, frame)

    def pop_ready(self, upto_frame: int) -> np.ndarray:
        """Per frame ``(n, 5)``: gravity x, y, z and dynamic (means, g) and the
        share of good samples (0 where the sensor failed or was silent), for
        frames ``next_frame .. upto_frame-1``."""
        n = max(0, upto_frame - self.next_frame)
        if n == 0:
            return np.zeros((0, 5))
        if n > len(self._buf):
            self._buf = np.vstack([self._buf, np.zeros((n - len(self._buf), 6))])
        rows, self._buf = self._buf[:n], self._buf[n:]
        cnt = rows[:, 4]
        has = cnt > 0
        means = np.full((n, 5), np.nan)
        means[has, :4] = rows[has, :4] / cnt[has, None]
        means[has, 4] = rows[has, 5] / cnt[has]
        # hold the last frame that had a sample, for at most max_fill_n frames
        frames = self.next_frame + np.arange(n)
        idx = np.where(has, np.arange(n), -1)
        np.maximum.accumulate(idx, out=idx)
        src_frame = np.where(idx >= 0, self.next_frame + idx, self._last_frame)
        filled = np.where(idx[:, None] >= 0, means[np.maximum(idx, 0)], self._last[None, :])
        stale = (frames - src_frame) > self.max_fill_n
        filled[stale] = np.nan
        filled[stale, 4] = 0.0
        if has.any():
            j = int(np.nonzero(has)[0][-1])
            self._last = means[j]
            self._last_frame = self.next_frame + j
        self.next_frame += n
        return filled
