"""Live fair play: whether a race's telemetry could have come from the athlete who sent it.

A ``FairPlay`` owns a handful of per-athlete columns (``columns``) inside the race's
board and checks each round of samples (one per athlete, in device order) with
numpy over the whole round. The thresholds are data (``SportProfile``, one per
sport, with their sources); an organizer may tighten them per race within bounds
(``tightened``). Every rule raises once per athlete, on the first sample that
makes its case conclusive, with the numbers that crossed the line, the window and
the sample seqs. What each rule catches and why its line sits where it does is in
``docs/fair-play.md``.

Absent readings arrive as 0 (``hr``, ``power``, ``cadence``) or NaN: an absent
reading is never evidence. A power of 0 after the meter has reported counts as
0 W in the W/kg means (which only lowers them) and as absent everywhere else (a
meter that stops is not a car).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

__all__ = ["SportProfile", "PROFILES", "RULES", "SEVERITY", "TIGHTEN", "FairPlay", "columns", "tightened"]

G = 9.81
RHO = 1.2  # kg/m³, air at sea level and 20 °C (thinner air at altitude needs less power: lenient)
BIKE_KG = 7.0  # the lightest legal road bike is 6.8 kg (UCI rule 1.3.019)


@dataclass(frozen=True, slots=True)
class SportProfile:
    max_speed: float  # m/s: 3 reported speeds in a row, or from distance over ≥ 5 s
    window_speed: float  # m/s: cap on the mean speed over ~20 s (an EMA)
    long_speed: float  # m/s: cap on the mean speed over ~150 s (an EMA)
    accel_power: float  # W/kg: speed × acceleration no body sustains for ACCEL_STEPS seconds
    move_speed: float  # m/s from which the athlete's own motion must show in the cadence
    min_cadence: float | None = None  # steps or revolutions per minute at move_speed and above
    effort_speed: float | None = None  # m/s held for EFFORT_S: race effort by pace
    effort_power: float | None = None  # W held for EFFORT_S: race effort by power
    hr_floor: float | None = None  # bpm: no heart at race effort beats slower
    coast_speed: float | None = None  # m/s from which the power a speed needs is checked
    cda: float | None = None  # m²: the smallest drag area of a rider at speed in a small group
    indoor_cda: float | None = None  # m²: the smallest deep in a peloton (indoor speed may be drafted)
    crr: float = 0.003  # the lowest rolling resistance of a racing tyre on smooth tarmac
    stride_max: float | None = None  # m per step: no distance runner strides further (indoor runs)
    wkg_5min: tuple[float, float] | None = None  # W/kg over any 5 minutes: (men, women)
    wkg_20min: tuple[float, float] | None = None  # W/kg over any 20 minutes: (men, women)


# Sources. Running: World Athletics records (400 m 43.03 s = 9.30 m/s; 1500 m 3:26.00 =
# 7.28 m/s; 100 m peak ~12.3 m/s, Bolt 2009); cadence 150-210 spm at every running pace
# (Cavanagh & Kram 1989; Heiderscheit 2011); stride ~2.0 m for elite 5-10 km pace. Cycling:
# the men's 5-min and functional-threshold ceilings of Coggan's power profile (Allen & Coggan,
# "Training and Racing with a Power Meter", table 3.1: 7.60 and 6.40 W/kg; women 6.61 and
# 5.69), the caps ZwiftPower-style race verification applies; drag area 0.25-0.35 m² for a
# road position, -30 to -50 % deep in a pack (Blocken 2018), so 0.18 m² is below any rider.
# Heart rate: a trained athlete's heart at race effort beats at 70-95 % of its maximum,
# well above 100 bpm even for elites with resting rates near 40 (Achten & Jeukendrup 2003).
PROFILES = {
    "run": SportProfile(
        max_speed=12.5,
        window_speed=9.0,  # 600 m indoor record 1:12.81 = 8.2 m/s; 400 m 9.3 m/s over 43 s
        long_speed=7.6,  # 2000 m record 4:44.79 = 7.02 m/s
        accel_power=30.0,
        move_speed=3.5,
        min_cadence=100.0,
        effort_speed=2.2,  # a jog; walking tops out near 2 m/s
        hr_floor=95.0,
        stride_max=2.3,
    ),
    "walk": SportProfile(
        max_speed=4.8, window_speed=4.2, long_speed=4.0, accel_power=20.0, move_speed=1.8, min_cadence=70.0
    ),
    "ride": SportProfile(
        max_speed=30.0,  # beyond a sprint (~20 m/s) and a fast descent
        window_speed=20.0,  # 72 km/h held: beyond a flat-road pack; a 15 s sprint at 20 m/s averages less
        long_speed=16.0,  # the hour record is 15.3 m/s (55.1 km/h, 2022); no flat pack holds 58 km/h for minutes
        accel_power=30.0,  # a 25 W/kg sprint peak (Menaspà 2015) is all a body has; a car pulls away at 2-4 m/s²
        move_speed=12.0,
        min_cadence=40.0,  # riders turn 70-100 rpm; coasting reads absent, not low
        effort_speed=8.0,
        effort_power=130.0,
        hr_floor=90.0,
        coast_speed=13.0,
        cda=0.18,
        indoor_cda=0.10,  # a rider deep in a peloton meets ~10 % of the drag alone (Blocken 2018)
        wkg_5min=(7.5, 6.6),
        wkg_20min=(6.4, 5.7),
    ),
    "swim": SportProfile(max_speed=2.5, window_speed=2.3, long_speed=2.1, accel_power=10.0, move_speed=1.0),
    # Rowing: 2000 m world record of the men's eight 5:18.68 = 6.28 m/s; single sculls ~5.6 m/s.
    "row": SportProfile(
        max_speed=7.0,
        window_speed=6.5,
        long_speed=6.4,
        accel_power=20.0,
        move_speed=4.0,
        min_cadence=14.0,
        effort_power=150.0,
        hr_floor=90.0,
        wkg_5min=(7.0, 6.0),  # Concept2 2000 m records: ~6.9 W/kg men, ~5.9 W/kg women over ~5:40
        wkg_20min=(5.8, 5.0),
    ),
    # Cross-country skiing: sprint finishes reach 10 m/s, descents 20 m/s for a few seconds.
    "ski": SportProfile(
        max_speed=22.0,
        window_speed=12.0,
        long_speed=9.0,  # 50 km classic winners average ~6.5 m/s; a sprint ~8 m/s
        accel_power=30.0,
        move_speed=6.0,
        effort_speed=4.0,
        hr_floor=100.0,
    ),
}

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

# What an organizer may tighten, and how far: (the direction that is tighter, the farthest
# a race may move from the profile as a fraction of it). Looser than the profile is refused.
TIGHTEN = {
    "max_speed": ("lower", 0.5),
    "window_speed": ("lower", 0.5),
    "wkg_5min": ("lower", 0.75),
    "wkg_20min": ("lower", 0.75),
    "hr_floor": ("higher", 1.2),
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
VEHICLE_SAMPLES = 8  # readings in a row of speed without the power or cadence it needs
POWER_FRACTION = 0.2  # below this share of the least power a speed needs on the flat, a motor moves it
FALSE_ALARM = 1e-9  # chance that an honest heart matches a replay by accident, per test
HR_RING = 96  # heart-rate readings remembered, newest first: a loop of up to LOOP_MAX
LOOP_MIN, LOOP_MAX = 30, 90
LOOP_MIN_RUN, FROZEN_MIN_RUN = 15, 20
HR_CHANGES = 3  # a looped stretch must vary this often to be more than a steady heart
SAME_INIT = 0.4  # chance that a heart reads the same twice in a row, before it is measured
CHORD_S, CHORD_M, CHORD_MAX_S = 2.0, 25.0, 30.0  # GPS track measured in chords: noise cancels along them;
# a longer chord (a tunnel, a dropout) cuts the corners it spans and only re-anchors
INFLATION_REL = 0.04  # device distance may run this much over the GPS track (calibration, corners)
INFLATION_STEP = 0.6  # no chord gains more than this share (and CHORD_M) over its length: a multipath fix does
INFLATION_SLACK_M = 120.0
INDOOR_SLACK_J = 15_000.0  # energy a rider's speed may owe their power (inertia, a virtual dip)
INDOOR_MARGIN = 1.25
STRIDE_SLACK_M = 40.0
CLOCK_DRIFT_S = 4.0  # device clock behind the receive clock by this much more than its best...
CLOCK_LEAK = 0.7  # s/s: ...its best recent lag, which may rise this fast (a clock 2x slow or less)
CLOCK_GAP_S = 3.0  # after a longer silence a larger lag is a delay, not drift
CLOCK_BATCHES = 2  # batches in a row behind: one late upload is not a clock
CLOCK_JITTER_S = 600.0  # how long a device's delivery jitter (delays that come and go) is remembered
W_UNIT = 8.0  # W per step of the 1-second power ring (uint8: 0-2040 W)
RING_5, BUCKET_S, RING_20 = 300, 20, 61
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
        ("hr_ring", np.uint8, 0, (HR_RING,)),  # column k: the reading k seqs before the newest
        ("hr_lags", np.uint64, 0, ()),  # bit j: lag LOOP_MIN + j matched every reading since hr_from
        ("hr_from", np.uint32, 0, ()),
        ("hr_count", np.uint32, 0, ()),  # heart-rate readings so far
        ("hr_changes", np.uint32, 0, (HR_CHANGES,)),  # reading counts of the last heart-rate changes
        ("clk_base", np.float64, nan, ()),  # the device clock's best (smallest) lag behind receipt
        ("clk_recent", np.float64, nan, ()),  # its best recent lag, rising at most CLOCK_LEAK s/s
        ("clk_at", np.float64, nan, ()),
        ("clk_lag", np.float32, nan, ()),
        ("clk_n", np.uint8, 0, ()),
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
            ("pw_5", np.int32, 0, ()),  # sums of the rings, in W_UNIT
            ("pw_20", np.int32, 0, ()),
            ("ring_5", np.uint8, 0, (RING_5,)),  # power of each of the last 300 seconds
            ("ring_20", np.uint16, 0, (RING_20,)),  # power summed over 20-second buckets
        ]
    return tuple(cols)


def tightened(profile: SportProfile, overrides: dict[str, float] | None) -> SportProfile:
    """The profile with a race's own tighter thresholds; ValueError for a looser or unknown one."""
    if not overrides:
        return profile
    if not isinstance(overrides, dict):
        raise ValueError("fair_play settings are a map of threshold name to value")
    changes: dict[str, Any] = {}
    for name, value in overrides.items():
        if name not in TIGHTEN:
            raise ValueError(f"fair_play may tighten {', '.join(TIGHTEN)}, not {name!r}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"fair_play {name} must be a number, not {value!r}")
        current = getattr(profile, name)
        if current is None:
            raise ValueError(f"this sport has no {name} to tighten")
        base = current[0] if isinstance(current, tuple) else current
        direction, reach = TIGHTEN[name]
        lo, hi = (base * reach, base) if direction == "lower" else (base, base * reach)
        if not lo <= value <= hi:
            raise ValueError(f"fair_play {name} may be tightened within {lo:g}-{hi:g}, not {value!r}")
        if isinstance(current, tuple):  # the men's cap as given, the women's moved in proportion
            changes[name] = (float(value), *(x * value / base for x in current[1:]))
        else:
            changes[name] = float(value)
    return replace(profile, **changes)


def _needed_w(v: np.ndarray, mass: np.ndarray, cda: float, crr: float) -> np.ndarray:
    """The least power that holds speed ``v`` on a flat road: drag plus rolling resistance."""
    return (0.5 * RHO * cda * v * v + crr * mass * G) * v


def _metres(lat0: np.ndarray, lon0: np.ndarray, lat1: np.ndarray, lon1: np.ndarray) -> np.ndarray:
    """Distance between fixes on the local plane: within 0.1 % of the great circle up to tens of km."""
    north = np.radians(lat1 - lat0)
    east = np.radians(np.remainder(lon1 - lon0 + 180.0, 360.0) - 180.0) * np.cos(np.radians(lat0))
    return 6_371_000.0 * np.hypot(north, east)


def _ema(old: np.ndarray, new: np.ndarray, dt: np.ndarray, tau: float) -> np.ndarray:
    keep = np.exp(-dt / tau)
    return np.where(np.isnan(old), new, keep * old + (1 - keep) * new)


def _streak(count: np.ndarray, hit: np.ndarray) -> np.ndarray:
    """Readings in a row that show it, forgiving a stray one: a miss halves the count."""
    return np.where(hit, np.minimum(count, STREAK_MAX) + 1, count // 2)


def _run_needed(same: np.ndarray, floor: int) -> np.ndarray:
    """Readings in a row that an honest heart repeats by chance less than once in 1/FALSE_ALARM."""
    return np.maximum(np.ceil(math.log(FALSE_ALARM) / np.log(np.clip(same, 0.05, 0.95))), floor)


Raise = Callable[..., None]



def _clear_passed(ring: np.ndarray, sums: np.ndarray, q: np.ndarray, newest: np.ndarray, moved: np.ndarray) -> None:
    """Empty the slots of ``ring`` (rows ``q``) that each row's clock moved past since ``newest``,
    taking them out of the running ``sums``."""
    size = ring.shape[1]
    for j in range(1, int(min(moved.max(initial=0), size)) + 1):
        at = np.flatnonzero(moved >= j)
        slot = (newest[at] + j) % size
        sums[at] -= ring[q[at], slot]
        ring[q[at], slot] = 0

class FairPlay:
    """The rules of one race, over the board's columns ``col`` (shared with the board)."""

    def __init__(self, profile: SportProfile, col: dict[str, np.ndarray], raise_: Raise) -> None:
        self.profile = profile
        self._col = col
        self._raise = raise_

    def check(self, s: dict[str, np.ndarray], in_order: np.ndarray, out: dict) -> None:
        """One round: each athlete at most once; ``in_order`` marks samples newer than any before."""
        if in_order.all():
            self._in_order(s, out)
        else:
            if in_order.any():
                self._in_order({k: v[in_order] for k, v in s.items()}, out)
            self._late({k: v[~in_order] for k, v in s.items()}, out)

    # In device order

    def _in_order(self, s: dict[str, np.ndarray], out: dict) -> None:
        c, rule, raise_ = self._col, self.profile, self._raise
        p, seq, t, d, v = s["p"], s["seq"], s["t"], s["d"], s["speed"]
        hr, power, cadence = s["hr"], s["power"], s["cadence"]
        ok = d >= 0
        kin_t = c["kin_t"][p]
        gap = t - kin_t  # NaN for an athlete's first sample
        dt = np.clip(np.nan_to_num(gap, nan=1.0), 0.0, 5.0)
        after_gap = (seq > c["kin_seq"][p].astype(np.int64) + 1) & ~np.isnan(kin_t)
        seen = c["seen_fp"][p] | np.where(power > 0, _SEEN_POWER, 0) | np.where(cadence > 0, _SEEN_CADENCE, 0)
        placed = ~np.isnan(s["lat"]) & ~np.isnan(s["lon"])
        first_fix = placed & ((seen & _SEEN_GPS) == 0)
        if first_fix.any():  # what the indoor rules owed (J, m of cadence) is not GPS metres
            c["inf_excess"][p[first_fix]] = 0
        seen = (seen | np.where(placed, _SEEN_GPS, 0)).astype(np.uint8)
        c["seen_fp"][p] = seen
        if after_gap.any():
            rows = p[after_gap]
            c["gap_t"][rows] = kin_t[after_gap]
            c["gap_d"][rows] = c["d_last"][rows]
            fixed = c["pos_t"][rows] == kin_t[after_gap]  # a position anchors only if taken just before the gap
            c["gap_lat"][rows] = np.where(fixed, c["lat"][rows], np.nan)
            c["gap_lon"][rows] = np.where(fixed, c["lon"][rows], np.nan)

        # Speed: as reported, and as the distance grows
        has_speed = ~np.isnan(v)
        over = c["over"][p]
        over = np.where(has_speed, np.where(v > rule.max_speed, np.minimum(over, 254) + 1, 0), over).astype(np.uint8)
        c["over"][p] = over
        raise_(
            "speed", p, over >= SPEED_STREAK, t, out, seq=seq, since=seq - over + 1,
            speed=v, limit=rule.max_speed, source="reported",
        )  # fmt: skip
        ref_t, ref_d = c["ref_t"][p], c["ref_d"][p]
        span = t - ref_t
        measured = ok & (span >= SPEED_SPAN_S)
        pace = (d - ref_d - JUMP_SLACK_M / 3) / np.where(measured, span, 1.0)
        raise_(
            "speed", p, measured & (pace > rule.max_speed), t, out, seq=seq, window=(ref_t, t),
            speed=pace, limit=rule.max_speed, source="distance",
        )  # fmt: skip
        moved = ok & (measured | ~(span >= 0))
        c["ref_t"][p] = np.where(moved, t, ref_t)
        c["ref_d"][p] = np.where(moved, d, ref_d)

        # Teleport: the position or the distance leaps further than the sport's top speed allows
        d_t, d_last = c["d_t"][p], c["d_last"][p]
        leap = d - d_last
        hop_d = t - d_t
        raise_(
            "gps_jump", p, ok & (hop_d > 0) & (leap > rule.max_speed * hop_d + JUMP_SLACK_M), t, out,
            seq=seq, window=(d_t, t), metres=leap, seconds=hop_d, source="distance",
        )  # fmt: skip
        pos_t, lat0, lon0 = c["pos_t"][p], c["lat"][p], c["lon"][p]
        hop = t - pos_t
        metres = _metres(lat0, lon0, s["lat"], s["lon"])
        raise_(
            "gps_jump", p, placed & (hop > 0) & (metres > rule.max_speed * hop + JUMP_SLACK_M), t, out,
            seq=seq, window=(pos_t, t), metres=metres, seconds=hop, lat=s["lat"], lon=s["lon"], source="gps",
        )  # fmt: skip
        c["pos_t"][p] = np.where(placed, t, pos_t)
        c["lat"][p] = np.where(placed, s["lat"], lat0)
        c["lon"][p] = np.where(placed, s["lon"], lon0)

        # Speed of the body: reported, else from the distance since the last sample
        inst = np.where(ok & (gap > 0) & (gap <= 5.0), (d - d_last) / np.where(gap > 0, gap, 1.0), np.nan)
        speed = np.where(has_speed, v, inst)
        known = ~np.isnan(speed)

        # Sustained acceleration: the power that speeding up takes (v·a, per kg) for seconds on end
        kin_v = c["kin_v"][p]
        close = has_speed & (gap > 0) & (gap <= ACCEL_GAP_S) & ~np.isnan(kin_v)
        pull = v * (v - kin_v) / np.where(close, gap, 1.0)
        acc_n = np.where(close & (pull >= rule.accel_power), np.minimum(c["acc_n"][p], 254) + 1, 0).astype(np.uint8)
        c["acc_n"][p] = acc_n
        raise_(
            "acceleration", p, acc_n >= ACCEL_STEPS, t, out, seq=seq, since=seq - acc_n,
            w_per_kg=pull, steps=acc_n, speed=v, limit=rule.accel_power,
        )  # fmt: skip

        # The mean speed over ~20 s and ~150 s (bias-corrected EMAs, judged once a time constant is seen)
        means = []
        for column, tau, cap in (("v_win", WINDOW_TAU_S, rule.window_speed), ("v_long", LONG_TAU_S, rule.long_speed)):
            keep = np.exp(-dt / tau)
            ema = np.where(known, keep * c[column][p] + (1 - keep) * np.nan_to_num(speed), c[column][p])
            weight = np.where(known, keep * c[column + "_w"][p] + (1 - keep), c[column + "_w"][p])
            c[column][p], c[column + "_w"][p] = ema, weight
            mean = ema / np.where(weight > 0, weight, 1.0)
            means.append(mean)
            raise_(
                "vehicle", p, (weight >= 0.63) & (mean > cap), t, out, seq=seq, window=(t - tau, t),
                mean_speed=mean, limit=cap, source=f"mean over ~{tau:.0f} s",
            )  # fmt: skip
        mean_v = means[0]

        v_now = np.where(known, _ema(c["v_now"][p], speed, dt, SHORT_TAU_S), c["v_now"][p])
        c["v_now"][p] = v_now
        powered = power > 0
        p_now = np.where(powered, _ema(c["p_now"][p], power, dt, SHORT_TAU_S), c["p_now"][p])
        c["p_now"][p] = p_now
        cadenced = cadence > 0
        cad_now = np.where(cadenced, _ema(c["cad_now"][p], cadence, dt, SHORT_TAU_S / 2), c["cad_now"][p])
        c["cad_now"][p] = cad_now
        weight = c["weight"][p].astype(np.float64)
        mass = np.where(weight > 0, weight, 55.0) + BIKE_KG

        # Speed the body's power cannot make: a motor (outdoors)
        if rule.coast_speed is not None and rule.cda is not None:
            need = _needed_w(v_now, mass, rule.cda, rule.crr)
            motor = powered & (v_now >= rule.coast_speed) & (p_now < POWER_FRACTION * need)
            veh_n = np.where(powered, _streak(c["veh_n"][p], motor), c["veh_n"][p])
            c["veh_n"][p] = veh_n.astype(np.uint8)
            indoor = (seen & _SEEN_GPS) == 0
            raise_(
                "vehicle", p, ~indoor & (veh_n >= VEHICLE_SAMPLES), t, out, seq=seq, since=seq - veh_n + 1,
                speed=v_now, power_w=p_now, needed_w=need, source="power",
            )  # fmt: skip
        if rule.min_cadence is not None:
            still = cadenced & (v_now >= rule.move_speed) & (cad_now < rule.min_cadence)
            cad_n = np.where(cadenced, _streak(c["cad_n"][p], still), c["cad_n"][p])
            c["cad_n"][p] = cad_n.astype(np.uint8)
            raise_(
                "vehicle", p, cad_n >= VEHICLE_SAMPLES, t, out, seq=seq, since=seq - cad_n + 1,
                speed=v_now, cadence=cad_now, limit=rule.min_cadence, source="cadence",
            )  # fmt: skip

        self._heart(p, seq, t, hr, power, speed, known, dt, seen, mean_v, out)
        self._distance(s, p, ok, placed, speed, known, dt, mass, seen, gap, out)
        if rule.wkg_5min is not None:
            self._watts(s, p, out)

        c["kin_t"][p] = t
        c["kin_v"][p] = v
        c["kin_seq"][p] = seq

    def _heart(
        self,
        p: np.ndarray,
        seq: np.ndarray,
        t: np.ndarray,
        hr: np.ndarray,
        power: np.ndarray,
        speed: np.ndarray,
        known: np.ndarray,
        dt: np.ndarray,
        seen: np.ndarray,
        mean_v: np.ndarray,
        out: dict,
    ) -> None:
        c, rule, raise_ = self._col, self.profile, self._raise
        has_hr = (hr > 0) & (hr < 256)
        beat = np.where(has_hr, hr, 0).astype(np.uint8)
        moving = (known & (speed >= 1.0)) | (power > 0)

        # Decoupled: a resting heart at sustained race effort (pace, or power where measured)
        if rule.hr_floor is not None:
            by_power = (seen & _SEEN_POWER) != 0
            effort = np.where(by_power, _ema(c["effort"][p], power, dt, EFFORT_TAU_S), np.nan)
            line = rule.effort_power or np.inf
            hard = (effort >= line) | (mean_v >= (rule.effort_speed or np.inf))
            effort_s = np.where(hard, c["effort_s"][p] + dt, np.maximum(c["effort_s"][p] - 3 * dt, 0.0))
            c["effort"][p], c["effort_s"][p] = effort, effort_s
            low = has_hr & (hr < rule.hr_floor)
            # readings count only once the effort has lasted long enough for the heart to follow
            low_n = np.where(effort_s >= EFFORT_S, np.where(has_hr, _streak(c["low_n"][p], low), c["low_n"][p]), 0)
            c["low_n"][p] = low_n.astype(np.uint8)
            raise_(
                "hr_decoupled", p, (effort_s >= EFFORT_S) & (low_n >= LOW_HR_SAMPLES), t, out,
                seq=seq, since=seq - low_n + 1, hr=hr, floor=rule.hr_floor, power_w=effort,
                mean_speed=mean_v, effort_s=effort_s,
            )  # fmt: skip

        # Replay: one value frozen, or a stretch of 30-90 s played again, reading for reading
        last = c["hr_last"][p]
        same = has_hr & (beat == last)
        frozen_n = np.where(has_hr, np.where(same, np.minimum(c["frozen_n"][p], 65_000) + 1, 0), c["frozen_n"][p])
        c["frozen_n"][p] = frozen_n
        learning = has_hr & (last > 0) & (frozen_n < 10)
        chance = np.where(learning, c["same"][p] + (same - c["same"][p]) / 60.0, c["same"][p])
        c["same"][p] = chance
        count = c["hr_count"][p].astype(np.int64) + has_hr
        c["hr_count"][p] = count
        changed = has_hr & (last > 0) & ~same
        if changed.any():
            rows = p[changed]
            marks = c["hr_changes"][rows]
            c["hr_changes"][rows] = np.column_stack((count[changed], marks[:, :-1]))
        c["hr_last"][p] = np.where(has_hr, beat, last)
        raise_(
            "hr_replay", p, moving & (frozen_n + 1 >= _run_needed(chance, FROZEN_MIN_RUN)), t, out,
            seq=seq, since=seq - frozen_n, hr=hr, readings=frozen_n + 1, source="frozen",
        )  # fmt: skip

        # Lags that have matched every reading since ``hr_from``: when none is left, the lags that
        # match now start afresh. A loop's lag matches on every reading, so it stays once in.
        # The ring holds one column per seq (0: this sample, k: k seqs before; 0 where no reading),
        # so a gap, an absent reading or a late sample filled in afterwards keeps every lag in place.
        ring = c["hr_ring"]
        rows_at = np.flatnonzero(has_hr | (count > 0))
        if not len(rows_at):
            return
        q = p[rows_at]
        rows = ring[q]
        shift = seq[rows_at] - c["kin_seq"][q].astype(np.int64)
        moved = np.zeros_like(rows)
        moved[:, 1:] = rows[:, :-1]
        far = np.flatnonzero(shift != 1)
        if len(far):
            back = np.arange(HR_RING)[None, :] - shift[far, None]
            moved[far] = np.where(back >= 0, np.take_along_axis(rows[far], np.clip(back, 0, HR_RING - 1), axis=1), 0)
        moved[:, 0] = beat[rows_at]
        ring[q] = moved
        live = rows_at[has_hr[rows_at]]
        if not len(live):
            return
        q = p[live]
        match = moved[has_hr[rows_at]][:, LOOP_MIN : LOOP_MAX + 1] == beat[live, None]
        bits = np.packbits(match, axis=1, bitorder="little").view(np.uint64)[:, 0]  # 61 lags: 8 bytes
        held = c["hr_lags"][q] & bits
        restart = held == 0
        lags = np.where(restart, bits, held)
        start = np.where(restart, count[live], c["hr_from"][q])
        c["hr_lags"][q], c["hr_from"][q] = lags, start
        length = count[live] - start + 1
        needed = _run_needed(chance[live], LOOP_MIN_RUN)
        varied = count[live] - c["hr_changes"][q, -1] < length
        looped = (lags != 0) & (length >= needed) & varied & moving[live]
        if looped.any():
            tripped = np.zeros(len(p), bool)
            tripped[live[looped]] = True
            lag = np.zeros(len(p))
            lowest = lags[looped] & (~lags[looped] + np.uint64(1))
            lag[live[looped]] = LOOP_MIN + np.log2(lowest.astype(np.float64))
            readings = np.zeros(len(p))
            readings[live] = length
            raise_(
                "hr_replay", p, tripped, t, out, seq=seq, since=seq - readings + 1, hr=hr,
                loop_s=lag, readings=readings, source="loop",
            )  # fmt: skip

    def _distance(
        self,
        s: dict[str, np.ndarray],
        p: np.ndarray,
        ok: np.ndarray,
        placed: np.ndarray,
        speed: np.ndarray,
        known: np.ndarray,
        dt: np.ndarray,
        mass: np.ndarray,
        seen: np.ndarray,
        gap: np.ndarray,
        out: dict,
    ) -> None:
        """Inflated distance: the device's distance against the GPS track, or (indoors) power and cadence."""
        c, rule, raise_ = self._col, self.profile, self._raise
        t, d, seq = s["t"], s["d"], s["seq"]
        excess, t0 = c["inf_excess"][p].astype(np.float64), c["inf_t0"][p]
        rep, ref = c["inf_rep"][p].astype(np.float64), c["inf_ref"][p].astype(np.float64)
        outdoor = (seen & _SEEN_GPS) != 0

        # Outdoors: chords of the GPS track (≥ 5 s and 25 m) against the distance gained along them
        fix = placed & ok
        ch_t = c["ch_t"][p]
        fresh = fix & np.isnan(ch_t)
        hop = t - ch_t
        chord = _metres(c["ch_lat"][p], c["ch_lon"][p], s["lat"], s["lon"])
        anchor = fresh | (fix & (hop >= CHORD_S) & ((chord >= CHORD_M) | (hop >= CHORD_MAX_S)))
        ready = anchor & (hop <= CHORD_MAX_S)
        gained = d - c["ch_d"][p]
        step = np.minimum(gained - (1 + INFLATION_REL) * chord, INFLATION_STEP * chord + CHORD_M)
        grow = ready & (excess + step > 0)
        t0 = np.where(grow & (excess == 0), ch_t, t0)
        rep = np.where(ready, np.where(grow, np.where(excess == 0, 0, rep) + gained, 0), rep)
        ref = np.where(ready, np.where(grow, np.where(excess == 0, 0, ref) + chord, 0), ref)
        excess = np.where(ready, np.maximum(excess + step, 0.0), excess)
        c["ch_t"][p] = np.where(anchor, t, ch_t)
        c["ch_lat"][p] = np.where(anchor, s["lat"], c["ch_lat"][p])
        c["ch_lon"][p] = np.where(anchor, s["lon"], c["ch_lon"][p])
        c["ch_d"][p] = np.where(anchor, d, c["ch_d"][p])
        raise_(
            "distance", p, outdoor & (excess > INFLATION_SLACK_M), t, out, seq=seq, window=(t0, t),
            reported_m=rep, gps_m=ref, excess_m=excess, slack_m=INFLATION_SLACK_M, source="gps",
        )  # fmt: skip

        # Indoors, ridden: the power the reported speed needs on the flat, less what slowing down gives back
        moving = ~outdoor & known & (gap > 0) & (gap <= 5.0)
        if rule.indoor_cda is not None:
            powered = moving & (s["power"] > 0)  # a meter that drops out owes nothing
            kinetic = mass * speed * (speed - c["kin_v"][p]) / np.where(gap > 0, gap, 1.0)
            need = _needed_w(speed, mass, rule.indoor_cda, rule.crr) + np.nan_to_num(kinetic)
            owed = (need - INDOOR_MARGIN * s["power"]) * dt
            t0 = np.where(powered & (excess == 0) & (owed > 0), t, t0)
            rep = np.where(powered, np.where(excess == 0, 0, rep) + need * dt, rep)
            ref = np.where(powered, np.where(excess == 0, 0, ref) + s["power"] * dt, ref)
            excess = np.where(powered, np.maximum(excess + owed, 0.0), excess)
            raise_(
                "distance", p, powered & (excess > INDOOR_SLACK_J), t, out, seq=seq, window=(t0, t),
                needed_j=rep, power_j=ref, owed_j=excess, source="power",
            )  # fmt: skip
        # Indoors, run: steps too long for the cadence
        if rule.stride_max is not None:
            stepping = moving & (s["cadence"] > 0)
            reach = s["cadence"] / 60.0 * rule.stride_max
            owed = (speed - reach) * dt
            t0 = np.where(stepping & (excess == 0) & (owed > 0), t, t0)
            rep = np.where(stepping, np.where(excess == 0, 0, rep) + speed * dt, rep)
            ref = np.where(stepping, np.where(excess == 0, 0, ref) + reach * dt, ref)
            excess = np.where(stepping, np.maximum(excess + owed, 0.0), excess)
            raise_(
                "distance", p, stepping & (excess > STRIDE_SLACK_M), t, out, seq=seq, window=(t0, t),
                reported_m=rep, stride_reach_m=ref, excess_m=excess, source="cadence",
            )  # fmt: skip
        c["inf_excess"][p], c["inf_t0"][p], c["inf_rep"][p], c["inf_ref"][p] = excess, t0, rep, ref

    def _watts(self, s: dict[str, np.ndarray], p: np.ndarray, out: dict) -> None:
        """Exact rolling 5- and 20-minute mean power of each second (missing seconds count 0 W)."""
        c, rule = self._col, self.profile
        weight = c["weight"][p]
        rows = np.flatnonzero((weight > 0) & ((c["seen_fp"][p] & _SEEN_POWER) != 0))
        if not len(rows):
            return
        q = p[rows]
        sec = np.floor(s["t"][rows]).astype(np.int64)
        units = np.clip(np.rint(s["power"][rows] / W_UNIT), 0, 255).astype(np.int64)
        newest = c["pw_sec"][q]
        newest = np.where(newest < -(2**61), sec - 1, newest)
        ring5, ring20 = c["ring_5"], c["ring_20"]
        sum5, sum20 = c["pw_5"][q].astype(np.int64), c["pw_20"][q].astype(np.int64)
        ahead = sec - newest
        # Seconds (and buckets) the ring moves past are cleared: they were 300 s (1,220 s) ago.
        _clear_passed(ring5, sum5, q, newest, ahead)
        first_b = newest // BUCKET_S
        _clear_passed(ring20, sum20, q, first_b, sec // BUCKET_S - first_b)
        newest = np.maximum(newest, sec)
        inside = newest - sec < RING_5  # a late second still in the ring
        slot5 = sec % RING_5
        old = np.where(inside, ring5[q, slot5], 0).astype(np.int64)
        change = np.where(inside, units - old, 0)
        ring5[q[inside], slot5[inside]] = units[inside]
        bucket = (sec // BUCKET_S) % RING_20
        ring20[q[inside], bucket[inside]] = ring20[q[inside], bucket[inside]] + change[inside]
        sum5 += change
        sum20 += change
        c["pw_sec"][q], c["pw_5"][q], c["pw_20"][q] = newest, sum5, sum20

        kg = weight[rows].astype(np.float64)
        women = c["sex"][q] == 2
        mean5 = sum5 * W_UNIT / RING_5
        oldest = ring20[q, (newest // BUCKET_S + 1) % RING_20].astype(np.int64)
        part = (BUCKET_S - 1 - newest % BUCKET_S) / BUCKET_S
        mean20 = (sum20 - (1 - part) * oldest) * W_UNIT / (RING_20 - 1) / BUCKET_S
        windows = (("wkg_5min", mean5, rule.wkg_5min, 300), ("wkg_20min", mean20, rule.wkg_20min, 1200))
        for name, mean, caps, span in windows:
            limit = np.where(women, caps[1], caps[0])
            wkg = mean / kg
            over = wkg > limit
            if not over.any():
                continue
            tripped = np.zeros(len(p), bool)
            tripped[rows] = over
            spread = {}
            for key, value in (("wkg", wkg), ("mean_w", mean), ("weight_kg", kg), ("limit", limit)):
                whole = np.full(len(p), np.nan)
                whole[rows] = value
                spread[key] = whole
            end = np.full(len(p), np.nan)
            end[rows] = newest + 1
            self._raise(name, p, tripped, s["t"], out, seq=s["seq"], window=(end - span, end), **spread)

    # Late: a sample older than one already checked

    def _late(self, s: dict[str, np.ndarray], out: dict) -> None:
        """Follow a gap's late samples in device order from the sample before the gap."""
        c, rule, raise_ = self._col, self.profile, self._raise
        p, seq, t, d = s["p"], s["seq"], s["t"], s["d"]
        gap_t = c["gap_t"][p]
        follows = ~np.isnan(gap_t) & (t > gap_t)
        ok = follows & (d >= 0)
        gap_d = c["gap_d"][p]
        hop = t - gap_t
        leap = d - gap_d
        raise_(
            "gps_jump", p, ok & (leap > rule.max_speed * hop + JUMP_SLACK_M), t, out, seq=seq,
            window=(gap_t, t), metres=leap, seconds=hop, source="distance, late",
        )  # fmt: skip
        placed = follows & ~np.isnan(s["lat"]) & ~np.isnan(s["lon"])
        lat0, lon0 = c["gap_lat"][p], c["gap_lon"][p]
        metres = _metres(lat0, lon0, s["lat"], s["lon"])
        raise_(
            "gps_jump", p, placed & (metres > rule.max_speed * hop + JUMP_SLACK_M), t, out, seq=seq,
            window=(gap_t, t), metres=metres, seconds=hop, source="gps, late",
        )  # fmt: skip
        c["gap_t"][p] = np.where(follows, t, gap_t)
        c["gap_d"][p] = np.where(ok, d, gap_d)
        # a stretch without a fix leaves no position to measure the next one from
        c["gap_lat"][p] = np.where(placed, s["lat"], np.where(follows, np.nan, lat0))
        c["gap_lon"][p] = np.where(placed, s["lon"], np.where(follows, np.nan, lon0))
        hr = s["hr"]
        if rule.hr_floor is not None:  # a resting heart in a late stretch, at the effort held around it
            has_hr = (hr > 0) & follows
            low_n = np.where(has_hr, _streak(c["low_n"][p], has_hr & (hr < rule.hr_floor)), c["low_n"][p])
            c["low_n"][p] = low_n
            raise_(
                "hr_decoupled", p, (c["effort_s"][p] >= EFFORT_S) & (low_n >= LOW_HR_SAMPLES), t, out,
                seq=seq, since=seq - low_n + 1, hr=hr, floor=rule.hr_floor, effort_s=c["effort_s"][p],
                source="late",
            )  # fmt: skip
        age = c["kin_seq"][p].astype(np.int64) - seq  # the ring's column of this reading
        has_hr = (hr > 0) & (hr < 256) & (age < HR_RING)
        c["hr_ring"][p[has_hr], age[has_hr]] = hr[has_hr].astype(np.uint8)
        if rule.wkg_5min is not None:
            self._watts(s, p, out)

    # Per batch: the device clock against the receive clock

    def clock(self, p: np.ndarray, newest_t: np.ndarray, seq: np.ndarray, now: float, out: dict) -> None:
        """``newest_t``: each athlete's newest device time after a batch received at ``now``.

        A late or reordered batch lags for a while and the next live sample catches up: how
        far it caught up is remembered as the device's jitter, and a lag that jumps after a
        silence counts as a delay. A slow clock (samples stamped 1 s apart, sent 1.4-2 s
        apart) falls behind on every sample and never catches up.
        """
        c = self._col
        lag = now - newest_t
        base = np.fmin(c["clk_base"][p], lag)
        elapsed = np.nan_to_num(now - c["clk_at"][p])
        recent = np.fmin(c["clk_recent"][p] + CLOCK_LEAK * np.minimum(elapsed, CLOCK_GAP_S), lag)
        # a slow clock never catches up, and its lag does not leap after a silence
        moved = np.nan_to_num(c["clk_lag"][p] - lag)
        moved = np.where(elapsed > CLOCK_GAP_S, np.abs(moved), moved)
        jitter = np.maximum(c["clk_jitter"][p] * np.exp(-elapsed / CLOCK_JITTER_S), moved)
        c["clk_base"][p], c["clk_recent"][p], c["clk_at"][p] = base, recent, now
        c["clk_lag"][p], c["clk_jitter"][p] = lag, jitter
        behind = recent - base
        line = CLOCK_DRIFT_S + 0.5 * jitter
        streak = np.where(behind > line, np.minimum(c["clk_n"][p], STREAK_MAX) + 1, 0)
        c["clk_n"][p] = streak
        self._raise(
            "clock_drift", p, streak >= CLOCK_BATCHES, newest_t, out, seq=seq,
            window=(now - behind / CLOCK_LEAK, np.full(len(p), now)), behind_s=behind, limit_s=line,
            best_lag_s=base, lag_s=lag, received=now,
        )  # fmt: skip
