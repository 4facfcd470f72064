"""The data export's archive (GDPR Art. 20, docs/privacy.md): everything Arena holds about one athlete,
as JSON and CSV files and a GPX file per track, in one zip.

``write_archive`` asks each kind that keeps something per athlete (by the athlete's id) and writes
the zip under a temporary name, then renames it: a reader never sees half an archive. Tracks are
fetched and written in batches of ``BATCH``, so a long history costs no more memory than a batch.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import zipfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from actors.access_log import AccessLog
from actors.account import Account
from actors.achievements import Achievements
from actors.challenge import Challenge
from actors.challenge_entries import ChallengeEntries
from actors.challenge_participants import ChallengeParticipants
from actors.device import Device, DeviceOwner
from actors.gear import Gear
from actors.group import Group
from actors.group_event_calendar import EventCalendar
from actors.inbox import Inbox
from actors.my_activity import MyActivity
from actors.paging import MAX_PAGE
from actors.race import Race, RaceEntries
from actors.route import Route
from actors.route_library import RouteLibrary
from actors.route_track import to_gpx
from actors.segment_records import SegmentRecords
from actors.sport_event_entries import SportEventEntries
from actors.subscription import Subscription
from actors.training import Training
from actors.user_groups import UserGroups
from actors.workout import Workout
from engine.errors import EngineError
from serve.api.races import _cell as csv_cell  # OWASP CSV injection: one rule for every CSV Arena writes
from serve.api.workouts import _TRACK_POINTS  # what an import keeps of a file's track

__all__ = ["BATCH", "WORKOUT_COLUMNS", "write_archive"]

BATCH = 50
WORKOUT_COLUMNS = ("id", "start", "sport", "title", "description", "elapsed_s", "moving_s", "distance_m",
                   "elevation_gain_m", "pace_s_per_km", "avg_hr", "max_hr", "avg_power", "calories", "indoor",
                   "visibility", "source", "track")  # fmt: skip

_DETAIL = ("splits", "kudos", "comments", "result")  # of Workout.full, beside the summary: a race's result
_RACE_FIELDS = ("id", "status", "name", "sport", "kind", "target_m", "duration_s", "start_at")
README = """\
Arena: everything Arena holds about you
=======================================

Exported {at} for account {user_id}. Every file is UTF-8; times are Unix seconds (UTC)
unless a field says otherwise; distances are metres, durations seconds.

account.json        your account: email, roles, profile, privacy settings, privacy zones,
                    marketing consent and its log (when, how), a pending erasure if any
social.json         whom you follow, who follows you, whom you blocked, follow requests to you
workouts.json       every workout's summary (as Arena shows it), with its splits and counts
                    of kudos and comments
workouts.csv        the same workouts, one row each (the column "track" names the GPX file)
tracks/ID.gpx       the track of each workout that has one (GPX 1.1: position, elevation, time)
achievements.json   your points, level, badges and the settings they count by
gear.json           your gear, its wear, and which gear is the default for each sport
groups.json         the groups you belong to, your role in each, invitations waiting for you
challenges.json     the challenges you joined and your progress in each
training.json       your training settings and load (the days counted, your goal race)
races.json          the races you entered, and your own result in each
notifications.json  your notifications inbox, and the types you muted
devices.json        the devices you registered (names and models; no credentials)
routes.json         the routes you made (routes/ID.gpx: each one's track) and those you saved
segments.json       your best effort on each segment you covered
sport_events.json   your registrations to organizers' events
group_events.json   the group events you answered (going, maybe), and those you attended
orders.json         your orders in the shop that Arena knows of (lines, total), redemptions.json the
                    promo codes you redeemed, group_posts.json your posts in groups,
                    kudos_given.json and comments_given.json what you gave on others' workouts
access_log.json     who read your data with an admin's or an organizer's tool, when, and what
subscription.json   your premium subscription and its history (only if you ever had one)

About the original files: Arena does not keep the GPX, TCX or FIT files you uploaded. It reads
each file once and keeps the workout's figures and its track (at most {points} points, with
position, elevation and time; heart rate and power only as the workout's averages). The GPX files
here are written from that track, so they import again into Arena or any other service.
"""


async def write_archive(arena: Any, user_id: str, path: Path) -> int:
    """Write ``user_id``'s archive to ``path`` (atomically) and answer its size in bytes.
    ``arena``: the replica's ``serve.context.Arena``."""
    part = path.with_name(path.name + ".part")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        await _write(arena, user_id, part)
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)
    return path.stat().st_size


