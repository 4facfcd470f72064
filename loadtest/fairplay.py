"""Fair play, measured: honest fields with the noise real races have, cheaters of every kind, a scorer.

A field of ``--athletes`` runners or riders races for ``--minutes``, one sample a second
each, and its telemetry goes through Arena's own race entity (``actors.race.Race.ingest``:
packed batches, ``decode``, ``RaceBoard.ingest``) in the batches a gateway would send:
every second's arrivals, shuffled, with latency, dropouts whose backlog arrives later
(after the live samples for some), MQTT redeliveries, strap and meter dropouts, tunnels
without a fix, wandering GPS error and multipath jumps, indoor athletes, drafting packs,
sprints, elites near world-record pace and riders above 6 W/kg for five minutes.

``--cheaters`` of the field cheat, one kind each, from a random moment, with random
parameters: a vehicle, a teleport, a heart-rate replay (frozen or looped), an
under-declared weight, an inflated distance (outdoors or indoors), a slow device clock,
a resting heart rate at race effort. The scorer prints, per kind, precision, recall and
the time from the moment the evidence was conclusive (from the generator's ground truth)
to the flag. Run: ``.venv/bin/python -m loadtest.fairplay --athletes 2000 --minutes 30``;
``--explain KIND...`` lists each cheater of those kinds flagged more than 5 s after the evidence,
or missed, with what they carried and the seconds that arrived late.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from actors.race import Race
from engine.telemetry import empty, encode

CHEATS = ("vehicle", "teleport", "hr_replay", "wkg", "distance", "clock", "hr_decoupled")
RULE_KIND = {
    "speed": "vehicle",
    "acceleration": "vehicle",
    "vehicle": "vehicle",
    "gps_jump": "teleport",
    "hr_replay": "hr_replay",
    "wkg_5min": "wkg",
    "wkg_20min": "wkg",
    "distance": "distance",
    "clock_drift": "clock",
    "time_regression": "clock",
    "seq_regression": "clock",
    "hr_decoupled": "hr_decoupled",
}
T0 = 1_767_000_000.0
LAT0, LON0 = 45.07, 7.69
M_PER_DEG = 111_195.0
G = 9.81


@dataclass
class Field:
    """Each athlete's body, devices and (for cheaters) the cheat, as arrays over the field."""

    sport: str
    n: int
    rng: np.random.Generator
    cheat: np.ndarray  # index in CHEATS, -1: honest
    onset: np.ndarray  # s after the gun
    conclusive: np.ndarray = field(init=False)  # s after the gun; NaN: not yet
    elite: np.ndarray = field(init=False)
    women: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n, rng = self.n, self.rng
        self.conclusive = np.full(n, np.nan)
        self.elite = rng.random(n) < 0.06
        self.women = rng.random(n) < 0.35
        self.indoor = rng.random(n) < 0.1
        self.has_hr = rng.random(n) < 0.8
        self.has_speed = rng.random(n) < 0.9
        self.has_cadence = rng.random(n) < (0.85 if self.sport == "ride" else 0.6)
        self.has_power = (rng.random(n) < 0.8) if self.sport == "ride" else np.zeros(n, bool)
        self.phase = rng.uniform(0, 1, n)  # where in each second the device samples
        self.weight = np.where(self.women, rng.uniform(48, 72, n), rng.uniform(57, 88, n))
        self.declared = self.weight + rng.normal(0, 0.7, n)
        self.hr_rest = np.where(self.elite, rng.uniform(38, 52, n), rng.uniform(48, 72, n))
        self.hr_max = rng.uniform(175, 200, n)
        self.hr_tau = rng.uniform(20, 45, n)
        self.hr_noise = rng.uniform(0.8, 2.0, n)
        self.gps_sigma = rng.uniform(2.0, 5.0, n)
        self.calibration = rng.uniform(0.99, 1.02, n)
        self.heading = rng.uniform(0, 2 * np.pi, n)
        if self.sport == "run":
            pace = np.where(self.elite, rng.uniform(5.6, 6.2, n), rng.uniform(2.6, 4.3, n))
            self.pace = np.where(self.women & ~self.elite, pace * 0.92, pace)
        else:
            ftp = np.where(self.elite, rng.uniform(5.3, 5.9, n), rng.uniform(2.5, 4.2, n))
            self.ftp = np.where(self.women, ftp * 0.88, ftp) * self.weight  # W held for an hour
            self.cda = rng.uniform(0.28, 0.36, n)
            self.five_min = np.where(self.women, rng.uniform(5.6, 6.3, n), rng.uniform(6.2, 7.15, n))
            self.pack = np.where(rng.random(n) < 0.5, rng.integers(0, 12, n), -1)
            self.pack_speed = rng.uniform(11.0, 13.5, 12)
            self.draft = rng.uniform(0.55, 0.75, n)
            self.grade_period = rng.uniform(300, 1200, n)
            self.grade_phase = rng.uniform(0, 2 * np.pi, n)


