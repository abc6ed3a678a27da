"""Decoded packets + arrival times -> sample blocks with indices, host times and gap events.

One :class:`StreamAssembler` per stream (``emg``, ``acc``) holds that
stream's counter unwrapper and clock fit.  It is fed every packet of the
stream decoded from one read chunk, with the chunk's arrival time, and
returns the blocks and events to hand on.  No I/O, no clock reads: tests feed
it directly.

A counter is trusted only once the next frame agrees with it.  A frame whose
counter does not continue the sequence is held back until the next frame
arrives (one frame of delay, only when something is odd):

- the next frame continues the *old* sequence: the odd frame's counter was
  corrupt (a firmware glitch, a bit error a checksum let through).  It is
  dropped and counted (``frames_implausible``, a ``corrupt_frame`` event),
  never read as a jump: one open-frame packet with a valid CRC whose counter
  jumps by 10**8 would otherwise shift the rest of the night by 14 hours.
  Its own samples are missing, and the gap event for them says so
  (``detail["cause"] == "corrupt_frame"``);
- the next frame continues the odd frame's sequence: the jump is real.  A
  forward jump that the host clock cannot account for (more samples than the
  host time elapsed since the last good frame, with generous tolerance for
  stalls) and any backwards jump is a device restart, its gap measured from
  host time; otherwise the counter's gap stands.

The first frame of a link is held the same way until the second confirms it.

A packet may be a run of frames that the decoder merged (the open frame's
``meta["frame_samples"]``, frames whose indices follow on): a run that does
not simply continue the trusted sequence is screened as its first frame
followed by the rest, which that frame's successor confirms.  A batch whose
packets all continue the trusted sequence exactly (the usual case) takes a
short path with the same state changes and the same block, without the
screen's and the unwrapper's array work.
"""

from __future__ import annotations

import collections
import logging
import math

import numpy as np

from crampwatch.firmware_bridge.clock import ClockFit, CounterUnwrapper
from crampwatch.firmware_bridge.protocols.base import Packet
from crampwatch.firmware_bridge.types import SampleBlock, SourceEvent

logger = logging.getLogger(__name__)

# after a reconnect, a 2**32 counter is trusted when it lands within this many
# seconds of where host time puts it; otherwise the device restarted.
_RECONNECT_TOLERANCE_S = 2.0
# a pause between reads longer than this may hide whole periods of a short counter
_SILENCE_S = 0.25
# envelope windows the drift fit needs before host time may place samples
_FIT_MIN_POINTS = 5
# odd frames held back at most while no frame confirms any other; past this the
# oldest is taken as a jump (judged by host time) and the rest screened again
_MAX_HELD = 4
# a counter jump is plausible when host time allows it: the samples it skips
# fit in the host time elapsed since the last good frame, stretched by this
# factor, plus this many seconds (latency of the last good frame, stalls)
_JUMP_HOST_FACTOR = 1.1
_JUMP_HOST_SLACK_S = 2.0


