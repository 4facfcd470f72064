"""Comparative reports: a period against the same period a year before, and the athlete against
professionals' reference tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["ELITE_FTP_W_PER_KG", "REFERENCE_KG", "WORLD_RECORDS_S", "against_professionals", "period_totals"]

# World Athletics outdoor records, as ratified by the end of 2024 (worldathletics.org/records):
# 5000 m Cheptegei 12:35.36 (2020) / Tsegay 14:00.21 (2023); 10,000 m Cheptegei 26:11.00 (2020) /
# Chebet 28:54.14 (2024); half marathon Kiplimo 57:31 (2021) / Gidey 1:02:52 (2021); marathon
# Kiptum 2:00:35 (2023) / Chepngetich 2:09:56 (2024).
WORLD_RECORDS_S = {
    "5k": {"men": 755.36, "women": 840.21},
    "10k": {"men": 1571.00, "women": 1734.14},
    "half": {"men": 3451.0, "women": 3772.0},
    "marathon": {"men": 7235.0, "women": 7796.0},
}
# The top ("world class") row of Coggan's power profile for functional threshold power, W/kg
# (Allen & Coggan, *Training and Racing with a Power Meter*, 2nd ed. 2010, table 3.1).
ELITE_FTP_W_PER_KG = {"men": 6.40, "women": 5.69}
REFERENCE_KG = 75.0  # Arena does not ask the weight: watts are read as a 75 kg rider's


def period_totals(days: Mapping[int, Sequence[float]], first: int, last: int) -> dict:
    """Load, moving time, distance and workouts summed over the days ``first``..``last`` (ordinals)."""
    sums = [0.0, 0.0, 0.0, 0.0]
    for day in range(first, last + 1):
        row = days.get(day)
        if row is not None:
            for i in range(4):
                sums[i] += row[i]
    return {"load": sums[0], "moving_s": sums[1], "distance_m": sums[2], "workouts": int(sums[3])}


def against_professionals(predicted: Sequence[Mapping], best_efforts: Mapping[str, float], ftp_w: float | None) -> dict:
    """Each race distance: the athlete's best and predicted time against the world records (the
    share of the record's speed they run at); the eFTP against an elite's (as a 75 kg rider)."""
    running = []
    by_race = {row["race"]: row for row in predicted}
    for race, records in WORLD_RECORDS_S.items():
        best = best_efforts.get(race)
        guess = by_race.get(race)
        mine = best if best is not None else (guess["seconds"] if guess else None)
        running.append({
            "race": race,
            "best_s": best,
            "predicted_s": guess["seconds"] if guess else None,
            "world_record_s": records,
            "share_of_record_speed": {sex: record / mine for sex, record in records.items()} if mine else None,
        })  # fmt: skip
    riding = None
    if ftp_w:
        per_kg = ftp_w / REFERENCE_KG
        riding = {
            "ftp_w": ftp_w,
            "w_per_kg_at_reference": per_kg,
            "reference_kg": REFERENCE_KG,
            "elite_w_per_kg": ELITE_FTP_W_PER_KG,
            "share_of_elite": {sex: per_kg / elite for sex, elite in ELITE_FTP_W_PER_KG.items()},
        }
    return {"running": running, "riding": riding}