def make_field(sport: str, n: int, seconds: int, cheaters: float, seed: int) -> Field:
    rng = np.random.default_rng(seed)
    count = int(round(n * cheaters))
    cheat = np.full(n, -1)
    who = rng.choice(n, count, replace=False)
    kinds = [i for i, k in enumerate(CHEATS) if sport == "ride" or k != "wkg"]  # W/kg caps are for riders
    cheat[who] = np.array(kinds)[np.arange(count) % len(kinds)]
    onset = rng.uniform(120, max(180, seconds - 480), n)
    fld = Field(sport, n, rng, cheat, onset)
    fld.cheat_param = rng.uniform(0, 1, n)  # each kind draws its own parameters from this
    fld.cheat_alt = rng.random(n) < 0.5  # frozen or looped, outdoors or indoors, ...
    is_ = {k: cheat == i for i, k in enumerate(CHEATS)}
    fld.is_ = is_
    fld.lying_from = np.where(is_["wkg"], 0.0, onset)  # an under-declared weight is a lie from the start
    # an inflation cheat indoors needs what indoor distance is checked against (the premise)
    indoor_cheat = is_["distance"] & (rng.random(n) < 0.3)
    fld.indoor = np.where(is_["distance"], indoor_cheat, fld.indoor)
    if sport == "ride":
        fld.has_power |= indoor_cheat
        wkg = is_["wkg"]
        fld.has_power |= wkg
        fld.declared = np.where(wkg, fld.weight * rng.uniform(0.72, 0.86, n), fld.declared)
    else:
        fld.has_cadence |= indoor_cheat
    fld.has_hr |= is_["hr_replay"] | is_["hr_decoupled"]
    return fld


def _solve_speed(power: np.ndarray, v: np.ndarray, mass: np.ndarray, cda: np.ndarray, grade: np.ndarray) -> np.ndarray:
    """One second of riding: the speed after the power, drag, rolling and the slope act on the rider."""
    v = np.maximum(v, 1.0)
    resist = 0.5 * 1.2 * cda * v**3 + 0.004 * mass * G * v + mass * G * grade * v
    return np.clip(v + (0.97 * power - resist) / (mass * v), 0.5, 25.0)


