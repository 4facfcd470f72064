"""The Serve application on the shared Ray cluster: health and metrics over real HTTP."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest

from loadtest.server import free_port
from serve.app import build
from serve.settings import Settings

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def serve_url(ray_cluster):
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def arena_url(request, serve_url, tmp_path_factory):
    """One Arena app per store for the whole module: deploying one takes seconds, and no test here
    leaves anything behind that another checks (only the last one fails sign-ins)."""
    from ray import serve

    tmp_path = tmp_path_factory.mktemp(f"serve-{request.param}")
    if request.param == "sqlite":
        database_url = f"sqlite:///{tmp_path}/arena.db"
    else:
        database_url = request.getfixturevalue("postgres_url")
    settings = Settings(
        database_url=database_url,
        namespace=f"serve-{uuid.uuid4().hex[:8]}",
        hosts=2,
        replicas=1,  # without Redis a sign-in limit is counted per replica
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        data_dir=tmp_path,
        ingress="proxy",  # Serve's own proxy in front, as this fixture starts it: no proxy of ours to trust
    )
    serve.run(build(settings), name="arena", route_prefix="/")
    yield serve_url, request.param
    gateway = serve.get_deployment_handle("gateway", app_name="arena")
    gateway.stop_hosts.remote().result(timeout_s=60)
    serve.delete("arena")


def test_health_details_name_the_store_and_every_host_for_an_operator(arena_url):
    url, store = arena_url
    answer = httpx.get(f"{url}/health/details", timeout=30)  # an operator on this machine
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "ok"
    assert body["store"] == store
    assert len(body["hosts"]) == 2
    assert all(host["alive"] and host["store"]["ok"] for host in body["hosts"])


def test_metrics_are_in_prometheus_text_format(arena_url):
    url, _ = arena_url
    answer = httpx.get(f"{url}/metrics", timeout=30)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert 'arena_host_active_entities{host="shared-0"}' in answer.text
    assert "arena_host_journal_commits_total" in answer.text
    values = dict(line.rsplit(" ", 1) for line in answer.text.splitlines() if line and not line.startswith("#"))
    assert float(values['arena_host_cpu_seconds_total{host="shared-0"}']) > 0  # the host process's own
    assert 'arena_host_gc_full_collections_total{host="shared-0"}' in values


def test_settings_refuse_an_unknown_database_scheme():
    with pytest.raises(ValueError, match="ARENA_DATABASE_URL"):
        Settings(database_url="mysql://root@localhost/arena")


def test_the_arena_command_reports_health_and_fails_when_nobody_answers(arena_url, capsys):
    from serve.cli import main

    url, store = arena_url
    assert main(["health", "--url", url]) == 0
    assert f'"store": "{store}"' in capsys.readouterr().out
    assert main(["health", "--url", f"http://127.0.0.1:{free_port()}"]) == 1
    assert "does not answer" in capsys.readouterr().err

    # The domain events' view, from this machine (loopback: no token needed).
    assert main(["events", "status", "--url", url]) == 0
    assert '"feed.on_workout"' in capsys.readouterr().out
    assert main(["events", "dead-letters", "--subscription", "feed.on_workout", "--url", url]) == 0
    assert '"items": []' in capsys.readouterr().out
    assert main(["events", "replay", "--subscription", "../../etc", "--url", url]) == 1
    assert "refused" in capsys.readouterr().err


def test_lake_status_shows_the_tables_and_the_relay_lag_of_the_lake_consumers(arena_url, capsys, tmp_path):
    import numpy as np

    from connectors.lake import archive_race
    from serve.cli import main

    url, _ = arena_url
    archive_race(tmp_path, "race-1", {"user_id": np.array(["u1", "u2"]), "t": np.array([1.7e9, 1.7e9 + 1])})
    assert main(["lake", "status", "--root", str(tmp_path), "--url", url]) == 0
    out = capsys.readouterr().out
    assert "telemetry" in out and "consumers of the outbox" in out
    assert any(line.split()[:1] == ["lake"] and " lag " in line for line in out.splitlines())
    assert any(line.split()[:1] == ["race-archive"] for line in out.splitlines())
    assert main(["lake", "status", "--root", str(tmp_path), "--url", f"http://127.0.0.1:{free_port()}"]) == 0
    assert "their lag is unknown" in capsys.readouterr().out


async def test_a_notification_reaches_an_open_event_stream_through_serve(arena_url):
    url, _ = arena_url
    api = f"{url}/api/v1"
    async with httpx.AsyncClient(timeout=30) as http:
        tokens = {}
        ids = {}
        for name in ("ana", "bo"):
            email = f"{name}-{uuid.uuid4().hex[:6]}@example.com"
            registered = await http.post(
                f"{api}/accounts", json={"email": email, "password": "correct horse battery", "display_name": name}
            )
            ids[name] = registered.json()["id"]
            login = await http.post(f"{api}/auth/login", json={"email": email, "password": "correct horse battery"})
            tokens[name] = login.json()["access_token"]
        refused = await http.get(f"{api}/notifications/stream", params={"access_token": "garbage"})
        assert refused.status_code == 401

        async def first_event(subscribed: asyncio.Event) -> dict:
            params = {"access_token": tokens["ana"]}
            async with http.stream("GET", f"{api}/notifications/stream", params=params) as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                async for line in stream.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    event = json.loads(line[5:])
                    if event["type"] != "ready":
                        assert subscribed.is_set(), "an event came before the stream said it was subscribed"
                        return event
                    subscribed.set()
            raise AssertionError("the stream ended without an event")

        subscribed = asyncio.Event()
        listener = asyncio.ensure_future(first_event(subscribed))
        await asyncio.wait_for(subscribed.wait(), 30)
        followed = await http.post(
            f"{api}/users/{ids['ana']}/follow", headers={"Authorization": f"Bearer {tokens['bo']}"}
        )
        assert followed.json() == {"status": "following"}
        event = await asyncio.wait_for(listener, 30)
        assert event["type"] == "notification"
        assert event["notification"]["type"] == "follower" and event["notification"]["data"] == {"from": ids["bo"]}


async def test_a_client_sent_forwarded_for_does_not_walk_around_the_sign_in_limit(arena_url):
    # Serve's uvicorn trusts X-Forwarded-For from 127.0.0.1 by default: Arena turns that off.
    url, _ = arena_url
    async with httpx.AsyncClient(timeout=30) as http:
        codes = []
        for n in range(21):
            answer = await http.post(
                f"{url}/api/v1/auth/login",
                json={"email": f"probe-{n}-{uuid.uuid4().hex[:6]}@example.com", "password": "wrong password"},
                headers={"X-Forwarded-For": f"203.0.113.{n}"},
            )
            codes.append(answer.status_code)
    assert codes[:20] == [401] * 20 and codes[20] == 429