async def _write(arena: Any, user_id: str, part: Path) -> None:
    account = await arena.ref(Account, user_id).ask(Account.export)
    workouts = account.pop("workouts")
    social = {key: account.pop(key) for key in ("following", "followers", "blocked")}
    social["follow_requests"] = await _every(arena, Account.kind, user_id, "people", which="requests")
    for count in ("followers", "following", "workouts"):  # the counts of Account.me: the lists are above
        account.pop(count, None)
    routes = await _routes(arena, user_id)
    files: dict[str, Any] = {
        "account.json": account,
        "social.json": social,
        "achievements.json": await _achievements(arena, user_id),
        "gear.json": await arena.ref(Gear, user_id).ask(Gear.listing, retired=True),
        "groups.json": await _groups(arena, user_id),
        "challenges.json": await _challenges(arena, user_id),
        "training.json": await arena.ref(Training, user_id).ask(Training.export),
        "races.json": await _races(arena, user_id),
        "notifications.json": await _notifications(arena, user_id),
        "devices.json": await _devices(arena, user_id),
        "routes.json": {key: value for key, value in routes.items() if key != "tracks"},
        "segments.json": await arena.ref(SegmentRecords, user_id).ask(SegmentRecords.records),
        "sport_events.json": await arena.ref(SportEventEntries, user_id).ask(SportEventEntries.calendar),
        "group_events.json": await arena.ref(EventCalendar, user_id).ask(EventCalendar.everything),
        "access_log.json": await arena.ref(AccessLog, user_id).ask(AccessLog.all),
    }
    activity = await arena.ref(MyActivity, user_id).ask(MyActivity.everything)
    files.update({f"{name}.json": items for name, items in activity.items()})
    subscription = await arena.ref(Subscription, user_id).ask(Subscription.status)
    if subscription["state"] != "none" or subscription["history"]:
        files["subscription.json"] = subscription
    at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as archive:
        entries = [("README.txt", README.format(at=at, user_id=user_id, points=f"{_TRACK_POINTS:,}").encode())]
        entries += [(name, _json(value)) for name, value in files.items()]
        entries += [(f"routes/{route['id']}.gpx", _route_gpx(route)) for route in routes["tracks"]]
        await asyncio.to_thread(_add, archive, entries)
        details = []
        for first in range(0, len(workouts), BATCH):
            batch = workouts[first : first + BATCH]
            envelopes = [(Workout.kind, w["id"], "full", {"viewer": user_id}, None) for w in batch]
            answers = await arena.cluster.deliver(envelopes)
            tracks = []
            for summary, full in zip(batch, answers, strict=True):
                full = {} if isinstance(full, EngineError) else full  # deleted since the account listed it
                track = [p for p in full.get("track") or [] if _point(p)]
                name = f"tracks/{summary['id']}.gpx" if track else None
                details.append({**summary, **{k: full[k] for k in _DETAIL if k in full}, "track": name})
                if name is not None:
                    tracks.append((name, _workout_gpx(summary, track)))
            await asyncio.to_thread(_add, archive, tracks)
        await asyncio.to_thread(_add, archive, [("workouts.json", _json(details)), ("workouts.csv", _csv(details))])


def _add(archive: zipfile.ZipFile, entries: Iterable[tuple[str, bytes]]) -> None:
    for name, data in entries:
        archive.writestr(name, data)


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str).encode()