class Simulation:
    """Second by second: the bodies, the devices, and when each sample reaches the race."""

    def __init__(self, fld: Field, seconds: int) -> None:
        self.f, self.seconds = fld, seconds
        n, rng = fld.n, fld.rng
        self.v = np.zeros(n)
        self.true_d = np.zeros(n)
        self.rep_d = np.zeros(n)
        self.x = np.zeros(n)
        self.y = np.zeros(n)
        self.ou = np.zeros(n)
        self.hr = fld.hr_rest + rng.uniform(20, 40, n)
        self.gps_err = rng.normal(0, 1, (2, n)) * fld.gps_sigma
        self.multipath = np.zeros((3, n))  # offset x, y and seconds left
        self.tunnel = np.zeros(n)
        self.dropout = np.zeros(n)  # seconds of device silence left
        self.backlog_after = np.zeros(n, bool)  # this dropout's backlog comes after the live samples
        self.hr_off = np.zeros(n)  # seconds of strap dropout left
        self.surge = np.zeros(n)
        self.surge_left = np.full(n, -600.0)
        self.sprint = np.zeros(n)  # seconds of a sprint left
        self.seq = np.zeros(n, np.int64)
        self.frozen = np.zeros(n)
        self.replayed = np.zeros(n, np.int64)  # readings a heart-rate replay has sent
        self.hr_history = np.zeros((n, 100))
        self.clock_k = np.zeros(n)  # samples sent since a slow clock began
        self.clock_next = np.full(n, np.inf)
        self.power_s = np.zeros((n, seconds))  # per second, for the W/kg ground truth
        self.arrival = np.full((n, seconds), np.nan, np.float32)  # when each second's sample reached the race
        self.excess = np.zeros(n)
        self.arrivals: dict[int, list[np.ndarray]] = defaultdict(list)

    def run_second(self, k: int) -> None:
        f, rng, n = self.f, self.f.rng, self.f.n
        is_ = f.is_
        active = k >= f.onset
        self.ou += -0.02 * self.ou + rng.normal(0, 0.012, n)
        starting = min(1.0, (k + 1) / 8)  # from the line to pace in ~8 s
        finale = k > self.seconds - rng.uniform(60, 120)
        # surges: elites near record pace, everyone's finishing sprint
        # a surge at most every 10 minutes: an elite's is five minutes above 6 W/kg, and no body does
        # two back to back (the caps are what the best do once)
        begin = (self.surge_left <= -600) & (rng.random(n) < 0.002)
        self.surge = np.where(begin, rng.uniform(1.08, 1.14, n), self.surge)
        long_ = np.where(f.elite & (f.sport == "ride"), 330.0, 200.0)
        self.surge_left = np.where(begin, rng.uniform(60, long_, n), self.surge_left - 1)
        surge = np.where(self.surge_left > 0, self.surge, 1.0)
        if f.sport == "run":
            target = f.pace * (1 + self.ou) * surge * np.where(finale, 1.25, 1.0)
            target = np.minimum(target, np.where(f.elite, 7.6, 6.0))
            self.v = self.v + np.clip(target * starting - self.v, -1.0, 1.5)
            intensity = self.v / f.pace * 0.88
            power = np.zeros(n)
            cadence = np.where(f.has_cadence, 150 + 7 * self.v + rng.normal(0, 2, n), 0)
        else:
            grade = 0.012 * np.sin(2 * np.pi * k / f.grade_period + f.grade_phase)
            mass = f.weight + 8
            sprint = (rng.random(n) < 0.0015) & ~f.elite  # an elite's hard minutes are the five-minute efforts
            self.sprint = np.where(sprint, rng.uniform(10, 20, n), self.sprint - 1)
            effort = np.where(self.sprint > 0, 2.8, 0.85 * surge) * (1 + self.ou) * np.where(finale, 1.15, 1)
            # elites: five minutes above 6 W/kg (under the caps of 7.5 and 6.6 W/kg)
            five = f.elite & (self.surge_left > 0) & (self.sprint <= 0)
            effort = np.where(five, f.five_min * f.weight / f.ftp * rng.uniform(0.99, 1.01, n), effort)
            solo_power = f.ftp * effort
            pack_v = f.pack_speed[np.maximum(f.pack, 0)] * (1 + 0.3 * self.ou)
            need = (
                0.5 * 1.2 * f.cda * f.draft * pack_v**3 + 0.004 * mass * G * pack_v + mass * G * grade * pack_v
            ) / 0.97
            in_pack = (f.pack >= 0) & (self.sprint <= 0) & (need < 0.9 * f.ftp)  # dropped when it is too fast
            coast = in_pack & (rng.random(n) < 0.08)
            pack_power = np.where(coast, 0.0, np.maximum(need + rng.normal(0, 20, n), 0))
            power = np.where(in_pack, pack_power, solo_power) * starting
            self.v = np.where(
                in_pack, self.v + np.clip(pack_v * starting - self.v, -1.0, 1.2),
                _solve_speed(power, self.v, mass, f.cda, grade),
            )  # fmt: skip
            intensity = np.maximum(power, 0.6 * f.ftp * starting) / f.ftp
            cadence = np.where(f.has_cadence & (power > 0), rng.uniform(82, 96, n), 0)

        # cheats that change the body's motion or effort
        veh = is_["vehicle"] & active
        if veh.any():
            top = np.where(f.sport == "run", 8 + 20 * f.cheat_param, 14 + 15 * f.cheat_param)
            accel = 1.5 + 2 * f.cheat_param
            self.v = np.where(veh, np.minimum(self.v + accel, top), self.v)
            intensity = np.where(veh, 0.15, intensity)
            cadence = np.where(veh, np.where(f.cheat_alt, 0, rng.uniform(5, 40, n)), cadence)
            power = np.where(veh & f.has_power, np.where(f.cheat_alt, rng.uniform(0, 15, n), 0), power)
            newly = veh & np.isnan(f.conclusive) & (k >= f.onset + 10)
            f.conclusive = np.where(newly, k, f.conclusive)
        wkg = is_["wkg"] & active
        if wkg.any():
            cap5 = np.where(f.women, 6.6, 7.5)
            cap20 = np.where(f.women, 5.7, 6.4)
            short = f.cheat_alt & (k < f.onset + 360 + 120 * f.cheat_param)
            long_ = ~f.cheat_alt & (k < f.onset + 1500)
            over = np.where(short, cap5 * (1.03 + 0.15 * f.cheat_param), cap20 * (1.04 + 0.12 * f.cheat_param))
            power = np.where(wkg & (short | long_), over * f.declared * rng.uniform(0.97, 1.03, n), power)
        if f.sport == "ride":
            self.power_s[:, k] = np.where(f.has_power, power, 0)

        # heart
        if f.sport == "run":
            intensity = np.where(self.v < 1.0, 0.2, intensity)
        target = f.hr_rest + (f.hr_max - f.hr_rest) * np.clip(0.35 + 0.55 * intensity, 0.25, 0.98)
        self.hr += (target - self.hr) / f.hr_tau
        beat = np.round(self.hr + rng.normal(0, f.hr_noise, n))
        dec = is_["hr_decoupled"] & active
        beat = np.where(dec, np.round(f.hr_rest + 8 + 6 * f.cheat_param + rng.normal(0, 1.5, n)), beat)
        f.conclusive = np.where(dec & np.isnan(f.conclusive) & (k >= f.onset + 3), k, f.conclusive)
        rep = is_["hr_replay"] & active
        if rep.any():
            loop = np.round(30 + 60 * f.cheat_param).astype(np.int64)
            at = k - f.onset
            frozen = f.cheat_alt
            first = rep & (at < 1)
            self.frozen = np.where(first, np.round(self.hr), self.frozen)
            replayed = self.hr_history[np.arange(n), (k - loop) % 100]
            replayed_beat = np.where(frozen, self.frozen, replayed)
        self.hr_off = np.where((self.hr_off <= 0) & (rng.random(n) < 0.002), rng.uniform(5, 60, n), self.hr_off - 1)
        beat = np.where(f.has_hr & ((self.hr_off <= 0) | dec), np.clip(beat, 30, 230), 0)
        if rep.any():
            beat = np.where(rep, replayed_beat, beat)  # a replay repeats its gaps too
            # conclusive at the 20th replayed reading (a gap replayed is no reading: no evidence)
            self.replayed += rep & (beat > 0)
            f.conclusive = np.where(rep & np.isnan(f.conclusive) & (self.replayed >= 20), k, f.conclusive)
        self.hr_history[:, k % 100] = beat

        # where the body is, and what the devices say
        step = self.v
        self.true_d += step
        turn = rng.random(n) < step / 700
        f.heading += rng.normal(0, 0.01, n) + np.where(turn, rng.choice([-1, 1], n) * rng.uniform(0.5, 1.6, n), 0)
        tele = is_["teleport"] & (k == np.floor(f.onset))
        jump = np.where(tele, 300 + 2700 * f.cheat_param, 0.0)
        self.x += (step + jump) * np.cos(f.heading)
        self.y += (step + jump) * np.sin(f.heading)
        f.conclusive = np.where(tele, k, f.conclusive)
        inflate = np.where(is_["distance"] & active, 1.12 + 0.38 * f.cheat_param, 1.0)
        gained = step * f.calibration * inflate + jump
        self.rep_d += gained
        self.excess += np.where(is_["distance"] & active, step * f.calibration * (inflate - 1), 0)
        f.conclusive = np.where(
            is_["distance"] & np.isnan(f.conclusive) & (self.excess >= 100), k, f.conclusive
        )  # fmt: skip
        speed = np.where(f.has_speed, np.maximum(step * inflate + rng.normal(0, 0.2, n), 0), np.nan)

        rho = 0.95
        self.gps_err = rho * self.gps_err + rng.normal(0, 1, (2, n)) * f.gps_sigma * math.sqrt(1 - rho**2)
        begin = (self.multipath[2] <= 0) & (rng.random(n) < 0.002)
        angle = rng.uniform(0, 2 * np.pi, n)
        size = rng.uniform(20, 80, n)
        self.multipath[0] = np.where(begin, size * np.cos(angle), self.multipath[0])
        self.multipath[1] = np.where(begin, size * np.sin(angle), self.multipath[1])
        self.multipath[2] = np.where(begin, rng.uniform(2, 8, n), self.multipath[2] - 1)
        mp = self.multipath[2] > 0
        gx = self.x + self.gps_err[0] + np.where(mp, self.multipath[0], 0)
        gy = self.y + self.gps_err[1] + np.where(mp, self.multipath[1], 0)
        self.tunnel = np.where((self.tunnel <= 0) & (rng.random(n) < 0.0005), rng.uniform(15, 90, n), self.tunnel - 1)
        no_fix = f.indoor | (self.tunnel > 0)
        lat = np.where(no_fix, np.nan, LAT0 + gy / M_PER_DEG)
        lon = np.where(no_fix, np.nan, LON0 + gx / (M_PER_DEG * math.cos(math.radians(LAT0))))

        # when the sample is taken (device clock) and when it reaches the race
        clock = is_["clock"] & active
        real_t = k + f.phase
        device_t = real_t.copy()
        sends = np.ones(n, bool)
        if clock.any():
            rate = 0.5 + 0.21 * f.cheat_param  # device seconds per real second: sent 1.4-2 s apart
            first = clock & np.isinf(self.clock_next)
            self.clock_next = np.where(first, real_t, self.clock_next)
            sends = np.where(clock, self.clock_next <= real_t + 1e-9, True)
            sent = clock & sends
            device_t = np.where(clock, np.floor(f.onset) + f.phase + self.clock_k, device_t)
            self.clock_k = np.where(sent, self.clock_k + 1, self.clock_k)
            self.clock_next = np.where(sent, self.clock_next + 1 / rate, self.clock_next)
            drift = real_t - device_t
            f.conclusive = np.where(clock & np.isnan(f.conclusive) & (drift >= 5), k, f.conclusive)
        latency = np.minimum(rng.lognormal(math.log(0.35), 0.6, n), 4.0)
        start_drop = (self.dropout <= 0) & (rng.random(n) < 0.0015)
        self.backlog_after = np.where(start_drop, rng.random(n) < 0.3, self.backlog_after)
        self.dropout = np.where(start_drop, rng.uniform(5, 90, n), self.dropout - 1)
        offline = self.dropout > 0
        arrive = real_t + latency
        back = real_t + self.dropout + latency + np.where(self.backlog_after, rng.uniform(3, 20, n), 0)
        arrive = np.where(offline, back, arrive)

        who = np.flatnonzero(sends)
        self.arrival[who, k] = arrive[who]
        self.seq[who] += 1
        batch = empty(len(who))
        batch["entry"] = who
        batch["seq"] = self.seq[who]
        batch["t"] = T0 + device_t[who]
        batch["distance"] = self.rep_d[who]
        batch["lat"], batch["lon"] = lat[who], lon[who]
        batch["speed"] = speed[who]
        batch["hr"] = beat[who]
        batch["power"] = np.clip(np.round(np.where(f.has_power, power, 0)[who]), 0, 65_535)
        batch["cadence"] = np.clip(np.round(cadence[who]), 0, 65_535)
        again = rng.random(len(who)) < 0.03  # MQTT redelivery
        self._deliver(batch, arrive[who])
        self._deliver(batch[again], arrive[who][again] + rng.uniform(0.5, 5, int(again.sum())))

    def _deliver(self, batch: np.ndarray, arrive: np.ndarray) -> None:
        seconds = np.floor(arrive).astype(np.int64)
        order = np.argsort(seconds, kind="stable")
        bounds = np.flatnonzero(np.diff(seconds[order])) + 1
        for part in np.split(order, bounds):
            if len(part):
                self.arrivals[int(seconds[part[0]])].append(batch[part])

    def available(self) -> np.ndarray:
        """When the sample that made each case conclusive reached the race (the next one sent, if
        none was sent that second): evidence cannot be acted on before it arrives."""
        f = self.f
        out = np.full(f.n, np.nan)
        for i in np.flatnonzero(~np.isnan(f.conclusive)):
            k = int(f.conclusive[i])
            sent = np.flatnonzero(~np.isnan(self.arrival[i, k:]))
            if len(sent):
                out[i] = max(f.conclusive[i], float(np.min(self.arrival[i, k : k + sent[0] + 1][sent[:1]])))
        return out

    def wkg_truth(self) -> None:
        """When each W/kg cheat became conclusive: the exact rolling mean over the cap, from the
        seconds the rider really produced (seconds before the gun count 0 W)."""
        f = self.f
        rows = np.flatnonzero(f.is_["wkg"])
        for i in rows:
            energy = np.concatenate(([0.0], np.cumsum(self.power_s[i])))
            for span, caps in ((300, (7.5, 6.6)), (1200, (6.4, 5.7))):
                k = np.arange(self.seconds)
                mean = (energy[k + 1] - energy[np.maximum(k + 1 - span, 0)]) / span
                over = np.flatnonzero(mean / f.declared[i] > caps[int(f.women[i])])
                if len(over) and not (f.conclusive[i] <= over[0]):
                    f.conclusive[i] = over[0]


