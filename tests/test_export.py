"""The data export (GDPR Art. 20): the job as an entity on a host with a hand-moved clock (no Ray), then
the whole flow through the HTTP API against a real Arena: a busy athlete's archive, its one download
through a signed link, forged, expired and other athletes' links, a failed build, hostile ids, and the
rate limit of docs/security.md (this module runs the limits as they are: scale 1)."""

from __future__ import annotations

import asyncio
import base64
import csv
import hashlib
import hmac
import io
import json
import time
import zipfile
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from actors.data_export import KEPT, DataExport
from connectors.workout_files import parse_workout_file
from engine.config import HostConfig
from engine.errors import Rejected
from engine.host import Host
from loadtest.gpx import synthetic_gpx
from persistence.sqlite import SQLiteStore
from serve.api.export import export_folder, link_secret
from tests.conftest import T0
from tests.test_api import assert_problem, manual, signup

FILES = {"README.txt", "account.json", "social.json", "workouts.json", "workouts.csv", "achievements.json",
         "gear.json", "groups.json", "challenges.json", "training.json", "races.json", "notifications.json",
         "devices.json", "routes.json", "segments.json", "sport_events.json", "group_events.json",
         "access_log.json", "orders.json", "redemptions.json", "group_posts.json", "kudos_given.json",
         "comments_given.json"}  # fmt: skip


# -- the job, as an entity --------------------------------------------------------------


@pytest.fixture
async def jobs(tmp_path, clock):
    host = Host([DataExport], SQLiteStore(tmp_path / "arena.db"), HostConfig(snapshot_interval=3600), clock=clock)
    await host.start()

    async def ask(message_type: str, **body):
        return await host.ask("data_export", "ana", message_type, body)

    ask.host = host  # type: ignore[attr-defined]
    yield ask
    await host.stop()


async def test_a_job_is_ready_then_downloaded_once(jobs, clock):
    started = await jobs("start", job_id="j1", file="a.zip", deadline=T0 + 600)
    assert started["status"] == "preparing" and started["created_at"] == T0
    with pytest.raises(Rejected, match="already being prepared"):
        await jobs("start", job_id="j2", file="b.zip", deadline=T0 + 600)
    assert (await jobs("claim", job_id="j1"))["outcome"] == "missing"  # not ready: as if it did not exist
    clock.now += 30
    ready = await jobs("finish", job_id="j1", size=123, expires_at=clock.now + 900)
    assert ready["status"] == "ready" and ready["size"] == 123
    claimed = await jobs("claim", job_id="j1")
    assert claimed["outcome"] == "ok" and claimed["job"]["file"] == "a.zip"
    assert (await jobs("claim", job_id="j1"))["outcome"] == "gone"
    assert (await jobs("latest"))["status"] == "downloaded"
    assert (await jobs("claim", job_id="nope"))["outcome"] == "missing"


async def test_a_job_whose_replica_stopped_fails_at_its_deadline_and_a_new_one_may_start(jobs, clock):
    await jobs("start", job_id="j1", file="a.zip", deadline=T0 + 600)
    clock.now = T0 + 599
    await jobs.host.fire_timers()
    assert (await jobs("latest"))["status"] == "preparing"
    clock.now = T0 + 600
    await jobs.host.fire_timers()
    failed = await jobs("latest")
    assert failed["status"] == "failed" and "interrupted" in failed["error"]
    late = await jobs("finish", job_id="j1", size=1, expires_at=T0 + 2000)  # the lost build finished after all
    assert late["status"] == "failed"  # its file is the caller's to delete
    assert (await jobs("start", job_id="j2", file="b.zip", deadline=T0 + 1200))["status"] == "preparing"


async def test_a_ready_job_expires_with_its_link_and_a_new_job_expires_the_old_one(jobs, clock):
    await jobs("start", job_id="j1", file="a.zip", deadline=T0 + 600)
    await jobs("finish", job_id="j1", size=1, expires_at=T0 + 900)
    clock.now = T0 + 900
    await jobs.host.fire_timers()
    assert (await jobs("job", job_id="j1"))["status"] == "expired"
    assert (await jobs("claim", job_id="j1"))["outcome"] == "gone"
    await jobs("start", job_id="j2", file="b.zip", deadline=T0 + 1500)
    await jobs("finish", job_id="j2", size=1, expires_at=T0 + 9000)
    await jobs("start", job_id="j3", file="c.zip", deadline=T0 + 1500)
    assert (await jobs("job", job_id="j2"))["status"] == "expired"  # only the latest link works
    await jobs("fail", job_id="j3", error="x" * 1000)
    assert len((await jobs("job", job_id="j3"))["error"]) == 200


