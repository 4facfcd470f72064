"""Live fair play: whether a race's telemetry could have come from the athlete who sent it.

A ``FairPlay`` keeps one record of state per athlete (``columns``; the board sees its
fields as columns, for snapshots) and checks each round of samples (one per athlete,
in device order) with compiled per-athlete state machines (numba: ``_check_round``,
``_check_clock``), one pass over the round. The thresholds are data (``SportProfile``
in ``profiles``, one per sport, with their sources). Every rule raises once per
athlete, on the first sample that makes its case conclusive, with the numbers that
crossed the line, the window and the sample seqs (``VARIANTS``: what each place a rule
fires reports). What each rule catches and why its line sits where it does is in
``docs/fair-play.md``.

The kernels stay together in this module: ``@njit(cache=True)`` functions are compiled
(and cached on disk) per module, and they read this module's constants as compile-time
globals.

Absent readings arrive as 0 (``hr``, ``power``, ``cadence``) or NaN: an absent
reading is never evidence. A power of 0 after the meter has reported counts as
0 W in the W/kg means (which only lowers them) and as absent everywhere else (a
meter that stops is not a car).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from engine.race.profiles import SportProfile

__all__ = ["RULES", "SEVERITY", "FairPlay", "columns"]

G = 9.81
RHO = 1.2  # kg/m³, air at sea level and 20 °C (thinner air at altitude needs less power: lenient)
BIKE_KG = 7.0  # the lightest legal road bike is 6.8 kg (UCI rule 1.3.019)

RULES = (
    "speed",
    "acceleration",
    "gps_jump",
    "time_regression",
    "seq_regression",
    "hr_replay",
    "wkg_5min",
    "wkg_20min",
    "vehicle",
    "distance",
    "clock_drift",
    "hr_decoupled",
)
SEVERITY = {
    "speed": "high",
    "acceleration": "high",
    "gps_jump": "high",
    "time_regression": "medium",
    "seq_regression": "medium",
    "hr_replay": "high",
    "wkg_5min": "medium",
    "wkg_20min": "medium",
    "vehicle": "high",
    "distance": "high",
    "clock_drift": "high",
    "hr_decoupled": "medium",
}

SPEED_SPAN_S = 5.0  # distance-derived speed is measured over at least this long
SPEED_STREAK = 3  # consecutive reported speeds over the limit: one glitch is not a car
JUMP_SLACK_M = 150.0  # multipath moves a fix by tens of metres for a few seconds
ACCEL_GAP_S = 2.5  # a step of acceleration is judged between samples at most this far apart
ACCEL_STEPS = 3
STREAK_MAX = 250
WINDOW_TAU_S, LONG_TAU_S = 20.0, 150.0  # the windows of the mean-speed caps
SHORT_TAU_S = 6.0  # speed, power and cadence as they are now, without one sample's noise
EFFORT_TAU_S = 30.0  # effort sustained long enough for the heart to have followed
EFFORT_S = 40.0  # seconds of race effort before a resting heart rate is evidence (HR lag ~30 s)
LOW_HR_SAMPLES = 6  # readings in a row under the floor: a strap glitch is shorter
FALL_BPM, FALL_GAP, FALL_FROM, FALL_READINGS = 40.0, 15, 30, 20  # a heart at the floor + 40 bpm for 20 of
# the 30 readings before the last 15 does not beat under the floor 10 s later: the fastest recovery
# after effort stops is ~1-2 bpm/s in the first seconds
VEHICLE_SAMPLES = 8  # readings in a row of speed without the power or cadence it needs
POWER_FRACTION = 0.2  # below this share of the least power a speed needs on the flat, a motor moves it
FALSE_ALARM = 1e-9  # chance that an honest heart matches a replay by accident, per test
HR_RING = 96  # heart-rate readings remembered, newest first: a loop of up to LOOP_MAX
LOOP_MIN, LOOP_MAX = 30, 90
LOOP_MIN_RUN, FROZEN_MIN_RUN = 15, 20
HR_CHANGES = 3  # a looped stretch must vary this often to be more than a steady heart
NO_READING = 1  # the heart-rate ring's code for a sample that came without a reading (0: no sample yet)
SAME_INIT = 0.4  # chance that a heart reads the same twice in a row, before it is measured
CHORD_S, CHORD_M, CHORD_MAX_S = 2.0, 25.0, 30.0  # GPS track measured in chords: noise cancels along them;
CHORD_MAX_M = 100.0  # a longer chord (a tunnel, a dropout) cuts the corners it spans and only re-anchors:
# across one 90° corner a chord is 0.71 of the path, so at 12 m/s 30 s of chord read 100 m short
INFLATION_REL = 0.04  # device distance may run this much over the GPS track (calibration, corners)
INFLATION_STEP = 0.6  # no chord gains more than this share (and CHORD_M) over its length: a multipath fix does
INFLATION_SLACK_M = 120.0
INDOOR_SLACK_J = 15_000.0  # energy a rider's speed may owe their power (inertia, a virtual dip)
INDOOR_MARGIN = 1.25
STRIDE_SLACK_M = 40.0
CLOCK_DRIFT_S = 4.0  # device clock behind the receive clock by this much more than its best...
CLOCK_LEAK = 0.7  # s/s: ...its best recent lag, which may rise this fast (a clock 2x slow or less)
CLOCK_GAP_S = 3.0  # a longer silence may end with a backlog: its first batches may hold only old samples
CLOCK_CATCH_S = 0.5  # a lag that fell further than this since the last batch was a backlog catching up
CLOCK_SETTLE_S = 5.0  # a backlog arrives within a few seconds after a silence (latency spreads it): until
# then a lag that holds may be the backlog's last samples (after a device stops, no newer ones follow)
CLOCK_BATCHES = 2  # batches in a row behind: one late upload is not a clock
CLOCK_JITTER_S = 600.0  # how long a device's delivery jitter (delays that come and go) is remembered
# A delay the whole race shares (a gateway or replica that stalls, clients retrying after a host
# restart) is the platform's, not a device clock's: each device is judged against the race's
# median, over the devices heard in the last PLATFORM_RECENT_S, once PLATFORM_DEVICES are.
PLATFORM_DEVICES, PLATFORM_RECENT_S, PLATFORM_EVERY_S = 20, 10.0, 1.0
W_UNIT = 8.0  # W per step of the 1-second power ring (uint8: 1-254 steps, 8-2032 W)
ZERO = 255  # the ring's code for a second delivered with 0 W; 0: no sample for that second
RING_5, BUCKET_S, RING_20 = 300, 20, 61
LOST_SHARE = 0.1  # of a window, the seconds without a sample that are left out of its mean
LOST_5 = int(LOST_SHARE * RING_5)
SUM5_BITS = 17  # pw_5 holds the 5-minute sum (< 300 x 254) and, above it, the seconds without a sample
SUM5_MASK = (1 << SUM5_BITS) - 1
_SEEN_POWER, _SEEN_CADENCE, _SEEN_GPS = 1, 2, 4


def columns(profile: SportProfile) -> tuple[tuple[str, Any, float, tuple[int, ...]], ...]:
    """Fair play's per-athlete columns; the power rings only for sports with W/kg caps."""
    nan = math.nan
    cols: list[tuple[str, Any, float, tuple[int, ...]]] = [
        ("over", np.uint8, 0, ()),  # consecutive reported speeds over the cap
        ("ref_t", np.float64, nan, ()),  # where the current distance-speed span began
        ("ref_d", np.float32, nan, ()),
        ("kin_t", np.float64, nan, ()),  # the last sample checked in device order
        ("kin_v", np.float32, nan, ()),
        ("kin_seq", np.uint32, 0, ()),
        ("seen_fp", np.uint8, 0, ()),  # readings ever seen: power, cadence, GPS
        ("acc_n", np.uint8, 0, ()),
        ("v_win", np.float32, 0, ()),  # mean-speed EMA and its bias weight
        ("v_win_w", np.float32, 0, ()),
        ("v_long", np.float32, 0, ()),
        ("v_long_w", np.float32, 0, ()),
        ("v_now", np.float32, nan, ()),
        ("p_now", np.float32, nan, ()),  # EMA of the power readings (> 0)
        ("cad_now", np.float32, nan, ()),
        ("veh_n", np.uint8, 0, ()),
        ("cad_n", np.uint8, 0, ()),
        ("effort", np.float32, nan, ()),
        ("effort_s", np.float32, 0, ()),  # seconds of unbroken race effort
        ("low_n", np.uint8, 0, ()),
        ("hr_last", np.uint8, 0, ()),
        ("frozen_n", np.uint16, 0, ()),
        ("same", np.float32, SAME_INIT, ()),
        ("hr_ring", np.uint8, 0, (HR_RING,)),  # slot seq % HR_RING: that seq's reading (0, NO_READING: none)
        ("hr_lags", np.uint64, 0, ()),  # bit j: lag LOOP_MIN + j matched every reading since hr_from
        ("hr_from", np.uint32, 0, ()),
        ("hr_count", np.uint32, 0, ()),  # heart-rate readings so far
        ("hr_changes", np.uint32, 0, (HR_CHANGES,)),  # reading counts of the last heart-rate changes
        ("clk_base", np.float64, nan, ()),  # the device clock's best (smallest) lag behind receipt
        ("clk_recent", np.float64, nan, ()),  # its best recent lag, rising at most CLOCK_LEAK s/s
        ("clk_at", np.float64, nan, ()),
        ("clk_lag", np.float32, nan, ()),
        ("clk_n", np.uint8, 0, ()),
        ("clk_since", np.float32, np.inf, ()),  # receive seconds since the last silence or backlog
        ("clk_jitter", np.float32, 0, ()),  # the largest recent delay that came and went
        ("ch_t", np.float64, nan, ()),  # the GPS chord's anchor fix and the distance there
        ("ch_lat", np.float64, nan, ()),
        ("ch_lon", np.float64, nan, ()),
        ("ch_d", np.float32, nan, ()),
        ("inf_excess", np.float32, 0, ()),  # distance inflation: CUSUM (m or J) and its window
        ("inf_t0", np.float64, nan, ()),
        ("inf_rep", np.float32, 0, ()),
        ("inf_ref", np.float32, 0, ()),
        ("gap_t", np.float64, nan, ()),  # the sample before a gap, for late samples to follow
        ("gap_d", np.float32, nan, ()),
        ("gap_lat", np.float64, nan, ()),
        ("gap_lon", np.float64, nan, ()),
    ]
    if profile.wkg_5min is not None:
        cols += [
            ("pw_sec", np.int64, -(2**62), ()),  # the newest second in the power rings
            ("pw_5", np.int32, 0, ()),  # sums of the rings, in W_UNIT (pw_5: and its seconds without a sample)
            ("pw_20", np.int32, 0, ()),
            ("ring_5", np.uint8, ZERO, (RING_5,)),  # power of each of the last 300 seconds (before: 0 W)
            ("ring_20", np.uint16, 0, (RING_20,)),  # power summed over 20-second buckets
        ]
    return tuple(cols)


