"""The engine's half of erasure: the ERASE message, its hook, and the store's scans (engine/erasure.py)."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import HostConfig
from engine.erasure import ERASE_MESSAGE, mentions, replace_all, scrub
from engine.errors import MalformedMessage, NotFound
from engine.host import Host
from persistence.sqlite import SQLiteStore
from tests.entities import Counter

PERSON = "u-5f1e2d3c"
STAND_IN = "gone-0a9b8c7d"

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.sampled_from([PERSON, f"feed/{PERSON}", f"x{PERSON}y", "someone-else", ""]),
    st.text(max_size=6),
    st.binary(max_size=6),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.one_of(st.text(max_size=4), st.just(PERSON)), inner,
                                                                max_size=4),  # fmt: skip
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=5), _values, max_size=6))
def test_a_scrubbed_state_never_mentions_the_person_and_keeps_its_fields(state):
    scrubbed = scrub(state, PERSON, STAND_IN)
    assert not mentions(scrubbed, PERSON)
    assert scrubbed.keys() == state.keys()
    for name, value in state.items():  # what never named them is untouched
        if not mentions(value, PERSON):
            assert scrubbed[name] == value


@settings(max_examples=200, deadline=None)
@given(_values)
def test_replacing_the_person_leaves_no_mention_and_nothing_else_changes(value):
    replaced = replace_all(value, PERSON, STAND_IN)
    assert not mentions(replaced, PERSON)
    if not mentions(value, PERSON):
        assert replaced == value


def test_scrub_drops_rows_that_name_the_person_and_pseudonymises_a_field():
    state = {
        "owner": PERSON,
        "members": {PERSON: {"role": "admin"}, "b": {"role": "member"}},
        "items": [{"owner": PERSON, "title": "Morning run"}, {"owner": "b", "title": "Ride"}],
        "by": {"w1": PERSON, "w2": "b"},
        "count": 2,
    }
    assert scrub(state, PERSON, STAND_IN) == {
        "owner": STAND_IN,
        "members": {"b": {"role": "member"}},
        "items": [{"owner": "b", "title": "Ride"}],
        "by": {"w2": "b"},
        "count": 2,
    }


def _host(tmp_path, snapshot_interval: float = 3600) -> Host:
    return Host([Counter], SQLiteStore(tmp_path / "arena.db"), HostConfig(snapshot_interval=snapshot_interval))


async def _until_clean(store, needle: str) -> list:
    for _ in range(200):
        found = await store.mentions(needle)
        if not found:
            return []
        await asyncio.sleep(0.01)
    return found


async def test_an_erased_entity_keeps_the_rest_and_no_journal_entry_or_snapshot_names_the_person(tmp_path):
    host = _host(tmp_path, snapshot_interval=0.01)
    await host.start()
    try:
        await host.ask("counter", "club", "add", {"amount": 2, "tag": f"kudos from {PERSON}"})
        await host.ask("counter", "club", "add", {"amount": 3, "tag": "kudos from b"})
        await asyncio.sleep(0.02)
        await host.maintain()  # a snapshot that names them too
        await host.ask("counter", "club", "add", {"amount": 4, "tag": PERSON})
        assert {m.place for m in await host.store.mentions(PERSON)} == {"snapshot", "journal"}

        answer = await host.ask("counter", "club", ERASE_MESSAGE, {"user_id": PERSON, "stand_in": STAND_IN})
        assert answer == {"forgotten": False}
        assert await _until_clean(host.store, PERSON) == []
        assert await host.ask("counter", "club", "value") == {"total": 9, "applied": ["kudos from b"], "rings": 0,
                                                              "now": pytest.approx(0, abs=1e10)}  # fmt: skip
    finally:
        await host.stop()
    host = _host(tmp_path)  # and so it stays after a restart
    await host.start()
    try:
        assert (await host.ask("counter", "club", "value"))["applied"] == ["kudos from b"]
        assert await host.store.mentions(PERSON) == []
    finally:
        await host.stop()


async def test_an_entity_that_was_the_persons_alone_is_deleted_whole(tmp_path):
    host = _host(tmp_path)
    await host.start()
    try:
        entity_id = f"feed-{PERSON}"
        await host.ask("counter", entity_id, "add", {"amount": 5, "tag": "x"})
        await host.ask("counter", entity_id, "remind", {"delay": 3600})
        answer = await host.ask("counter", entity_id, ERASE_MESSAGE, {"user_id": PERSON, "stand_in": STAND_IN})
        assert answer == {"forgotten": True}
        assert await _until_clean(host.store, PERSON) == []
        assert await host.store.reminders() == []
        assert (await host.ask("counter", entity_id, "value"))["total"] == 0
    finally:
        await host.stop()


@pytest.mark.parametrize(
    "body", [None, {}, {"user_id": PERSON}, {"user_id": "", "stand_in": STAND_IN}, {"user_id": 7, "stand_in": "s"},
             {"user_id": PERSON, "stand_in": STAND_IN, "extra": 1}],  # fmt: skip
)
async def test_a_malformed_erasure_is_refused_and_changes_nothing(tmp_path, body):
    host = _host(tmp_path)
    await host.start()
    try:
        await host.ask("counter", "club", "add", {"amount": 1, "tag": PERSON})
        with pytest.raises(MalformedMessage):
            await host.ask("counter", "club", ERASE_MESSAGE, body)
        assert (await host.ask("counter", "club", "value"))["applied"] == [PERSON]
    finally:
        await host.stop()


async def test_an_account_erases_itself_at_the_end_of_its_grace_period_unless_cancelled(tmp_path, clock):
    from actors.account import Account
    from actors.email import EmailClaim
    from engine.events import EventRecord

    host = Host([Account, EmailClaim], SQLiteStore(tmp_path / "arena.db"), HostConfig(), clock=clock,
                monotonic=clock)  # fmt: skip
    await host.start()
    try:
        await host.ask("account", PERSON, "register", {"email": "pat@example.com", "password_hash": "h",
                                                       "display_name": "Pat"})  # fmt: skip
        due = clock.now + 3600
        pending = await host.ask("account", PERSON, "request_erasure", {"due": due})
        assert pending == {"requested_at": clock.now, "due": due}
        again = await host.ask("account", PERSON, "request_erasure", {"due": due + 50})
        assert again["due"] == due  # a second request keeps the first one's date
        await host.ask("account", PERSON, "cancel_erasure")
        assert await host.ask("account", PERSON, "erasure_pending") is None
        clock.now = due + 1
        await host.fire_timers()
        assert (await host.ask("account", PERSON, "me"))["profile"]["display_name"] == "Pat"  # cancelled: kept

        await host.ask("account", PERSON, "request_erasure", {"due": clock.now + 60})
        clock.now += 61
        await host.fire_timers()
        assert await host.ask("account", PERSON, "exists") is False
        events: list[EventRecord] = await host.store.read_events(0, 10, ["account.erased"])
        assert [(e.user_id, e.source_id) for e in events] == [(PERSON, PERSON)]
        with pytest.raises(NotFound):  # nothing of it answers any more
            await host.ask("account", PERSON, "me")
    finally:
        await host.stop()