async def test_only_the_last_jobs_are_kept(jobs, clock):
    for n in range(KEPT + 3):
        await jobs("start", job_id=f"j{n}", file=f"{n}.zip", deadline=T0 + 600)
        await jobs("fail", job_id=f"j{n}", error="no")
    assert await jobs("job", job_id="j0") is None
    assert (await jobs("latest"))["id"] == f"j{KEPT + 2}"


# -- through the API --------------------------------------------------------------------


@pytest.fixture(scope="module")
def settings(settings):
    """The shared test settings with docs/security.md's limits as they are (conftest scales them up)."""
    return settings.model_copy(update={"rate_limit_scale": 1.0})


async def _ready(client: httpx.AsyncClient, headers: dict) -> dict:
    for _ in range(300):
        job = (await client.get("/me/export", headers=headers)).json()
        if job["status"] != "preparing":
            assert job["status"] == "ready", job
            return job
        await asyncio.sleep(0.1)
    raise AssertionError("the export was not ready within 30 s")


async def _export(client: httpx.AsyncClient, headers: dict) -> dict:
    started = await client.post("/me/export", headers=headers)
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "preparing" and started.headers["location"] == "/api/v1/me/export"
    job = await _ready(client, headers)
    assert job["id"] == started.json()["id"] and job["expires_at"] - job["ready_at"] == pytest.approx(900, abs=5)
    return job


async def exported_archive(client: httpx.AsyncClient, headers: dict) -> zipfile.ZipFile:
    """The caller's whole archive, as an athlete gets it: start, follow until ready, download."""
    answer = await client.get(_link(await _export(client, headers)))
    assert answer.status_code == 200, answer.text
    return zipfile.ZipFile(io.BytesIO(answer.content))


def _link(job: dict) -> httpx.URL:
    return httpx.URL("http://arena").join(job["download_url"])


def _with(url: httpx.URL, **params: str) -> httpx.URL:
    return url.copy_merge_params(params)


def _signed(settings, user_id: str, job_id: str, expires: int) -> dict:
    """A link signed as Arena signs one: HMAC-SHA256 of what it names, with the export links' key."""
    message = f"export:{user_id}:{job_id}:{expires}".encode()
    digest = hmac.new(link_secret(settings).encode(), message, hashlib.sha256).digest()[:18]
    return {"user": user_id, "expires": str(expires), "signature": base64.urlsafe_b64encode(digest).decode()}


async def _busy_athlete(client: httpx.AsyncClient) -> tuple[str, dict, dict]:
    """An athlete with a typed-in workout, an imported GPX run (and a route from it), gear, a group they
    own and a challenge of that group they joined."""
    user_id, headers = await signup(client, "Exa")
    typed = await manual(client, headers, title='=HYPERLINK("http://evil")')
    files = {"file": ("run.gpx", synthetic_gpx(), "application/gpx+xml")}
    imported = await client.post("/workouts/import", files=files, headers=headers)
    assert imported.status_code == 201, imported.text
    route = await client.post("/routes", json={"workout_id": imported.json()["id"]}, headers=headers)
    assert route.status_code == 201, route.text
    gear = await client.post("/me/gear", json={"type": "shoes", "name": "Racers", "sports": ["run"]}, headers=headers)
    assert gear.status_code == 201, gear.text
    group = await client.post("/groups", json={"name": "Export Club", "sports": ["run"]}, headers=headers)
    assert group.status_code == 201, group.text
    today = time.strftime("%Y-%m-%d", time.gmtime())
    body = {"title": "Run 50 km", "goal_type": "distance_m", "goal": 50_000, "sports": ["run"], "first_day": today,
            "last_day": today, "scope": "group", "group_id": group.json()["id"]}  # fmt: skip
    challenge = await client.post("/challenges", json=body, headers=headers)
    assert challenge.status_code == 201, challenge.text
    joined = await client.post(f"/challenges/{challenge.json()['id']}/join", headers=headers)
    assert joined.status_code == 200, joined.text
    _, other = await signup(client, "Oth")
    theirs = await manual(client, other, title="Someone else's run")
    assert (await client.put(f"/workouts/{theirs['id']}/kudos", headers=headers)).status_code == 200
    said = await client.post(f"/workouts/{theirs['id']}/comments", json={"text": "Chapeau"}, headers=headers)
    assert said.status_code == 201, said.text
    posted = await client.post(f"/groups/{group.json()['id']}/posts", json={"text": "Hello club"}, headers=headers)
    assert posted.status_code == 201, posted.text
    assert await client.arena.drain()  # memberships, entries and the library come through events
    made = {"typed": typed["id"], "theirs": theirs["id"], "imported": imported.json()["id"], "route": route.json()["id"],
            "gear": gear.json()["id"], "group": group.json()["id"], "challenge": challenge.json()["id"]}  # fmt: skip
    return user_id, headers, made