def _params(profile: SportProfile) -> np.ndarray:
    """The profile as the kernels read it: one float per threshold, NaN where the sport has none."""
    wkg5 = profile.wkg_5min or (math.nan, math.nan)
    wkg20 = profile.wkg_20min or (math.nan, math.nan)
    values = [getattr(profile, name) for name in _PARAMS[:14]] + [*wkg5, *wkg20]
    return np.array([math.nan if x is None else x for x in values], np.float64)


_PARAMS = (
    "max_speed", "window_speed", "long_speed", "accel_power", "move_speed", "min_cadence", "effort_speed",
    "effort_power", "hr_floor", "coast_speed", "cda", "indoor_cda", "crr", "stride_max",
)  # fmt: skip
(MAX_SPEED, WINDOW_SPEED, LONG_SPEED, ACCEL_POWER, MOVE_SPEED, MIN_CADENCE, EFFORT_SPEED, EFFORT_POWER,
 HR_FLOOR, COAST_SPEED, CDA, INDOOR_CDA, CRR, STRIDE_MAX, WKG5_MEN, WKG5_WOMEN, WKG20_MEN, WKG20_WOMEN) = range(18)  # fmt: skip

# What a flag says: each place a rule fires is a variant (rule, source, the evidence it
# carries, in the order the kernels write it). Counts and seqs are whole numbers.
VARIANTS: tuple[tuple[str, str | None, tuple[str, ...]], ...] = (
    ("speed", "reported", ("speed", "limit")),
    ("speed", "distance", ("speed", "limit")),
    ("gps_jump", "distance", ("metres", "seconds")),
    ("gps_jump", "gps", ("metres", "seconds", "lat", "lon")),
    ("acceleration", None, ("w_per_kg", "steps", "speed", "limit")),
    ("vehicle", f"mean over ~{WINDOW_TAU_S:.0f} s", ("mean_speed", "limit")),
    ("vehicle", f"mean over ~{LONG_TAU_S:.0f} s", ("mean_speed", "limit")),
    ("vehicle", "power", ("speed", "power_w", "needed_w")),
    ("vehicle", "cadence", ("speed", "cadence", "limit")),
    ("hr_decoupled", None, ("hr", "floor", "power_w", "mean_speed", "effort_s")),
    ("hr_replay", "frozen", ("hr", "readings")),
    ("hr_replay", "loop", ("hr", "loop_s", "readings")),
    ("distance", "gps", ("reported_m", "gps_m", "excess_m", "slack_m")),
    ("distance", "power", ("needed_j", "power_j", "owed_j")),
    ("distance", "cadence", ("reported_m", "stride_reach_m", "excess_m")),
    ("gps_jump", "distance, late", ("metres", "seconds")),
    ("gps_jump", "gps, late", ("metres", "seconds")),
    ("hr_decoupled", "late", ("hr", "floor", "effort_s")),
    ("wkg_5min", None, ("wkg", "mean_w", "weight_kg", "limit", "seconds_lost")),
    ("wkg_20min", None, ("wkg", "mean_w", "weight_kg", "limit", "seconds_lost")),
    ("clock_drift", None, ("behind_s", "limit_s", "best_lag_s", "lag_s", "platform_s")),
    ("hr_decoupled", "fall", ("hr", "floor", "earlier_bpm", "readings")),
)
(V_SPEED, V_SPEED_D, V_JUMP_D, V_JUMP_GPS, V_ACCEL, V_MEAN_WIN, V_MEAN_LONG, V_POWER, V_CADENCE, V_DECOUPLED,
 V_FROZEN, V_LOOP, V_DIST_GPS, V_DIST_POWER, V_DIST_CADENCE, V_JUMP_D_LATE, V_JUMP_GPS_LATE, V_DECOUPLED_LATE,
 V_WKG5, V_WKG20, V_CLOCK, V_FALL) = range(len(VARIANTS))  # fmt: skip