def _split_first(p) -> tuple:
    """A merged packet (``meta["frame_samples"]``) as its first frame and the rest
    (both keep the run's byte offset: merged packets are never fixed-length frames)."""
    n = p.meta["frame_samples"]
    k = n[0]
    spc = p.samples_per_count
    head = Packet(p.stream, p.counter, p.counter_modulo, p.samples[:k], spc, p.device_time_us,
                  p.offset, {**p.meta, "frames": 1, "frame_samples": n[:1]})
    rest = Packet(p.stream, (p.counter + k // spc) % p.counter_modulo, p.counter_modulo,
                  p.samples[k:], spc, None, p.offset,
                  {**p.meta, "frames": len(n) - 1, "frame_samples": n[1:]})
    return head, rest


class StreamAssembler:
    """Turn one stream's packets into blocks and gap events.

    Parameters
    ----------
    stream : str
        ``"emg"`` or ``"acc"``.
    fs_hz : float
        Nominal sample rate.
    wall_offset_s : float
        Added to monotonic host times to get UTC POSIX seconds.
    """

    def __init__(self, stream: str, fs_hz: float, wall_offset_s: float = 0.0,
                 frame_bytes: int | None = None):
        self.stream = stream
        self.frame_bytes = frame_bytes
        self._last_offset: int | None = None
        self.fs_hz = float(fs_hz)
        self.wall_offset_s = wall_offset_s
        self.fit = ClockFit(self.fs_hz)
        self.unwrapper: CounterUnwrapper | None = None
        self._last_arrival: float | None = None
        self._relinked = False
        self.gap_samples = 0
        self.samples = 0
        #: frames dropped because their counter did not fit the sequence
        self.frames_implausible = 0
        self._anchor: tuple[int, int, int, int, float] | None = None   # last trusted frame
        self._held: list[tuple[object, float]] = []       # [(packet, arrival_s)] not yet trusted
        self._after_drop: set[int] = set()     # id() of packets right after a dropped frame

    def relinked(self) -> None:
        """The link was lost and is back: the next frame's counter may have restarted."""
        self._relinked = True
        self._last_offset = None
        self._anchor = None
        if self._held:                 # unconfirmed frames of the lost link
            self.frames_implausible += len(self._held)
            self._held = []

    def _min_missing(self, packets, n) -> np.ndarray | None:
        """Frames that must be missing before each packet: with fixed-length frames,
        bytes that arrived but did not decode took up whole frame slots.  A packet
        of ``n`` samples spans ``n`` frames (decoders may merge consecutive ones)."""
        fb = self.frame_bytes
        if fb is None:
            return None
        off = np.fromiter((p.offset for p in packets), dtype=np.int64, count=len(packets))
        end = off + n * fb                       # byte offset one past each packet
        prev = np.empty_like(off)
        prev[0] = off[0] if self._last_offset is None else self._last_offset
        prev[1:] = end[:-1]
        self._last_offset = int(end[-1])
        return np.maximum((off - prev) // fb, 0)

    def set_fs(self, fs_hz: float) -> None:
        """The device announced its rate (before any sample of the stream)."""
        if float(fs_hz) != self.fs_hz:
            self.fs_hz = float(fs_hz)
            self.fit = ClockFit(self.fs_hz)

    def _host_index(self, arrival_s: float) -> float | None:
        """Where host time puts the last sample arriving now (None before any data).

        From the drift fit once it has a few windows; before that, from the
        nominal rate and the previous arrival.
        """
        if self.fit.n_points >= _FIT_MIN_POINTS:
            return self.fit.index_at(arrival_s)
        u = self.unwrapper
        if self._last_arrival is None or u is None or u.next_index is None:
            return None
        return u.next_index - 1 + (arrival_s - self._last_arrival) * self.fs_hz

    # -- the counter screen ---------------------------------------------------
    @staticmethod
    def _next_counter(p) -> int:
        """The counter the frame after ``p`` carries when nothing is lost."""
        return (p.counter + p.samples.shape[0] // p.samples_per_count) % p.counter_modulo

    def _set_anchor(self, p, arrival_s: float) -> None:
        self._anchor = (p.counter, self._next_counter(p), p.counter_modulo,
                        p.samples_per_count, arrival_s)

    def _jump_is_plausible(self, p, arrival_s: float) -> bool:
        """Can the host clock account for the jump from the anchor to ``p``?"""
        _, expected, m, spc, anchor_s = self._anchor
        step = (p.counter - expected) % m
        if m <= (1 << 20):
            return True           # a short counter: every jump is ambiguous modulo m anyway
        if step >= m // 2:
            return False          # backwards
        elapsed_s = max(0.0, arrival_s - anchor_s)
        allowed = (elapsed_s * _JUMP_HOST_FACTOR + _JUMP_HOST_SLACK_S) * self.fs_hz
        return step * spc <= allowed

    def _screen(self, packets, arrival_s: float) -> tuple[list, set, list]:
        """Hold back and drop frames whose counter the next frame does not confirm.

        Returns ``(trusted packets, positions in them before which the device
        restarted, corrupt_frame events)``.
        """
        ok: list = []
        resets: set = set()
        events: list = []

        def accept(p, p_s, restart=False):
            if restart:
                resets.add(len(ok))
            ok.append(p)
            self._set_anchor(p, p_s)

        def drop(frames, why):
            self.frames_implausible += len(frames)
            first = frames[0][0]
            expected = None if self._anchor is None else int(self._anchor[1])
            logger.debug("%s: %d frame(s) with an implausible counter dropped (counter %d, "
                         "expected %s: %s)", self.stream, len(frames), first.counter,
                         expected, why)
            events.append(SourceEvent(
                kind="corrupt_frame", host_time_s=frames[0][1] + self.wall_offset_s,
                stream=self.stream, n_samples=sum(int(f[0].samples.shape[0]) for f in frames),
                detail={"frames": len(frames), "counter": int(first.counter),
                        "expected": expected, "reason": why}))

        def take_jump(chain):
            """``chain`` (held frames, each continuing the one before) is a real jump:
            a device restart if host time cannot account for it, else a gap the
            counter measures."""
            head, head_s = chain[0]
            restart = not self._jump_is_plausible(head, head_s)
            for k, (q, q_s) in enumerate(chain):
                accept(q, q_s, restart and k == 0)

        work = collections.deque((p, arrival_s) for p in packets)
        while work:
            p, p_s = work.popleft()
            held = self._held
            if (held or self._anchor is None or p.counter != self._anchor[1]) \
                    and len(p.meta.get("frame_samples", ())) > 1:
                # a run of frames the decoder merged and that is not simply the next:
                # screen its first frame as a frame, the rest of the run follows it
                work.extendleft(reversed([(q, p_s) for q in _split_first(p)]))
                continue
            if not held:
                if self._anchor is not None and p.counter == self._anchor[1]:
                    accept(p, p_s)
                else:       # odd, or a link's first frame: wait for the next one
                    held.append((p, p_s))
                continue
            if self._anchor is not None:
                _, expected, m, spc, a_s = self._anchor
                d = (p.counter - expected) % m
                slots = sum(int(q.samples.shape[0]) for q, _ in held) // spc
                if d <= slots:
                    # p continues the old sequence, the held frames (at most) in their slots
                    drop(held, "the next frame continues the previous sequence")
                    self._held = []
                    if d:
                        self._after_drop.add(id(p))
                    accept(p, p_s)
                    continue
            if p.counter == self._next_counter(held[-1][0]):
                k = len(held) - 1                      # the chain p confirms
                while k > 0 and held[k][0].counter == self._next_counter(held[k - 1][0]):
                    k -= 1
                self._held = []
                if self._anchor is None:               # a link's first frames
                    if k:
                        drop(held[:k], "not confirmed by the next frame")
                    for q, q_s in held[k:]:
                        accept(q, q_s)
                else:
                    # frames before the chain stay if they lie, in order, between the
                    # last trusted frame and the chain (real losses in a row); a frame
                    # that would need the counter to wrap to get there was corrupt
                    head = held[k][0]
                    for q, q_s in held[:k]:
                        _, expected, m, spc, _ = self._anchor
                        to_head = (head.counter - expected) % m
                        to_q = (q.counter - expected) % m + q.samples.shape[0] // spc
                        if to_q <= to_head and (m <= (1 << 20) or to_head < m // 2):
                            take_jump([(q, q_s)])
                        else:
                            drop([(q, q_s)], "not confirmed by the next frames")
                    take_jump(held[k:])
                accept(p, p_s)
                continue
            held.append((p, p_s))
            if len(held) > _MAX_HELD:
                # no frame agrees with another: fall back on the counter, judged by host time
                self._held = []
                if self._anchor is None:
                    drop(held[:1], "not confirmed by the next frames")
                else:
                    take_jump(held[:1])
                work.extendleft(reversed(held[1:]))
        return ok, resets, events

    def feed(self, packets: list, arrival_s: float) -> list:
        """Packets of this stream from one chunk (in order) -> blocks and events.

        Parameters
        ----------
        packets : list of Packet
            All with ``samples`` set.
        arrival_s : float
            ``time.monotonic()`` when the chunk was read.
        """
        if not packets:
            return []
        if self._follows(packets):
            return self._fast(packets, arrival_s)
        packets, forced_resets, out = self._screen(packets, arrival_s)
        if not packets:
            return out
        counters = np.fromiter((p.counter for p in packets), dtype=np.int64, count=len(packets))
        n = np.fromiter((p.samples.shape[0] for p in packets), dtype=np.int64, count=len(packets))
        if self.unwrapper is None:
            first = packets[0]
            self.unwrapper = CounterUnwrapper(first.counter_modulo, first.samples_per_count,
                                              max_jump_samples=int(24 * 3600 * self.fs_hz))
        u = self.unwrapper
        total = int(n.sum())
        host_last = self._host_index(arrival_s)
        min_missing = self._min_missing(packets, n)
        start = 0
        if self._relinked:
            self._relinked = False
            if u.started:
                out.extend(self._after_relink(counters, n, host_last, total, arrival_s))
        hint = None
        if (u.started and self.fit.n_points >= _FIT_MIN_POINTS and host_last is not None
                and self._last_arrival is not None and u.modulo <= (1 << 20)):
            # only a real silence says anything: ordinary read-to-read jitter is
            # larger than a 16-count period at 1000 Hz and would invent gaps
            wrap_s = u.modulo * u.samples_per_count / self.fs_hz
            if arrival_s - self._last_arrival > max(2.0 * wrap_s, _SILENCE_S):
                hint = host_last - total + 1
        while start < len(packets):
            if start in forced_resets:
                # the counter jumped further than host time allows: the device restarted
                forced_resets.discard(start)
                prev_end = u.next_index
                if prev_end is not None:
                    est = self._estimate_first(host_last, int(n[start:].sum()), prev_end)
                    logger.warning("%s: device counter jumped by more than host time allows; "
                                   "gap measured from host time", self.stream)
                    out.extend(self._gap_event(prev_end, est - prev_end, arrival_s,
                                               measured_from="host_time", device_reset=True))
                    u.restart(est)
                    hint = None
            stop = min((r for r in forced_resets if r > start), default=len(packets))
            no_hint = None
            if hint is not None:       # what the counter (and the bytes) alone would say
                m, spc = u.modulo, u.samples_per_count
                miss = ((int(counters[0]) - u.last_counter) % m - u.last_n // spc) % m
                floor_ = 0 if min_missing is None else int(min_missing[0])
                miss += m * (-(-max(floor_ - miss, 0) // m))
                no_hint = miss * spc
            res = u.unwrap(counters[start:stop], n[start:stop], first_index_hint=hint,
                           min_missing=None if min_missing is None else min_missing[start:stop])
            hint = None
            k = res.first_index.size
            if k:
                by_host = (no_hint is not None and res.gaps and res.gaps[0][2] == 0
                           and res.gaps[0][1] > no_hint)
                out.extend(self._blocks(packets[start:start + k], res, arrival_s, by_host))
            if res.reset_at is None:
                if stop >= len(packets):
                    break
                start = stop
                continue
            # the counter jumped backwards or implausibly far: device reset
            start += res.reset_at
            prev_end = u.next_index
            rest = int(n[start:].sum())
            est = self._estimate_first(host_last, rest, prev_end)
            logger.info("%s: device counter restarted; gap measured from host time", self.stream)
            out.extend(self._gap_event(prev_end, est - prev_end, arrival_s,
                                       measured_from="host_time", device_reset=True))
            u.restart(est)
        self._last_arrival = arrival_s
        self._after_drop.clear()
        return out

    def _follows(self, packets) -> bool:
        """True when every packet continues the trusted sequence exactly (the usual
        case) and the full screen and unwrap have nothing to decide: nothing held,
        no relink, an index counter (no silence can hide whole periods) and no
        byte slots to count."""
        anchor = self._anchor
        if (anchor is None or self._held or self._relinked or self.frame_bytes is not None
                or self.unwrapper is None or not self.unwrapper.started
                or anchor[2] <= (1 << 20)):
            return False
        expected = anchor[1]
        for p in packets:
            if p.counter != expected or p.counter_modulo != anchor[2] \
                    or p.samples_per_count != anchor[3]:
                return False
            expected = (expected + p.samples.shape[0] // p.samples_per_count) % anchor[2]
        return True

    def _fast(self, packets, arrival_s: float) -> list:
        """:meth:`feed` for packets that :meth:`_follows` accepted: the same state
        changes and the same block, without the screen's and unwrap's work."""
        last = packets[-1]
        self._set_anchor(last, arrival_s)
        n = [p.samples.shape[0] for p in packets]
        first = self.unwrapper.follow(n, last.counter)
        data = last.samples if len(packets) == 1 else \
            np.concatenate([p.samples for p in packets])
        total = data.shape[0]
        self.fit.add(first + total - 1, arrival_s)
        t = self.fit.time_of(first) + self.wall_offset_s
        self.samples += total
        self._last_arrival = arrival_s
        return [SampleBlock(self.stream, self.fs_hz, first, data, float(t))]

    def _estimate_first(self, host_last, n_rest, prev_end) -> int:
        """Index of the first of ``n_rest`` samples whose last one arrived now, from host time."""
        if host_last is None:
            return prev_end
        return max(prev_end, int(math.floor(host_last)) - n_rest + 1)

    def _after_relink(self, counters, n, host_last, total, arrival_s) -> list:
        u = self.unwrapper
        prev_end = u.next_index
        est = self._estimate_first(host_last, total, prev_end)
        if u.modulo > (1 << 20):
            # an index counter: trust it if it lands where host time expects it
            step = (int(counters[0]) - u.last_counter) % u.modulo
            by_counter = prev_end + step * u.samples_per_count - u.last_n
            tol = _RECONNECT_TOLERANCE_S * self.fs_hz
            if step < u.modulo // 2 and by_counter >= prev_end and abs(by_counter - est) <= tol:
                return []          # the unwrapper reports the gap from the counter
            detail = {"device_reset": True}
        else:
            # a short counter cannot span a reconnect (and boards restart it on start)
            detail = {"counter_ambiguous": True}
        events = self._gap_event(prev_end, est - prev_end, arrival_s,
                                 measured_from="host_time", **detail)
        u.restart(est)
        return events

    def _gap_event(self, first_index, n_missing, arrival_s, **detail) -> list:
        n_missing = int(n_missing)
        if n_missing <= 0:
            return []
        self.gap_samples += n_missing
        detail = {k: v for k, v in detail.items() if v is not None}
        return [SourceEvent(kind="gap", host_time_s=arrival_s + self.wall_offset_s,
                            stream=self.stream, first_index=int(first_index),
                            n_samples=n_missing, detail=detail)]

    def _blocks(self, packets, res, arrival_s, first_gap_by_host: bool = False) -> list:
        out: list = []
        idx = res.first_index
        last = packets[-1]
        self.fit.add(int(idx[-1]) + last.samples.shape[0] - 1, arrival_s)
        gap_at = {pos: (first, n_miss) for first, n_miss, pos in res.gaps}
        cuts = sorted(gap_at) + [len(packets)]
        lo = 0
        for cut in cuts:
            if cut > lo:
                seg = packets[lo:cut]
                data = seg[0].samples if len(seg) == 1 else np.concatenate([p.samples for p in seg])
                first = int(idx[lo])
                t = self.fit.time_of(first) + self.wall_offset_s
                out.append(SampleBlock(self.stream, self.fs_hz, first, data, float(t)))
                self.samples += data.shape[0]
            if cut in gap_at:
                first, n_miss = gap_at[cut]
                if cut == 0 and first_gap_by_host:
                    # whole counter periods were added from host time after a silence
                    detail = {"measured_from": "host_time", "counter_ambiguous": True}
                else:
                    detail = {"measured_from": "counter"}
                if cut < len(packets) and id(packets[cut]) in self._after_drop:
                    detail["cause"] = "corrupt_frame"      # the dropped frame's own samples
                out.extend(self._gap_event(first, n_miss, arrival_s, **detail))
            lo = cut
        return out