@pytest.mark.ray
async def test_an_athletes_whole_archive_downloads_once(client, settings):
    user_id, headers, made = await _busy_athlete(client)
    assert (await client.get("/me/export", headers=headers)).json()["status"] == "none"
    job = await _export(client, headers)
    assert set(parse_qs(urlsplit(job["download_url"]).query)) == {"user", "expires", "signature"}

    answer = await client.get(_link(job))  # a link: no sign-in needed
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/zip"
    assert answer.headers["content-disposition"].startswith('attachment; filename="arena-export-')
    assert answer.headers["cache-control"] == "no-store"
    archive = zipfile.ZipFile(io.BytesIO(answer.content))
    names = set(archive.namelist())
    track, route = f"tracks/{made['imported']}.gpx", f"routes/{made['route']}.gpx"
    assert FILES | {track, route} == names  # no track for the typed-in workout, no subscription ever

    read = {name: json.loads(archive.read(name)) for name in names if name.endswith(".json")}
    assert read["account.json"]["id"] == user_id and "password_hash" not in read["account.json"]
    assert "sessions" not in read["account.json"] and read["account.json"]["email"].startswith("exa-")
    assert {w["id"]: w["track"] for w in read["workouts.json"]} == {made["typed"]: None, made["imported"]: track}
    assert [g["name"] for g in read["gear.json"]["items"]] == ["Racers"]
    assert read["groups.json"]["memberships"][0]["group_id"] == made["group"]
    assert read["groups.json"]["memberships"][0]["role"] == "owner"
    assert [c["challenge"]["id"] for c in read["challenges.json"]] == [made["challenge"]]
    assert [r["id"] for r in read["routes.json"]["mine"]] == [made["route"]]
    assert read["achievements.json"]["user_id"] == user_id
    assert read["social.json"] == {"followers": [], "following": [], "blocked": [], "follow_requests": []}
    assert "does not keep the GPX, TCX or FIT files" in archive.read("README.txt").decode()
    assert [k["workout_id"] for k in read["kudos_given.json"]] == [made["theirs"]]
    assert [(c["workout_id"], c["text"]) for c in read["comments_given.json"]] == [(made["theirs"], "Chapeau")]
    assert [(p["group_id"], p["text"]) for p in read["group_posts.json"]] == [(made["group"], "Hello club")]
    assert read["orders.json"] == [] and read["redemptions.json"] == []

    rows = list(csv.DictReader(io.StringIO(archive.read("workouts.csv").decode())))
    assert {row["id"] for row in rows} == {made["typed"], made["imported"]}
    assert {row["title"] for row in rows if row["id"] == made["typed"]} == {'\'=HYPERLINK("http://evil")'}

    stored = (await client.get(f"/workouts/{made['imported']}", headers=headers)).json()["track"]
    parsed = parse_workout_file(archive.read(track), "track.gpx")
    assert len(parsed.points) == len(stored) > 100
    assert (parsed.points[0].lat, parsed.points[0].lon) == pytest.approx((stored[0][0], stored[0][1]))
    assert len(parse_workout_file(archive.read(route), "route.gpx").points) > 1

    assert_problem(await client.get(_link(job)), 410, "already downloaded")  # once
    assert (await client.get("/me/export", headers=headers)).json()["status"] == "downloaded"
    assert list(export_folder(settings, user_id).iterdir()) == []  # the archive went with the download