WHOLE = frozenset({"steps", "readings", "seconds_lost"})
_VARIANT_BIT = np.array([1 << RULES.index(rule) for rule, _, _ in VARIANTS], np.int64)
EARTH_M_PER_RAD = 6_371_000.0
PREFETCH_AHEAD = 8  # samples


class Events:
    """Flags the kernels raised during one call: sample index, variant and numbers, grown on demand."""

    def __init__(self) -> None:
        self.at = np.zeros(0, np.int64)
        self.variant = np.zeros(0, np.int64)
        self.values = np.zeros((0, 8), np.float64)  # since, window start, window end, then the evidence

    def room(self, samples: int) -> None:
        """Room for every rule to fire on every sample: a flag raises once, so this bounds a call."""
        need = samples * len(RULES)
        if len(self.at) < need:
            self.at = np.zeros(need, np.int64)
            self.variant = np.zeros(need, np.int64)
            self.values = np.zeros((need, 8), np.float64)


Record = Callable[[str, int, float, dict], None]


class FairPlay:
    """The rules of one race. Its per-athlete state is one record per athlete (``state``), whose
    fields the board also sees as columns (for snapshots); ``record`` keeps each raised flag."""

    def __init__(self, profile: SportProfile, col: dict[str, np.ndarray], record: Record) -> None:
        self.profile = profile
        self._col = col
        self._record = record
        self._params = _params(profile)
        # Wide fields first (every field aligned), then the arrays: what each sample reads whole
        # (the scalars, the heart-rate ring) on the first cache lines, the power rings (one slot
        # each per sample) last.
        arrays = ("hr_changes", "hr_ring", "ring_20", "ring_5")
        fields = sorted(
            columns(profile),
            key=lambda c: (arrays.index(c[0]) if c[0] in arrays else -1, -np.dtype(c[1]).itemsize),
        )
        self._dtype = np.dtype([(name, dtype, shape) for name, dtype, _, shape in fields])
        offsets = self._dtype.fields
        assert offsets is not None  # a structured dtype has fields
        rings = offsets.get("ring_20"), offsets.get("ring_5")
        self._layout = np.array(
            [self._dtype.itemsize if rings[0] is None else rings[0][1], *(0 if r is None else r[1] for r in rings)],
            np.int64,
        )  # the bytes every sample reads, then where the power rings start
        self._scalars = int(offsets["hr_changes"][1])
        self._fills = {name: fill for name, _, fill, _ in columns(profile)}
        self._watts = profile.wkg_5min is not None
        self._events = Events()
        self.state = self._blank(0)
        self._platform, self._platform_at = 0.0, -math.inf  # the race-wide delay, and when it was taken

    def _blank(self, capacity: int) -> np.ndarray:
        state = np.zeros(capacity, self._dtype)
        for name, fill in self._fills.items():
            state[name] = fill
        return state

    def resize(self, capacity: int, size: int) -> None:
        """Hold ``capacity`` athletes, keeping the first ``size``; the board's columns become views."""
        state = self._blank(capacity)
        state[:size] = self.state[:size]
        self.state = state
        for name in self._dtype.names or ():
            self._col[name] = state[name]

    def restored(self, size: int) -> None:
        """After a snapshot is restored: the 5-minute sums again from the ring, whose codes a board
        written before 0 W had its own code meant otherwise (its 2,040 W seconds now read 0 W)."""
        if self._watts:
            st = self.state[:size]
            codes = st["ring_5"].astype(np.int32)
            total = np.where(codes == ZERO, 0, codes).sum(axis=1, dtype=np.int32)
            st["pw_5"] = total | (st["pw_5"] >> SUM5_BITS << SUM5_BITS)

    def check(self, s: dict[str, np.ndarray], in_order: np.ndarray, out: dict) -> None:
        """One round: each athlete at most once; ``in_order`` marks samples newer than any before."""
        c, ev = self._col, self._events
        ev.room(len(s["p"]))
        raised = _check_round(
            s["p"], s["seq"], s["t"], s["d"], s["lat"], s["lon"], s["speed"], s["hr"], s["power"], s["cadence"],
            in_order, self.state, c["flags"], c["cleared"], c["d_t"], c["d_last"], c["pos_t"], c["lat"], c["lon"],
            c["weight"], c["sex"] if self._watts else None, self._params, self._layout, ev.at, ev.variant, ev.values,
        )  # fmt: skip
        self._keep(raised, s["p"], s["t"], s["seq"], out)

    def clock(
        self, p: np.ndarray, newest_t: np.ndarray, seq: np.ndarray, fresh: np.ndarray, backlog: np.ndarray,
        now: float, out: dict,
    ) -> None:  # fmt: skip
        """``newest_t``: each athlete's newest device time after a batch received at ``now``; ``fresh``:
        whether the batch brought a newer sample; ``backlog``: whether a backlog is still arriving (the
        batch brought samples older than the newest, or skipped seqs on its way to the newest).

        A late or reordered batch lags for a while and the next live sample catches up: how
        far it caught up while the device streamed is remembered as its jitter. After a silence,
        and while a backlog arrives, no lag is judged: the newest sample may be one of the
        backlog's. A slow clock (samples stamped 1 s apart, sent 1.4-2 s apart) falls behind on
        every sample and never catches up.
        """
        c, ev = self._col, self._events
        ev.room(len(p))
        if not now - self._platform_at < PLATFORM_EVERY_S:
            self._platform_at = now
            st = self.state
            heard = st["clk_at"] > now - PLATFORM_RECENT_S
            count = int(np.count_nonzero(heard))
            behind = st["clk_recent"][heard] - st["clk_base"][heard]
            self._platform = float(np.median(behind)) if count >= PLATFORM_DEVICES else 0.0
        raised = _check_clock(
            p, newest_t, fresh, backlog, float(now), self._platform, self.state, c["flags"], c["cleared"], self._scalars,
            ev.at, ev.variant, ev.values,
        )  # fmt: skip
        self._keep(raised, p, newest_t, seq, out)

    def _keep(self, raised: int, p: np.ndarray, t: np.ndarray, seq: np.ndarray, out: dict) -> None:
        ev = self._events
        for k in range(raised):
            i = int(ev.at[k])
            rule, source, keys = VARIANTS[ev.variant[k]]
            numbers = ev.values[k]
            facts: dict[str, Any] = {}
            for key, value in zip(keys, numbers[3:].tolist()):
                facts[key] = (int(value) if key in WHOLE else value) if math.isfinite(value) else None
            if source is not None:
                facts["source"] = source
            if not math.isnan(numbers[1]):
                facts["window"] = [
                    float(x) if math.isfinite(x) else None for x in (float(numbers[1]), float(numbers[2]))
                ]
            since = numbers[0]
            facts["seqs"] = [int(max(since, 0)) if not math.isnan(since) else int(seq[i]), int(seq[i])]
            self._record(rule, int(p[i]), float(t[i]), facts)
        out["flagged"] += raised


