"""The consent texts an athlete agrees to, each with a version (GDPR Articles 7 and 9).

A consent is recorded with the version of the text the athlete was shown; a client that shows an
older text gets 409 and shows the new one. Changing a text means a new version here: consents
given to an older one stay recorded with the version they were given to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from serve.context import Arena

__all__ = ["CONSENTS", "current", "require_health_consent"]

CONSENTS: dict[str, dict[str, str]] = {
    "health": {
        "version": "2026-12-01",
        "text": (
            "Arena may store and process my heart rate, heart-rate variability and body weight, which are "
            "health data, to show my training load, score my workouts and races, and check fair play. "
            "Without this consent Arena does not store them: they are dropped from what my devices and files "
            "send. I can withdraw it at any time; Arena then stops storing them at once and removes those it holds."
        ),
    },
    "marketing": {
        "version": "2026-12-01",
        "text": (
            "Arena may send me news and offers from the brand and its partners, chosen by my region, sports "
            "and time zone. I can withdraw this consent at any time, from my settings or any message's link."
        ),
    },
}


def current(purpose: str) -> str:
    return CONSENTS[purpose]["version"]


async def require_health_consent(arena: Arena, user_id: str) -> None:
    """409 unless the athlete consented to health data: what they send of it would not be stored."""
    from actors.account import Account
    from serve.problems import Problem

    if not (await arena.ref(Account, user_id).ask(Account.consents))["health"]:
        raise Problem(409, "heart rates are health data: give your consent first (PUT /me/consents/health)")