@pytest.mark.ray
async def test_forged_altered_expired_and_other_athletes_links_are_refused(client, settings):
    ana, ana_headers = await signup(client, "Ana")
    bob, bob_headers = await signup(client, "Bob")
    job = await _export(client, ana_headers)
    link = _link(job)
    signature = link.params["signature"]
    forged = "A" * len(signature) if signature[0] != "A" else "B" * len(signature)
    for url in (
        _with(link, signature=forged),
        _with(link, signature=""),
        _with(link, signature="é"),
        _with(link, expires=str(int(link.params["expires"]) + 3600)),  # a longer life is not signed
        _with(link, user=bob),  # Bob's id on Ana's signed job
        link.copy_with(path=link.path.replace(job["id"], "f" * 32)),  # another job on Ana's signature
    ):
        assert_problem(await client.get(url), 404, "no such export")
    assert_problem(await client.get(link, headers=bob_headers), 404, "no such export")  # signed in as Bob
    expired = _signed(settings, ana, job["id"], int(time.time()) - 1)
    assert_problem(await client.get(link.copy_with(params=expired)), 403, "expired")
    unknown = _signed(settings, ana, "0" * 32, int(time.time()) + 600)  # signed, yet no such job: the same 404
    assert_problem(await client.get(link.copy_with(path=link.path.replace(job["id"], "0" * 32), params=unknown)), 404)
    assert (await client.get("/me/export", headers=bob_headers)).json()["status"] == "none"

    answer = await client.get(link, headers=ana_headers)  # still downloadable once, by its link
    assert answer.status_code == 200 and zipfile.ZipFile(io.BytesIO(answer.content)).testzip() is None


@pytest.mark.ray
async def test_hostile_job_ids_and_queries_get_a_clear_4xx(client):
    _, headers = await signup(client, "Hal")
    for job_id in ("x" * 65, "bad%20id", "..%2F..%2Fetc", "%00", "..", "a.zip"):
        answer = await client.get(f"/me/export/{job_id}/download?user=u&expires=1&signature=s", headers=headers)
        assert answer.status_code in (403, 404, 422), (job_id, answer.text)
    assert_problem(await client.get("/me/export/abc/download"), 422)  # the link's parts are required
    long = {"user": "u" * 65, "expires": "9" * 13, "signature": "s" * 65}
    assert_problem(await client.get("/me/export/abc/download", params=long), 422)
    assert (await client.get("/me/export")).status_code == 401
    assert (await client.post("/me/export")).status_code == 401


@pytest.mark.ray
async def test_a_build_that_fails_says_so_and_the_athlete_may_start_again(client, monkeypatch):
    import serve.api.export

    async def broken(arena, user_id, path):
        raise OSError("disk full")

    _, headers = await signup(client, "Fay")
    with monkeypatch.context() as patched:
        patched.setattr(serve.api.export, "write_archive", broken)
        assert (await client.post("/me/export", headers=headers)).status_code == 202
        await client.arena.drain()
    failed = (await client.get("/me/export", headers=headers)).json()
    assert failed["status"] == "failed" and "disk" not in failed["error"] and "download_url" not in failed
    assert "account.json" in (await exported_archive(client, headers)).namelist()  # a new job, built this time


@pytest.mark.ray
async def test_a_second_export_while_one_is_prepared_is_refused_and_starting_is_rate_limited(client, monkeypatch):
    import serve.api.export

    gate = asyncio.Event()
    real = serve.api.export.write_archive

    async def slow(arena, user_id, path):
        await gate.wait()
        return await real(arena, user_id, path)

    _, headers = await signup(client, "Rae")
    monkeypatch.setattr(serve.api.export, "write_archive", slow)
    assert (await client.post("/me/export", headers=headers)).status_code == 202
    for _ in range(4):  # docs/security.md: 5 an hour per account, refused or not
        assert_problem(await client.post("/me/export", headers=headers), 409, "already being prepared")
    limited = await client.post("/me/export", headers=headers)
    assert limited.status_code == 429 and limited.json()["policy"] == "export"
    assert int(limited.headers["Retry-After"]) >= 1
    assert (await client.get("/me/export", headers=headers)).status_code == 200  # following it is not limited
    gate.set()
    assert (await _ready(client, headers))["status"] == "ready"
