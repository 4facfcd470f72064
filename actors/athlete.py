"""What segment boards know of an athlete besides their name: sex and age group (docs/segments.md).

An athlete may give their sex and birth year in their profile. Both are personal: only their own account
shows them, and efforts carry the sex and the age group, never the birth year.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["SEXES", "AGE_GROUPS", "BIRTH_YEAR_FIRST", "YOUNGEST", "age_group", "birth_year_problem"]

SEXES = ("men", "women")  # the races' vocabulary (engine.race.SEXES, less its "unknown")
# Strava's groups, by the age an athlete reaches in the year: the lowest age of each, and its name.
_GROUPS = ((0, "0_19"), (20, "20_24"), (25, "25_34"), (35, "35_44"), (45, "45_54"), (55, "55_64"), (65, "65_69"),
           (70, "70_74"), (75, "75_plus"))  # fmt: skip
AGE_GROUPS = tuple(name for _, name in _GROUPS)
BIRTH_YEAR_FIRST = 1900
YOUNGEST = 5  # a birth year is at most this many years before the current one


def _year(at: float) -> int:
    return datetime.fromtimestamp(at, UTC).year


def birth_year_problem(birth_year: object, now: float) -> str | None:
    """Why ``birth_year`` is no birth year at ``now`` (unix seconds), or None when it is one."""
    latest = _year(now) - YOUNGEST
    if isinstance(birth_year, bool) or not isinstance(birth_year, int) or not BIRTH_YEAR_FIRST <= birth_year <= latest:
        return f"birth_year is a year from {BIRTH_YEAR_FIRST} to {latest}"
    return None


def age_group(birth_year: int | None, at: float) -> str | None:
    """The age group of someone born in ``birth_year`` in the UTC year of ``at``: the age they reach that year
    (so one born in 1990 is 35 all through 2025). None without a birth year, or before it."""
    if birth_year is None or _year(at) < birth_year:
        return None
    age = _year(at) - birth_year
    return next(name for lowest, name in reversed(_GROUPS) if age >= lowest)