# The kernels: per-athlete state machines, one sample at a time in device order, compiled.
# Absent numbers are NaN; comparisons with NaN are false, as in the rules' definitions.


@intrinsic
def _prefetch(typingctx, address):
    """Ask the CPU to bring the cache line at ``address`` in (for writing) ahead of its use."""
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        pointer = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fetch = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [pointer, i32, i32, i32]), "llvm.prefetch.p0"
        )
        builder.call(fetch, [builder.inttoptr(args[0], pointer), i32(1), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(address), codegen


@njit(cache=True, inline="always")
def _emit(ev_at, ev_var, ev_val, n, i, variant, a, flags, cleared, since, w0, w1, x0, x1, x2, x3, x4):
    """Flag ``variant`` for athlete ``a`` (sample ``i``) unless its rule is open or accepted already."""
    bit = _VARIANT_BIT[variant]
    if (int(flags[a]) | int(cleared[a])) & bit:
        return n
    flags[a] = flags[a] | bit
    ev_at[n], ev_var[n] = i, variant
    row = ev_val[n]
    row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7] = since, w0, w1, x0, x1, x2, x3, x4
    return n + 1


@njit(cache=True, inline="always")
def _metres_at(lat0, lon0, lat1, lon1, cos_lat):
    """Distance between fixes on the local plane (``cos_lat``: the cosine of either latitude):
    within 0.1 % of the great circle up to tens of km."""
    turn = lon1 - lon0
    if turn > 180.0:
        turn -= 360.0
    elif turn < -180.0:
        turn += 360.0
    north = lat1 - lat0
    east = turn * cos_lat
    return EARTH_M_PER_RAD * math.radians(math.sqrt(north * north + east * east))


@njit(cache=True, inline="always")
def _ema_of(old, new, keep):
    """An average that keeps ``keep`` of the old (exp(-dt / tau)) and starts at the first value."""
    if math.isnan(old):
        return new
    return keep * old + (1 - keep) * new


@njit(cache=True, inline="always")
def _streak_of(count, hit):
    """Readings in a row that show it, forgiving a stray one: a miss halves the count."""
    return min(count, STREAK_MAX) + 1 if hit else count // 2


@njit(cache=True, inline="always")
def _needed(v, mass, cda, crr):
    """The least power that holds speed ``v`` on a flat road: drag plus rolling resistance."""
    return (0.5 * RHO * cda * v * v + crr * mass * G) * v


@njit(cache=True, inline="always")
def _run_needed(same):
    """Readings in a row that an honest heart repeats by chance less than once in 1/FALSE_ALARM."""
    return math.ceil(math.log(FALSE_ALARM) / math.log(min(max(same, 0.05), 0.95)))


@njit(cache=True)
def _check_round(
    p, seq, t, d, lat, lon, v, hr, power, cadence, in_order,
    st, flags, cleared, d_t, d_last, pos_t, b_lat, b_lon, weight, sex, prm, layout, ev_at, ev_var, ev_val,
):  # fmt: skip
    """``sex``: the athletes' sexes where the sport has W/kg caps, else None (compiled without them)."""
    n = 0
    nan = math.nan
    start, size = np.int64(st.ctypes.data), np.int64(st.itemsize)
    for i in range(len(p)):
        if i + PREFETCH_AHEAD < len(p):  # records are spread over a large array: ask for the lines
            k = i + PREFETCH_AHEAD  # a later sample will read while this one is checked
            ahead = start + p[k] * size
            for offset in range(0, layout[0], 64):
                _prefetch(ahead + offset)  # type: ignore[call-arg]  # numba passes typingctx
            if sex is not None:
                second = int(t[k])
                _prefetch(ahead + layout[1] + 2 * ((second // BUCKET_S) % RING_20))  # type: ignore[call-arg]  # numba passes typingctx
                _prefetch(ahead + layout[2] + second % RING_5)
        a = p[i]
        r = st[a]
        si, ti, di = seq[i], t[i], float(d[i])
        lat_i, lon_i = float(lat[i]), float(lon[i])
        vi, hri, pw, cad = float(v[i]), float(hr[i]), float(power[i]), float(cadence[i])
        ok = di >= 0
        placed = not math.isnan(lat_i) and not math.isnan(lon_i)
        if not in_order[i]:
            n = _late(i, a, r, si, ti, di, lat_i, lon_i, hri, placed, flags, cleared, prm, ev_at, ev_var, ev_val, n)
            if sex is not None:
                n = _watts(i, a, r, ti, pw, weight, sex, flags, cleared, prm, ev_at, ev_var, ev_val, n)
            continue
        kin_t = r.kin_t
        gap = ti - kin_t  # NaN for an athlete's first sample
        dt = 1.0 if math.isnan(gap) else min(max(gap, 0.0), 5.0)
        # exp(-dt / tau) for the time constants the averages use, from two exponentials
        k60 = math.exp(-dt / 60.0)
        k30 = k60 * k60  # EFFORT_TAU_S
        k20 = k30 * k60  # WINDOW_TAU_S
        k6 = k20 * k20 * k30 * k30  # SHORT_TAU_S
        k3 = k6 * k6  # SHORT_TAU_S / 2
        k150 = math.exp(-dt / LONG_TAU_S)
        cos_lat = math.cos(math.radians(lat_i)) if placed else nan
        seen = int(r.seen_fp) | (_SEEN_POWER if pw > 0 else 0) | (_SEEN_CADENCE if cad > 0 else 0)
        if placed and seen & _SEEN_GPS == 0:  # what the indoor rules owed (J, m of cadence) is not GPS metres
            r.inf_excess = 0.0
        if placed:
            seen |= _SEEN_GPS
        r.seen_fp = seen
        if si > int(r.kin_seq) + 1 and not math.isnan(kin_t):  # a gap: late samples follow from here
            r.gap_t = kin_t
            r.gap_d = d_last[a]
            fixed = pos_t[a] == kin_t  # a position anchors only if taken just before the gap
            r.gap_lat = b_lat[a] if fixed else nan
            r.gap_lon = b_lon[a] if fixed else nan

        # Speed: as reported, and as the distance grows
        has_speed = not math.isnan(vi)
        over = int(r.over)
        if has_speed:
            over = min(over, 254) + 1 if vi > prm[MAX_SPEED] else 0
        r.over = over
        if over >= SPEED_STREAK:
            n = _emit(ev_at, ev_var, ev_val, n, i, V_SPEED, a, flags, cleared,
                      si - over + 1, nan, nan, vi, prm[MAX_SPEED], nan, nan, nan)  # fmt: skip
        ref_t, ref_d = r.ref_t, float(r.ref_d)
        span = ti - ref_t
        measured = ok and span >= SPEED_SPAN_S
        if measured:
            pace = (di - ref_d - JUMP_SLACK_M / 3) / span
            if pace > prm[MAX_SPEED]:
                n = _emit(ev_at, ev_var, ev_val, n, i, V_SPEED_D, a, flags, cleared,
                          nan, ref_t, ti, pace, prm[MAX_SPEED], nan, nan, nan)  # fmt: skip
        if ok and (measured or not span >= 0):
            r.ref_t, r.ref_d = ti, di

        # Teleport: the position or the distance leaps further than the sport's top speed allows
        d_t_a, d_last_a = d_t[a], float(d_last[a])
        leap, hop_d = di - d_last_a, ti - d_t_a
        if ok and hop_d > 0 and leap > prm[MAX_SPEED] * hop_d + JUMP_SLACK_M:
            n = _emit(ev_at, ev_var, ev_val, n, i, V_JUMP_D, a, flags, cleared,
                      nan, d_t_a, ti, leap, hop_d, nan, nan, nan)  # fmt: skip
        if placed:
            pos_t_a = pos_t[a]
            hop = ti - pos_t_a
            metres = _metres_at(b_lat[a], b_lon[a], lat_i, lon_i, cos_lat)
            if hop > 0 and metres > prm[MAX_SPEED] * hop + JUMP_SLACK_M:
                n = _emit(ev_at, ev_var, ev_val, n, i, V_JUMP_GPS, a, flags, cleared,
                          nan, pos_t_a, ti, metres, hop, lat_i, lon_i, nan)  # fmt: skip
            pos_t[a], b_lat[a], b_lon[a] = ti, lat_i, lon_i

        # Speed of the body: reported, else from the distance since the last sample
        if has_speed:
            speed = vi
        elif ok and gap > 0 and gap <= 5.0:
            speed = (di - d_last_a) / gap
        else:
            speed = nan
        known = not math.isnan(speed)

        # Sustained acceleration: the power that speeding up takes (v·a, per kg) for seconds on end
        kin_v = float(r.kin_v)
        close = has_speed and gap > 0 and gap <= ACCEL_GAP_S and not math.isnan(kin_v)
        acc_n = 0
        if close:
            pull = vi * (vi - kin_v) / gap
            if pull >= prm[ACCEL_POWER]:
                acc_n = min(int(r.acc_n), 254) + 1
                if acc_n >= ACCEL_STEPS:
                    n = _emit(ev_at, ev_var, ev_val, n, i, V_ACCEL, a, flags, cleared,
                              si - acc_n, nan, nan, pull, acc_n, vi, prm[ACCEL_POWER], nan)  # fmt: skip
        r.acc_n = acc_n

        # The mean speed over ~20 s and ~150 s (bias-corrected EMAs, judged once a time constant is seen)
        win, win_w = float(r.v_win), float(r.v_win_w)
        lng, lng_w = float(r.v_long), float(r.v_long_w)
        if known:
            win, win_w = k20 * win + (1 - k20) * speed, k20 * win_w + (1 - k20)
            lng, lng_w = k150 * lng + (1 - k150) * speed, k150 * lng_w + (1 - k150)
            r.v_win, r.v_win_w, r.v_long, r.v_long_w = win, win_w, lng, lng_w
        mean_v = win / win_w if win_w > 0 else win
        mean_long = lng / lng_w if lng_w > 0 else lng
        if win_w >= 0.63 and mean_v > prm[WINDOW_SPEED]:
            n = _emit(ev_at, ev_var, ev_val, n, i, V_MEAN_WIN, a, flags, cleared,
                      nan, ti - WINDOW_TAU_S, ti, mean_v, prm[WINDOW_SPEED], nan, nan, nan)  # fmt: skip
        if lng_w >= 0.63 and mean_long > prm[LONG_SPEED]:
            n = _emit(ev_at, ev_var, ev_val, n, i, V_MEAN_LONG, a, flags, cleared,
                      nan, ti - LONG_TAU_S, ti, mean_long, prm[LONG_SPEED], nan, nan, nan)  # fmt: skip

        v_now = float(r.v_now)
        if known:
            v_now = _ema_of(v_now, speed, k6)
            r.v_now = v_now
        powered = pw > 0
        p_now = float(r.p_now)
        if powered:
            p_now = _ema_of(p_now, pw, k6)
            r.p_now = p_now
        cadenced = cad > 0
        cad_now = float(r.cad_now)
        if cadenced:
            cad_now = _ema_of(cad_now, cad, k3)
            r.cad_now = cad_now
        kg = float(weight[a])
        mass = (kg if kg > 0 else 55.0) + BIKE_KG

        # Speed the body's power cannot make: a motor (outdoors)
        if not math.isnan(prm[COAST_SPEED]) and not math.isnan(prm[CDA]) and powered:
            need = _needed(v_now, mass, prm[CDA], prm[CRR])
            veh_n = _streak_of(int(r.veh_n), v_now >= prm[COAST_SPEED] and p_now < POWER_FRACTION * need)
            r.veh_n = veh_n
            if seen & _SEEN_GPS and veh_n >= VEHICLE_SAMPLES:
                n = _emit(ev_at, ev_var, ev_val, n, i, V_POWER, a, flags, cleared,
                          si - veh_n + 1, nan, nan, v_now, p_now, need, nan, nan)  # fmt: skip
        if not math.isnan(prm[MIN_CADENCE]) and cadenced:
            cad_n = _streak_of(int(r.cad_n), v_now >= prm[MOVE_SPEED] and cad_now < prm[MIN_CADENCE])
            r.cad_n = cad_n
            if cad_n >= VEHICLE_SAMPLES:
                n = _emit(ev_at, ev_var, ev_val, n, i, V_CADENCE, a, flags, cleared,
                          si - cad_n + 1, nan, nan, v_now, cad_now, prm[MIN_CADENCE], nan, nan)  # fmt: skip

        n = _heart(i, a, r, si, ti, hri, pw, speed, known, dt, k30, seen, mean_v, flags, cleared, prm,
                   ev_at, ev_var, ev_val, n)  # fmt: skip
        n = _distance(i, a, r, si, ti, di, lat_i, lon_i, cos_lat, pw, cad, ok, placed, speed, known, dt, mass,
                      seen, gap, flags, cleared, prm, ev_at, ev_var, ev_val, n)  # fmt: skip
        r.kin_t, r.kin_v, r.kin_seq = ti, vi, si
        if sex is not None:
            n = _watts(i, a, r, ti, pw, weight, sex, flags, cleared, prm, ev_at, ev_var, ev_val, n)
    return n


@njit(cache=True)
def _heart(
    i, a, r, si, ti, hri, pw, speed, known, dt, k30, seen, mean_v, flags, cleared, prm, ev_at, ev_var, ev_val, n
):
    nan = math.nan
    has_hr = hri > 0 and hri < 256
    beat = int(hri) if has_hr else 0
    moving = (known and speed >= 1.0) or pw > 0

    # Decoupled: a resting heart at sustained race effort (pace, or power where measured)
    floor = prm[HR_FLOOR]
    if not math.isnan(floor):
        effort = _ema_of(float(r.effort), pw, k30) if seen & _SEEN_POWER else nan
        hard = effort >= prm[EFFORT_POWER] or mean_v >= prm[EFFORT_SPEED]  # NaN: the sport has no such line
        effort_s = float(r.effort_s) + dt if hard else max(float(r.effort_s) - 3 * dt, 0.0)
        r.effort, r.effort_s = effort, effort_s
        low_n = 0
        if effort_s >= EFFORT_S:  # readings count only once the effort lasted long enough for the heart to follow
            low_n = _streak_of(int(r.low_n), hri < floor) if has_hr else int(r.low_n)
        r.low_n = low_n
        if effort_s >= EFFORT_S and low_n >= LOW_HR_SAMPLES:
            n = _emit(ev_at, ev_var, ev_val, n, i, V_DECOUPLED, a, flags, cleared,
                      si - low_n + 1, nan, nan, hri, floor, effort, mean_v, effort_s)  # fmt: skip

    # Replay: one value frozen, or a stretch of 30-90 s played again, reading for reading
    last = int(r.hr_last)
    same = has_hr and beat == last
    frozen_n = int(r.frozen_n)
    if has_hr:
        frozen_n = min(frozen_n, 65_000) + 1 if same else 0
        r.frozen_n = frozen_n
    chance = float(r.same)
    if has_hr and last > 0 and frozen_n < 10:
        chance += ((1.0 if same else 0.0) - chance) / 60.0
        r.same = chance
    count = int(r.hr_count) + (1 if has_hr else 0)
    r.hr_count = count
    marks = r.hr_changes
    if has_hr and last > 0 and not same:
        for k in range(HR_CHANGES - 1, 0, -1):
            marks[k] = marks[k - 1]
        marks[0] = count
    if has_hr:
        r.hr_last = beat
    needed = _run_needed(chance)
    if moving and frozen_n + 1 >= max(needed, FROZEN_MIN_RUN):
        n = _emit(ev_at, ev_var, ev_val, n, i, V_FROZEN, a, flags, cleared,
                  si - frozen_n, nan, nan, hri, frozen_n + 1, nan, nan, nan)  # fmt: skip

    # The ring holds one slot per seq (seq % HR_RING; NO_READING where the sample had none, 0 where no
    # sample came), so a gap, an absent reading or a late sample filled in afterwards keeps every lag
    # in place.
    if not has_hr and count == 0:
        return n
    ring = r.hr_ring
    for skipped in range(int(r.kin_seq) + 1, min(si, int(r.kin_seq) + HR_RING + 1)):  # a gap's seqs are empty
        ring[skipped % HR_RING] = 0
    ring[si % HR_RING] = beat if has_hr else NO_READING
    if not has_hr:
        return n
    # Fallen: a heart at race rate moments ago does not beat at a resting rate seconds later
    if hri < floor and moving:  # NaN floor: the sport has none
        under, high, earlier = 0, 0, 0.0
        for lag in range(FALL_GAP + FALL_FROM):
            reading = int(ring[(si - lag) % HR_RING])
            if lag < LOW_HR_SAMPLES:
                under += 1 if NO_READING < reading < floor else 0
            elif lag >= FALL_GAP and reading >= floor + FALL_BPM:
                high += 1
                earlier += reading
        if under >= LOW_HR_SAMPLES - 1 and high >= FALL_READINGS:
            n = _emit(ev_at, ev_var, ev_val, n, i, V_FALL, a, flags, cleared,
                      si - FALL_GAP - FALL_FROM + 1, nan, nan, hri, floor, earlier / high, high, nan)  # fmt: skip
    # Lags that have matched every reading since ``hr_from``: when none is left, the lags that
    # match now start afresh. A loop's lag matches on every reading, so it stays once in. A reading
    # whose seq a lag back never came (a dropout, a backlog still on its way) neither matches nor
    # breaks the lag (a sample that came without a reading breaks it: a replay repeats its gaps), so
    # the loop is followed by seq across the gap; a reading that a held lag could not compare does
    # not count toward its length (``hr_from`` moves on by one for each).
    bits, blind = np.uint64(0), np.uint64(0)
    slot = (si - LOOP_MIN) % HR_RING
    for j in range(LOOP_MAX - LOOP_MIN + 1):
        earlier = ring[slot]
        if earlier == beat:
            bits |= np.uint64(1) << np.uint64(j)
        elif earlier == 0:
            blind |= np.uint64(1) << np.uint64(j)
        slot = slot - 1 if slot > 0 else HR_RING - 1
    held = r.hr_lags & (bits | blind)
    if held == 0:
        lags, start = bits, count
    else:
        lags, start = held, int(r.hr_from) + (1 if held & blind != 0 else 0)
    r.hr_lags, r.hr_from = lags, start
    length = count - start + 1
    varied = count - int(marks[HR_CHANGES - 1]) < length
    if lags != 0 and length >= max(needed, LOOP_MIN_RUN) and varied and moving:
        lag = LOOP_MIN
        while not (lags >> np.uint64(lag - LOOP_MIN)) & np.uint64(1):
            lag += 1
        n = _emit(ev_at, ev_var, ev_val, n, i, V_LOOP, a, flags, cleared,
                  si - length + 1, nan, nan, hri, lag, length, nan, nan)  # fmt: skip
    return n


@njit(cache=True, inline="always")
def _owe(excess, t0, rep, ref, ti, claimed, explained, owed):
    """One step of an indoor CUSUM: ``owed`` (what was claimed beyond what power or cadence explains)
    added to the running excess, which never goes below zero; a run starts afresh (its start ``t0``
    and its claimed and explained totals) whenever the excess stands at zero."""
    if excess == 0:
        if owed > 0:
            t0 = ti
        rep, ref = 0.0, 0.0
    return max(excess + owed, 0.0), t0, rep + claimed, ref + explained


@njit(cache=True)
def _distance(
    i, a, r, si, ti, di, lat_i, lon_i, cos_lat, pw, cad, ok, placed, speed, known, dt, mass, seen, gap,
    flags, cleared, prm, ev_at, ev_var, ev_val, n,
):  # fmt: skip
    """Inflated distance: the device's distance against the GPS track, or (indoors) power and cadence."""
    nan = math.nan
    excess, t0 = float(r.inf_excess), r.inf_t0
    rep, ref = float(r.inf_rep), float(r.inf_ref)
    outdoor = seen & _SEEN_GPS != 0

    # Outdoors: chords of the GPS track (≥ 2 s and 25 m) against the distance gained along them
    if placed and ok:
        ch_t = r.ch_t
        hop = ti - ch_t
        chord = _metres_at(r.ch_lat, r.ch_lon, lat_i, lon_i, cos_lat)
        if math.isnan(ch_t) or (hop >= CHORD_S and (chord >= CHORD_M or hop >= CHORD_MAX_S)):
            if hop <= CHORD_MAX_S and chord <= CHORD_MAX_M:
                gained = di - float(r.ch_d)
                step = min(gained - (1 + INFLATION_REL) * chord, INFLATION_STEP * chord + CHORD_M)
                if excess + step > 0:
                    if excess == 0:
                        t0, rep, ref = ch_t, 0.0, 0.0
                    rep, ref = rep + gained, ref + chord
                else:
                    rep, ref = 0.0, 0.0
                excess = max(excess + step, 0.0)
            r.ch_t, r.ch_lat, r.ch_lon, r.ch_d = ti, lat_i, lon_i, di
    if outdoor and excess > INFLATION_SLACK_M:
        n = _emit(ev_at, ev_var, ev_val, n, i, V_DIST_GPS, a, flags, cleared,
                  nan, t0, ti, rep, ref, excess, INFLATION_SLACK_M, nan)  # fmt: skip

    moving = not outdoor and known and gap > 0 and gap <= 5.0
    # Indoors, ridden: the power the reported speed needs on the flat, less what slowing down gives back
    if moving and pw > 0 and not math.isnan(prm[INDOOR_CDA]):  # a meter that drops out owes nothing
        kinetic = mass * speed * (speed - float(r.kin_v)) / gap
        need = _needed(speed, mass, prm[INDOOR_CDA], prm[CRR]) + (0.0 if math.isnan(kinetic) else kinetic)
        excess, t0, rep, ref = _owe(excess, t0, rep, ref, ti, need * dt, pw * dt, (need - INDOOR_MARGIN * pw) * dt)
        if excess > INDOOR_SLACK_J:
            n = _emit(ev_at, ev_var, ev_val, n, i, V_DIST_POWER, a, flags, cleared,
                      nan, t0, ti, rep, ref, excess, nan, nan)  # fmt: skip
    # Indoors, run: steps too long for the cadence
    if moving and cad > 0 and not math.isnan(prm[STRIDE_MAX]):
        reach = cad / 60.0 * prm[STRIDE_MAX]
        excess, t0, rep, ref = _owe(excess, t0, rep, ref, ti, speed * dt, reach * dt, (speed - reach) * dt)
        if excess > STRIDE_SLACK_M:
            n = _emit(ev_at, ev_var, ev_val, n, i, V_DIST_CADENCE, a, flags, cleared,
                      nan, t0, ti, rep, ref, excess, nan, nan)  # fmt: skip
    r.inf_excess, r.inf_t0, r.inf_rep, r.inf_ref = excess, t0, rep, ref
    return n


@njit(cache=True)
def _late(i, a, r, si, ti, di, lat_i, lon_i, hri, placed, flags, cleared, prm, ev_at, ev_var, ev_val, n):
    """A sample older than one already checked: follow its gap in device order from the sample before it."""
    nan = math.nan
    gap_t = r.gap_t
    follows = not math.isnan(gap_t) and ti > gap_t
    if follows:
        hop = ti - gap_t
        if di >= 0:
            leap = di - float(r.gap_d)
            if leap > prm[MAX_SPEED] * hop + JUMP_SLACK_M:
                n = _emit(ev_at, ev_var, ev_val, n, i, V_JUMP_D_LATE, a, flags, cleared,
                          nan, gap_t, ti, leap, hop, nan, nan, nan)  # fmt: skip
            r.gap_d = di
        if placed:
            metres = _metres_at(r.gap_lat, r.gap_lon, lat_i, lon_i, math.cos(math.radians(lat_i)))
            if metres > prm[MAX_SPEED] * hop + JUMP_SLACK_M:
                n = _emit(ev_at, ev_var, ev_val, n, i, V_JUMP_GPS_LATE, a, flags, cleared,
                          nan, gap_t, ti, metres, hop, nan, nan, nan)  # fmt: skip
        r.gap_t = ti
        # a stretch without a fix leaves no position to measure the next one from
        r.gap_lat, r.gap_lon = (lat_i, lon_i) if placed else (nan, nan)
        floor = prm[HR_FLOOR]
        if not math.isnan(floor) and hri > 0:  # a resting heart in a late stretch, at the effort held around it
            low_n = _streak_of(int(r.low_n), hri < floor)
            r.low_n = low_n
            if r.effort_s >= EFFORT_S and low_n >= LOW_HR_SAMPLES:
                n = _emit(ev_at, ev_var, ev_val, n, i, V_DECOUPLED_LATE, a, flags, cleared,
                          si - low_n + 1, nan, nan, hri, floor, float(r.effort_s), nan, nan)  # fmt: skip
    age = int(r.kin_seq) - si  # seqs behind the newest: still in the ring below HR_RING
    if 0 <= age < HR_RING and not (hri > 0 and hri < 256):
        r.hr_ring[si % HR_RING] = NO_READING
    elif 0 <= age < HR_RING:
        beat, ring = int(hri), r.hr_ring
        ring[si % HR_RING] = beat
        # A frozen run is counted by seq: a late reading inside it (no other reading after it) adds to it
        # if it is the frozen value, and cuts it to the readings after it if not
        frozen, after = int(r.hr_last), 0
        for later in range(si + 1, si + age + 1):
            reading = int(ring[later % HR_RING])
            if reading > NO_READING and reading != frozen:
                return n
            after += 1 if reading > NO_READING else 0
        if after > 0:
            run = min(int(r.frozen_n), 65_000) + 1 if beat == frozen else after - 1
            r.frozen_n = run
            moving = float(r.v_now) >= 1.0 or float(r.p_now) > 0
            if moving and run + 1 >= max(_run_needed(float(r.same)), FROZEN_MIN_RUN):
                n = _emit(ev_at, ev_var, ev_val, n, i, V_FROZEN, a, flags, cleared,
                          nan, nan, nan, hri, run + 1, nan, nan, nan)  # fmt: skip
    return n


@njit(cache=True, inline="always")
def _units(code):
    """Power of one second of the 5-minute ring, in W_UNIT (its code: 0 no sample, ZERO 0 W)."""
    return 0 if code == ZERO else int(code)


@njit(cache=True)
def _watts(i, a, r, ti, pw, weight, sex, flags, cleared, prm, ev_at, ev_var, ev_val, n):
    """Exact rolling 5- and 20-minute mean power of each second: a second delivered without power
    counts 0 W; a second whose sample never arrived (lost on the way, or still on its way) is left
    out, up to LOST_SHARE of the window, and counts 0 W beyond that."""
    kg = float(weight[a])
    if kg > 0 and r.seen_fp & _SEEN_POWER:
        sec = int(math.floor(ti))
        units = int(min(max(round(pw / W_UNIT), 0), ZERO - 1))
        newest = int(r.pw_sec)
        if newest < -(2**61):
            newest = sec - 1
        ring5, ring20 = r.ring_5, r.ring_20
        packed5, packed20 = int(r.pw_5), int(r.pw_20)
        sum5, lost5 = packed5 & SUM5_MASK, packed5 >> SUM5_BITS
        sum20 = packed20
        present = max(RING_5 - lost5, RING_5 - LOST_5)
        # Seconds (and buckets) the ring moves past are cleared: they were 300 s (1,220 s) ago. A second
        # that leaves the 5-minute ring without a sample counts in its 20-second bucket at the 5-minute
        # mean of the seconds that arrived around it.
        begin = max(newest, sec - RING_5)
        for j in range(1, sec - begin + 1):
            second = begin + j
            slot = second % RING_5
            code = int(ring5[slot])
            if code == 0 and lost5 > 0:
                lost5 -= 1
                fill = int(round(sum5 / present))
                bucket = ((newest - (newest - second) % RING_5) // BUCKET_S) % RING_20  # the second leaving
                ring20[bucket] = int(ring20[bucket]) + fill
                sum20 += fill
            else:
                sum5 -= _units(code)
            ring5[slot] = 0
            if second < sec:  # skipped: no sample for that second (yet)
                lost5 += 1
        first_b = newest // BUCKET_S
        for j in range(1, min(sec // BUCKET_S - first_b, RING_20) + 1):
            slot = (first_b + j) % RING_20
            sum20 -= int(ring20[slot])
            ring20[slot] = 0
        newest = max(newest, sec)
        if newest - sec < RING_5:  # a late second still in the ring
            slot = sec % RING_5
            code = int(ring5[slot])
            if code == 0 and lost5 > 0 and sec < newest:
                lost5 -= 1
            change = units - _units(code)
            ring5[slot] = units if units > 0 else ZERO
            bucket = (sec // BUCKET_S) % RING_20
            ring20[bucket] = int(ring20[bucket]) + change
            sum5 += change
            sum20 += change
        r.pw_sec, r.pw_5, r.pw_20 = newest, sum5 | (lost5 << SUM5_BITS), sum20
        women = sex[a] == 2
        mean5 = sum5 * W_UNIT / max(RING_5 - lost5, RING_5 - LOST_5)
        oldest = int(ring20[(newest // BUCKET_S + 1) % RING_20])
        part = (BUCKET_S - 1 - newest % BUCKET_S) / BUCKET_S
        mean20 = ((sum20 - (1 - part) * oldest) * W_UNIT + lost5 * mean5) / (RING_20 - 1) / BUCKET_S
        end = newest + 1.0
        limit = prm[WKG5_WOMEN] if women else prm[WKG5_MEN]
        if mean5 / kg > limit:
            n = _emit(ev_at, ev_var, ev_val, n, i, V_WKG5, a, flags, cleared,
                      math.nan, end - 300, end, mean5 / kg, mean5, kg, limit, lost5)  # fmt: skip
        limit = prm[WKG20_WOMEN] if women else prm[WKG20_MEN]
        if mean20 / kg > limit:
            n = _emit(ev_at, ev_var, ev_val, n, i, V_WKG20, a, flags, cleared,
                      math.nan, end - 1200, end, mean20 / kg, mean20, kg, limit, lost5)  # fmt: skip
    return n


@njit(cache=True)
def _check_clock(p, newest_t, fresh, backlog, now, platform, st, flags, cleared, hot, ev_at, ev_var, ev_val):
    """``platform``: how far behind the race's devices are at the median (a delay they all share)."""
    n = 0
    start, size = np.int64(st.ctypes.data), np.int64(st.itemsize)
    for i in range(len(p)):
        if i + PREFETCH_AHEAD < len(p):
            ahead = start + p[i + PREFETCH_AHEAD] * size
            for offset in range(0, hot, 64):
                _prefetch(ahead + offset)  # type: ignore[call-arg]  # numba passes typingctx
        a = p[i]
        r = st[a]
        if not fresh[i]:  # only older samples: a backlog arriving, and the newest has not moved
            r.clk_since = 0.0
            continue
        lag = now - newest_t[i]
        base = r.clk_base if r.clk_base <= lag else lag  # NaN: no lag yet
        elapsed = now - r.clk_at
        elapsed = 0.0 if math.isnan(elapsed) else elapsed
        # A slow clock falls behind silent or not; whether a lag is a delay shows in the batches after it
        recent = r.clk_recent + CLOCK_LEAK * elapsed
        recent = recent if recent <= lag else lag
        moved = float(r.clk_lag) - lag
        moved = 0.0 if math.isnan(moved) else moved
        # After a silence, and while a backlog arrives (samples older than the newest, or a newest that
        # skipped seqs still to come), the newest may be one of the backlog's: until it is in (CLOCK_SETTLE_S
        # after the last sign of it) a lag that falls is the backlog catching up (a slow clock never catches
        # up) and a lag that holds may be its last samples (a device that stopped sends no newer ones), so
        # neither is the device's jitter nor drift.
        since = 0.0 if elapsed > CLOCK_GAP_S or backlog[i] else min(float(r.clk_since) + elapsed, 1e6)
        settling = since < CLOCK_SETTLE_S
        catching_up = settling and moved > CLOCK_CATCH_S
        decay = float(r.clk_jitter) * math.exp(-elapsed / CLOCK_JITTER_S)
        jitter = decay if settling else max(decay, moved)
        r.clk_base, r.clk_recent, r.clk_at, r.clk_lag, r.clk_jitter = base, recent, now, lag, jitter
        r.clk_since = since
        behind = recent - base
        line = CLOCK_DRIFT_S + 0.5 * jitter + max(platform, 0.0)
        streak = 0
        if behind > line:
            streak = 1 if catching_up else min(int(r.clk_n), STREAK_MAX) + 1
        r.clk_n = streak
        if streak >= CLOCK_BATCHES and not settling:
            n = _emit(ev_at, ev_var, ev_val, n, i, V_CLOCK, a, flags, cleared,
                      math.nan, now - behind / CLOCK_LEAK, now, behind, line, base, lag, platform)  # fmt: skip
    return n
