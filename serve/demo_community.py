"""The community a newcomer meets at once in ``arena run --demo``: clubs with posts, the open club's
next Saturday run (the demo athlete is going), a 30-day challenge with a few club mates in it,
and a week of the demo athlete's training (points, a level and first badges).

Everything goes through the public API as a member would do it, once: ``demo.json`` remembers that
the community was made (``community``), so a restart adds nothing twice. What fails is logged and
the demo race goes on: the clubs are a view of the product, not what the race needs.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import secrets
from collections.abc import Callable
from zoneinfo import ZoneInfo

import httpx

__all__ = ["CLUBS", "MATES", "seed_community"]

log = logging.getLogger(__name__)

# name, sports, city, (lat, lon), visibility, join policy, a first post by the organizer
CLUBS: tuple[tuple[str, list[str], str, tuple[float, float], str, str, str], ...] = (
    (
        "Paris Runners",
        ["run"],
        "Paris",
        (48.8625, 2.2495),
        "public",
        "open",
        "Saturday long run: 18 km from the Porte Dauphine, all paces welcome.",
    ),
    (
        "Bois de Boulogne Riders",
        ["ride"],
        "Paris",
        (48.8566, 2.2450),
        "public",
        "request",
        "Hill repeats at Longchamp on Tuesday evening. Lights on!",
    ),
    (
        "Sunrise Swim Club",
        ["swim"],
        "Boulogne-Billancourt",
        (48.8350, 2.2400),
        "private",
        "request",
        "Pool lanes booked for 6:30 every weekday.",
    ),
)

MATES = ("Ada Akers", "Bo Berg", "Chen Costa", "Dara Diaz")

# The demo athlete's last week, one workout a day: (days ago, km, minutes per km, climb in m)
_WEEK = (
    (6, 5.2, 5.8, 30),
    (5, 8.0, 5.5, 60),
    (4, 6.1, 5.6, 20),
    (3, 10.0, 5.4, 90),
    (2, 5.0, 5.2, 15),
    (1, 12.4, 5.7, 110),
)


async def seed_community(
    http: httpx.AsyncClient,
    state: dict,
    organizer: dict,
    runner: dict,
    announce: Callable[[str], None] = log.info,
) -> None:
    """Make the demo's clubs and the demo athlete's week, unless ``state`` says it was done.
    ``organizer`` and ``runner`` are the two demo accounts' Authorization headers."""
    if state.get("community"):
        return
    clubs = []
    for name, sports, city, (lat, lon), visibility, policy, post in CLUBS:
        body = {
            "name": name,
            "description": f"{name}: the demo's club. Join, post, and see the week's leaderboard.",
            "sports": sports,
            "city": city,
            "region": "Île-de-France",
            "location": {"lat": lat, "lon": lon},
            "location_shown": "area",
            "visibility": visibility,
            "join_policy": policy,
        }
        created = await http.post("/groups", json=body, headers=organizer)
        created.raise_for_status()
        group_id = created.json()["id"]
        clubs.append(group_id)
        (await http.post(f"/groups/{group_id}/posts", json={"text": post}, headers=organizer)).raise_for_status()
    # the demo athlete is in the open club and has asked to join the riders
    (await http.post(f"/groups/{clubs[0]}/join", headers=runner)).raise_for_status()
    (await http.post(f"/groups/{clubs[1]}/join", headers=runner)).raise_for_status()
    await _saturday_run(http, clubs[0], organizer, runner)
    today = dt.datetime.now(dt.UTC).replace(hour=7, minute=0, second=0, microsecond=0)
    for days_ago, km, pace, climb in _WEEK:
        workout = {
            "sport": "run",
            "start": (today - dt.timedelta(days=days_ago)).isoformat(),
            "duration_s": round(km * pace * 60),
            "distance_m": km * 1000,
            "elevation_gain_m": climb,
            "title": f"Morning run, {km:g} km",
            "visibility": "public",
        }
        (await http.post("/workouts", json=workout, headers=runner)).raise_for_status()
    challenge = await _monthly_challenge(http, organizer, runner)
    await _club_mates(http, clubs[0], challenge)
    state["community"] = {"groups": clubs, "challenge": challenge}
    announce(
        f"Demo clubs: {', '.join(c[0] for c in CLUBS)}; a 30-day challenge (/challenges/{challenge}); "
        "the demo athlete has a week of runs behind them"
    )