@dataclass
class Outcome:
    sport: str
    fld: Field
    flags: list[dict]
    samples: int
    seconds: float
    sim: Simulation


def run(sport: str, athletes: int, minutes: float, cheaters: float, seed: int, progress: bool = True) -> Outcome:
    """One race through the race entity: the field joins, the gun goes, each second's arrivals are a batch."""
    seconds = int(minutes * 60)
    fld = make_field(sport, athletes, seconds, cheaters, seed)
    sim = Simulation(fld, seconds)
    race = Race(f"fairplay-{sport}")
    race._now = T0 - 600
    race.create("organizer", {"name": "fair play", "sport": sport, "kind": "time", "duration_s": seconds + 600})
    race.open("organizer")
    race.join_many(
        [
            {
                "user_id": f"athlete-{i}",
                "name": f"athlete {i}",
                "weight_kg": round(float(fld.declared[i]), 1) if sport == "ride" else None,
                "sex": "women" if fld.women[i] else "men",
            }
            for i in range(athletes)
        ]
    )
    race._now = T0
    race.start("organizer")
    samples, ingest_s, shown = 0, 0.0, time.perf_counter()
    for k in range(seconds + 150):
        if k < seconds:
            sim.run_second(k)
        parts = sim.arrivals.pop(k, None)
        if parts:
            batch = np.concatenate(parts)
            batch = batch[fld.rng.permutation(len(batch))]
            race._now = T0 + k + 1
            data = encode(batch)
            begun = time.perf_counter()
            race.ingest(data)
            ingest_s += time.perf_counter() - begun
            samples += len(batch)
        if progress and time.perf_counter() - shown > 10:
            shown = time.perf_counter()
            print(f"  {sport}: {k}/{seconds} s simulated, {samples:,} samples ingested", flush=True)
    sim.wkg_truth()
    fld.available = sim.available()
    return Outcome(sport, fld, race.board.flags(), samples, ingest_s, sim)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


