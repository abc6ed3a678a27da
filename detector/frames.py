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
    ``hum_ms_uv2``, ``raw_mean_uv`` and ``raw_ptp_uv`` (peak-to-peak of the raw
    signal, for flat-line and saturation checks).  Samples of an incomplete
    frame are kept for the next call.
    """

    def __init__(self, hop_n: int):
        self.hop_n = int(hop_n)
        self._rest = None  # (y, h, x) leftovers shorter than one frame
        self.next_frame = 0

    def reset_to(self, sample_index: int) -> None:
        """Restart after a gap: drop leftovers, next frame starts at the frame
        containing ``sample_index`` (rounded up to a frame boundary)."""
        self._rest = None
        self.next_frame = -(-int(sample_index) // self.hop_n)

    def process(self, y: np.ndarray, h: np.ndarray, x: np.ndarray) -> dict:
        if self._rest is not None:
            y = np.concatenate([self._rest[0], y])
            h = np.concatenate([self._rest[1], h])
            x = np.concatenate([self._rest[2], x])
        n_full = len(y) // self.hop_n
        m = n_full * self.hop_n
        self._rest = (y[m:], h[m:], x[m:]) if m < len(y) else None
        yf = y[:m].reshape(n_full, self.hop_n)
        hf = h[:m].reshape(n_full, self.hop_n)
        xf = x[:m].reshape(n_full, self.hop_n)
        out = {
            "first_frame": self.next_frame,
            "ms_uv2": np.einsum("ij,ij->i", yf, yf) / self.hop_n,
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
    ``process(gravity_g, dynamic_g, first_index)`` accumulates sums per frame;
    ``pop_ready(upto_frame)`` returns per-frame means for completed frames
    (frames with no sample hold the previous frame's value).
    """

    def __init__(self, acc_fs_hz: float, emg_fs_hz: float, hop_n: int):
        self.acc_fs_hz = float(acc_fs_hz)
        self.frame_s = hop_n / float(emg_fs_hz)
        self.next_frame = 0          # first frame not yet returned (= row 0 of _buf)
        self.covered_frame = 0       # frames below this are complete
        self._buf = np.zeros((0, 5))  # rows: sum gx, gy, gz, sum dyn, count
        self._last = np.full(4, np.nan)

    def frame_of(self, index):
        # the small epsilon keeps exact boundaries in the later frame
        return np.floor(np.asarray(index) / self.acc_fs_hz / self.frame_s + 1e-9).astype(np.int64)

    def process(self, gravity_g: np.ndarray, dynamic_g: np.ndarray, first_index: int) -> None:
        n = len(dynamic_g)
        if n == 0:
            return
        k = self.frame_of(np.arange(first_index, first_index + n))
        keep = k >= self.next_frame
        k, gravity_g, dynamic_g = k[keep], gravity_g[keep], dynamic_g[keep]
        self.covered_frame = max(self.covered_frame, int(self.frame_of(first_index + n)))
        if len(k) == 0:
            return
        rel = k - self.next_frame
        size = int(rel[-1]) + 1
        if size > len(self._buf):
            self._buf = np.vstack([self._buf, np.zeros((size - len(self._buf), 5))])
        for i in range(3):
            self._buf[:size, i] += np.bincount(rel, weights=gravity_g[:, i], minlength=size)
        self._buf[:size, 3] += np.bincount(rel, weights=dynamic_g, minlength=size)
        self._buf[:size, 4] += np.bincount(rel, minlength=size)

    def pop_ready(self, upto_frame: int) -> np.ndarray:
        """Means ``(n, 4)`` (gravity x, y, z, dynamic) for frames
        ``next_frame .. upto_frame-1``."""
        n = max(0, upto_frame - self.next_frame)
        if n == 0:
            return np.zeros((0, 4))
        if n > len(self._buf):
            self._buf = np.vstack([self._buf, np.zeros((n - len(self._buf), 5))])
        rows, self._buf = self._buf[:n], self._buf[n:]
        cnt = rows[:, 4]
        has = cnt > 0
        means = np.empty((n, 4))
        means[has] = rows[has, :4] / cnt[has, None]
        # forward-fill frames without a sample from the last frame that had one
        idx = np.where(has, np.arange(n), -1)
        np.maximum.accumulate(idx, out=idx)
        filled = np.where(idx[:, None] >= 0, means[np.maximum(idx, 0)], self._last[None, :])
        if has.any():
            self._last = means[np.nonzero(has)[0][-1]]
        self.next_frame += n
        return filled