async def _saturday_run(http: httpx.AsyncClient, club: str, organizer: dict, runner: dict) -> None:
    """The open club's next Saturday long run (08:00 in Paris), with pace groups; the demo athlete is going."""
    today = dt.datetime.now(ZoneInfo("Europe/Paris")).date()
    saturday = today + dt.timedelta(days=(5 - today.weekday()) % 7 or 7)
    event = {
        "title": "Saturday long run",
        "description": "18 km around the Bois de Boulogne, coffee after.",
        "sport": "run",
        "start": f"{saturday.isoformat()}T08:00:00",
        "time_zone": "Europe/Paris",
        "meeting_point": {"lat": 48.8718, "lon": 2.2769, "label": "Porte Dauphine"},
        "pace_groups": [{"label": "5:00/km", "pace_s_per_km": 300}, {"label": "6:00/km", "pace_s_per_km": 360}],
        "capacity": 40,
    }
    created = await http.post(f"/groups/{club}/events", json=event, headers=organizer)
    created.raise_for_status()
    answered = await http.put(
        f"/groups/{club}/events/{created.json()['id']}/rsvp", json={"going": True}, headers=runner
    )
    answered.raise_for_status()


async def _monthly_challenge(http: httpx.AsyncClient, organizer: dict, runner: dict) -> str:
    """100 km on foot in 30 days that began with the demo week (so that week counts, whatever the date),
    open to everyone; the demo athlete is in."""
    first = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=7)
    body = {
        "title": "100 km in 30 days",
        "description": "Run, walk or hike 100 km in 30 days.",
        "goal_type": "distance_m",
        "goal": 100_000,
        "sports": ["run", "walk", "hike"],
        "first_day": first.isoformat(),
        "last_day": (first + dt.timedelta(days=29)).isoformat(),
    }
    created = await http.post("/challenges", json=body, headers=organizer)
    created.raise_for_status()
    challenge_id = created.json()["id"]
    (await http.post(f"/challenges/{challenge_id}/join", headers=runner)).raise_for_status()
    return challenge_id


async def _club_mates(http: httpx.AsyncClient, club: str, challenge: str) -> None:
    """A few club mates, so the club's board and the challenge's have company: each joins the open club
    and the challenge and has run a few times this week. Nobody signs in as them again."""
    rng = random.Random(7)
    now = dt.datetime.now(dt.UTC)
    for name in MATES:
        email = f"{name.split()[0].lower()}@demo.arena.dev"
        password = secrets.token_urlsafe(12)
        registered = await http.post("/accounts", json={"email": email, "password": password, "display_name": name})
        registered.raise_for_status()
        login = await http.post("/auth/login", json={"email": email, "password": password})
        login.raise_for_status()
        mate = {"Authorization": f"Bearer {login.json()['access_token']}"}
        (await http.post(f"/groups/{club}/join", headers=mate)).raise_for_status()
        (await http.post(f"/challenges/{challenge}/join", headers=mate)).raise_for_status()
        for days_ago in sorted(rng.sample(range(1, 7), 3)):
            km = round(rng.uniform(5, 15), 1)
            start = (now - dt.timedelta(days=days_ago)).replace(hour=rng.randint(6, 19), minute=0, microsecond=0)
            workout = {
                "sport": "run",
                "start": start.isoformat(),
                "duration_s": round(km * rng.uniform(4.6, 6.4) * 60),
                "distance_m": km * 1000,
                "title": f"Run with the club, {km:g} km",
                "visibility": "public",
            }
            (await http.post("/workouts", json=workout, headers=mate)).raise_for_status()