def _csv(workouts: list[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, WORKOUT_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for workout in workouts:
        start = workout.get("start")
        when = datetime.fromtimestamp(start, UTC).isoformat() if isinstance(start, int | float) else start
        writer.writerow({key: csv_cell(value) for key, value in {**workout, "start": when}.items()})
    return out.getvalue().encode()


def _point(point: Any) -> bool:
    return isinstance(point, list) and len(point) >= 2 and all(isinstance(v, int | float) for v in point[:2])


def _workout_gpx(summary: dict, track: list[list]) -> bytes:
    points = [[p[0], p[1], p[2] if len(p) > 2 else None, p[3] if len(p) > 3 and p[3] is not None else 0.0]
              for p in track]  # fmt: skip
    return to_gpx(summary.get("title") or "", summary.get("sport") or "other", points, summary.get("start") or 0.0)


def _route_gpx(route: dict) -> bytes:
    return to_gpx(route["name"], route["sport"], route["points"], route["recorded"])


async def _every(arena: Any, kind: str, entity_id: str, message_type: str, **fields: Any) -> list[dict]:
    """Every item of a keyset-paged handler (``actors.paging``), page after page."""
    items: list[dict] = []
    before = None
    while True:
        page = await arena.ask(kind, entity_id, message_type, {**fields, "before": before, "limit": MAX_PAGE})
        items += page["items"]
        before = page["next"]
        if before is None:
            return items


async def _answered(arena: Any, envelopes: list[tuple]) -> list[Any]:
    """Answers of a batch, None for each entity gone since it was listed."""
    return [None if isinstance(a, EngineError) else a for a in await arena.cluster.deliver(envelopes)]


async def _achievements(arena: Any, user_id: str) -> dict:
    achievements = arena.ref(Achievements, user_id)
    return {**await achievements.ask(Achievements.summary), **await achievements.ask(Achievements.settings)}


async def _groups(arena: Any, user_id: str) -> dict:
    groups = await _every(arena, UserGroups.kind, user_id, "groups_page")
    terms = await _answered(arena, [(Group.kind, g["id"], "terms", {"viewer": user_id}, None) for g in groups])
    invitations = await arena.ref(UserGroups, user_id).ask(UserGroups.invitation_list)
    return {
        "memberships": [
            {"group_id": g["id"], "name": t["name"], "role": t["role"] or "member", "since": g["at"], "via": g["via"]}
            for g, t in zip(groups, terms, strict=True)
            if t is not None
        ],
        "invitations": invitations,
    }


async def _challenges(arena: Any, user_id: str) -> list[dict]:
    entries = await _every(arena, ChallengeEntries.kind, user_id, "entries_page")
    envelopes: list[tuple] = []
    for entry in entries:
        envelopes += [
            (Challenge.kind, entry["challenge_id"], "view", None, None),
            (ChallengeParticipants.kind, entry["shard"], "standing", {"user_id": user_id}, None),
        ]
    answers = await _answered(arena, envelopes)
    return [
        {"challenge": answers[2 * n], "team": entry["team"], "joined_at": entry["since"], "me": answers[2 * n + 1]}
        for n, entry in enumerate(entries)
        if answers[2 * n] is not None
    ]


async def _races(arena: Any, user_id: str) -> list[dict]:
    races = []
    for race_id in await arena.ref(RaceEntries, user_id).ask(RaceEntries.race_ids):
        race = arena.races.ref(race_id)
        try:
            info = await race.ask(Race.info)
            results = await race.ask(Race.results)
        except EngineError:  # a race that never took the entry (or is gone)
            continue
        shown = {k: info.get(k) for k in _RACE_FIELDS}
        mine = [row for row in results if row.get("user_id") == user_id]
        races.append({"race": shown, "result": mine[0] if mine else None})
    return races


async def _notifications(arena: Any, user_id: str) -> dict:
    items = await _every(arena, Inbox.kind, user_id, "browse")
    return {"items": items, "muted": await arena.ref(Inbox, user_id).ask(Inbox.muted_types)}


async def _devices(arena: Any, user_id: str) -> list[dict]:
    device_ids = await arena.ref(DeviceOwner, user_id).ask(DeviceOwner.device_ids)
    answers = await _answered(arena, [(Device.kind, d, "info", None, None) for d in device_ids])
    return [info for info in answers if info is not None]


async def _routes(arena: Any, user_id: str) -> dict:
    mine = await _every(arena, RouteLibrary.kind, user_id, "routes", which="mine")
    saved = await _every(arena, RouteLibrary.kind, user_id, "routes", which="saved")
    full = [r for r in await _answered(arena, [(Route.kind, r["id"], "full", None, None) for r in mine]) if r]
    return {
        "mine": [{**{k: v for k, v in r.items() if k != "points"}, "track": f"routes/{r['id']}.gpx"} for r in full],
        "saved": saved,
        "tracks": full,
    }