def score(outcome: Outcome) -> list[dict]:
    """Per cheat kind: precision, recall and time to flag (from the conclusive moment)."""
    fld = outcome.fld
    first: dict[int, float] = {}
    by_kind: dict[str, set[int]] = defaultdict(set)
    fair: dict[str, set[int]] = defaultdict(set)  # flagged by a rule of this kind, and rightly
    for flag in outcome.flags:
        i, at = flag["participant"], flag["at"] - T0
        kind = RULE_KIND[flag["rule"]]
        by_kind[kind].add(i)
        cheating = fld.cheat[i] >= 0 and at >= fld.lying_from[i]
        if cheating:
            fair[kind].add(i)
            first[i] = min(first.get(i, math.inf), at)
    rows = []
    for index, kind in enumerate(CHEATS):
        if kind == "wkg" and outcome.sport != "ride":
            continue
        cheats = np.flatnonzero(fld.cheat == index)
        decided = [i for i in cheats if not math.isnan(fld.conclusive[i])]
        caught = [i for i in decided if i in first]
        delays = [first[i] - fld.available[i] for i in caught]
        flagged = by_kind.get(kind, set())
        rows.append(
            {
                "kind": kind,
                "cheaters": len(decided),
                "caught": len(caught),
                "recall": len(caught) / len(decided) if decided else math.nan,
                "flagged": len(flagged),
                "precision": len(fair.get(kind, set())) / len(flagged) if flagged else 1.0,
                "ttf_p50": _percentile(delays, 50),
                "ttf_p95": _percentile(delays, 95),
                "ttf_max": max(delays) if delays else math.nan,
            }
        )
    return rows


def report(outcome: Outcome) -> str:
    fld, rows = outcome.fld, score(outcome)
    honest = fld.cheat < 0
    flagged = {f["participant"] for f in outcome.flags}
    wrong = sorted(i for i in flagged if honest[i] or any(
        f["participant"] == i and f["at"] - T0 < fld.lying_from[i] for f in outcome.flags
    ))  # fmt: skip
    elites = [i for i in wrong if fld.elite[i]]
    lines = [
        f"\n{outcome.sport}: {fld.n:,} athletes, {int(honest.sum()):,} honest ({int(fld.elite[honest].sum())} elites),"
        f" {outcome.samples:,} samples through Race.ingest in {outcome.seconds:.1f} s"
        f" ({outcome.samples / max(outcome.seconds, 1e-9):,.0f} samples/s)",
        f"{'kind':<13}{'cheaters':>9}{'caught':>8}{'recall':>8}{'flagged':>9}{'precision':>10}"
        f"{'ttf p50':>9}{'ttf p95':>9}{'ttf max':>9}",
    ]
    for r in rows:
        lines.append(
            f"{r['kind']:<13}{r['cheaters']:>9}{r['caught']:>8}{r['recall']:>8.3f}{r['flagged']:>9}"
            f"{r['precision']:>10.3f}{r['ttf_p50']:>9.1f}{r['ttf_p95']:>9.1f}{r['ttf_max']:>9.1f}"
        )
    delays = [d for d in (_ttf(outcome, i) for i in range(fld.n)) if d is not None]
    lines.append(
        f"all kinds: time to flag p50 {_percentile(delays, 50):.1f} s, p95 {_percentile(delays, 95):.1f} s;"
        f" honest athletes flagged: {len(wrong)} of {int(honest.sum())} (elites: {len(elites)})"
    )
    for i in wrong[:20]:
        rules = [
            (f["rule"], f["evidence"].get("source"), round(f["at"] - T0))
            for f in outcome.flags
            if f["participant"] == i
        ]
        what = "honest" if honest[i] else f"{CHEATS[fld.cheat[i]]} from {fld.onset[i]:.0f} s"
        lines.append(f"  wrongly flagged: athlete {i} ({what}{', elite' if fld.elite[i] else ''}): {rules}")
    return "\n".join(lines)


def explain(outcome: Outcome, kinds: list[str], slower_than: float = 5.0) -> str:
    """Each cheater of ``kinds`` flagged later than ``slower_than`` s after the evidence, or missed:
    what they had on, the cheat's parameters, when it became conclusive and what flagged it."""
    fld, sim = outcome.fld, outcome.sim
    lines = []
    for index, kind in enumerate(CHEATS):
        if kind not in kinds:
            continue
        for i in np.flatnonzero(fld.cheat == index):
            delay = _ttf(outcome, int(i))
            if math.isnan(fld.conclusive[i]) or (delay is not None and delay <= slower_than):
                continue
            devices = [name for name in ("hr", "power", "cadence", "speed") if getattr(fld, f"has_{name}")[i]]
            k = int(fld.conclusive[i])
            late = sim.arrival[i, max(k - 30, 0) : k + 60] - np.arange(max(k - 30, 0), min(k + 60, sim.seconds))
            flags = [
                (f["rule"], f["evidence"].get("source"), round(f["at"] - T0, 1))
                for f in outcome.flags
                if f["participant"] == i
            ]
            lines.append(
                f"  {kind} athlete {i}: {'missed' if delay is None else f'flagged {delay:.1f} s late'};"
                f" param {fld.cheat_param[i]:.2f}, alt {bool(fld.cheat_alt[i])}, onset {fld.onset[i]:.0f} s,"
                f" conclusive {k} s, arrived {fld.available[i]:.1f} s;"
                f" {'indoor' if fld.indoor[i] else 'outdoor'}, {'elite, ' if fld.elite[i] else ''}has {devices};"
                f" seconds from conclusive -30..+60 that arrived > 3 s late or not at all:"
                f" {[int(j) - min(k, 30) for j in np.flatnonzero(~(late <= 3))]}; flags {flags}"
            )
    return "\n".join(lines)


def _ttf(outcome: Outcome, i: int) -> float | None:
    fld = outcome.fld
    if fld.cheat[i] < 0 or math.isnan(fld.conclusive[i]):
        return None
    ats = [f["at"] - T0 for f in outcome.flags if f["participant"] == i and f["at"] - T0 >= fld.lying_from[i]]
    return min(ats) - fld.available[i] if ats else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--athletes", type=int, default=2000)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--cheaters", type=float, default=0.05, help="share of the field that cheats")
    parser.add_argument("--sports", nargs="+", default=["run", "ride"], choices=["run", "ride"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--explain", nargs="*", choices=CHEATS, metavar="KIND",
        help="list each cheater of these kinds (all without one) flagged more than 5 s late, or missed",
    )  # fmt: skip
    args = parser.parse_args()
    for sport in args.sports:
        print(
            f"{sport}: {args.athletes:,} athletes x {args.minutes:g} min, {args.cheaters:.0%} cheating...", flush=True
        )
        outcome = run(sport, args.athletes, args.minutes, args.cheaters, args.seed)
        print(report(outcome), flush=True)
        if args.explain is not None:
            print(explain(outcome, args.explain or list(CHEATS)), flush=True)


if __name__ == "__main__":
    main()
