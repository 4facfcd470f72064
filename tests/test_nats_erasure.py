"""Erasure in a real NATS JetStream stream (127.0.0.1:4222, `nats-server -js`; .ci/run starts it): the
person's messages go, the erasure notice and everybody else's stay (connectors/nats_erasure.py)."""

from __future__ import annotations

import uuid

import pytest

from connectors.nats_erasure import StreamPart
from connectors.nats_stream import JetStream, decode
from engine.codec import pack
from engine.events import EventRecord
from tests.conftest import require_service

NATS_URL = "nats://127.0.0.1:4222"


@pytest.fixture
async def stream():
    require_service("NATS", "127.0.0.1", 4222)
    import nats

    name = f"E{uuid.uuid4().hex[:10].upper()}"
    publisher = JetStream(NATS_URL, stream=name, prefix=f"erasure.{name.lower()}")
    yield publisher
    await publisher.close()
    nc = await nats.connect(NATS_URL)
    try:
        await nc.jetstream().delete_stream(name)
    except nats.js.errors.NotFoundError:
        pass
    finally:
        await nc.close()


class Events:
    """Event records with consecutive positions, as the relay hands them to the stream."""

    def __init__(self) -> None:
        self.position = 0

    def __call__(self, kind: str, source: str, type_: str, user: str | None, **fields) -> EventRecord:
        self.position += 1
        return EventRecord(kind, source, self.position, 0, type_, 1, float(self.position), user, pack(fields),
                           self.position)  # fmt: skip


async def _messages(stream: JetStream) -> list[dict]:
    """Every message still in the stream, decoded, with its sequence."""
    import nats

    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream.stream)
        found = []
        seq = info.state.first_seq
        while seq <= info.state.last_seq:
            try:
                raw = await js.get_msg(stream.stream, seq)
            except nats.js.errors.NotFoundError:
                seq += 1
                continue
            found.append({"seq": seq, "subject": raw.subject, **_decoded(raw.data)})
            seq += 1
        return found
    finally:
        await nc.close()


def _decoded(data: bytes | None) -> dict:
    try:
        return decode(data or b"")
    except ValueError:
        return {"raw": data}


async def _publish_raw(stream: JetStream, subject: str, data: bytes) -> None:
    import nats

    nc = await nats.connect(NATS_URL)
    try:
        await nc.jetstream().publish(subject, data, stream=stream.stream)
    finally:
        await nc.close()


def _ids() -> tuple[str, str, str]:
    return uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex


async def test_erasing_a_person_deletes_their_messages_and_mentions_and_keeps_the_notice(stream):
    ana, ben, cy = _ids()
    event = Events()
    records = [
        event("account", ana, "workout.recorded", ana, workout_id="w1", user_id=ana),
        event("account", ben, "workout.recorded", ben, workout_id="w2", user_id=ben),
        event("group", "g1", "group.joined", ben, user_id=ben, by=ana),  # about ben, mentions ana
        event("account", ana, "audience.changed", None, consent=True),  # ana only in the event's id
        event("race", "r1", "race.result", cy, standings={ana: 2, cy: 1}),  # ana as a map key
        event("account", cy, "workout.recorded", cy, workout_id="w3", user_id=cy),
        event("account", ana, "account.erased", ana, user_id=ana, requested_at=1.0),
        event("account", ben, "account.erased", ben, user_id=ben, requested_at=2.0),
    ]
    await stream.publish(records)
    part = StreamPart(NATS_URL, stream=stream.stream, batch=3)  # several fetches

    before = await part.remnants(ana)
    assert len(before) == 4 and all(line.startswith("message ") for line in before)
    assert await part.erase(ana, "erased-0123") == 4

    assert await part.remnants(ana) == []
    left = await _messages(stream)
    assert [m["position"] for m in left] == [2, 6, 7, 8]
    notice = next(m for m in left if m["user_id"] == ana)
    assert notice["type"] == "account.erased"
    assert [len(await part.remnants(other)) for other in (ben, cy)] == [1, 1]  # their workouts, still there
    assert await part.erase(ana, "erased-4567") == 0  # idempotent: the eraser may run again after a crash


async def test_a_stream_that_does_not_exist_holds_nobody():
    require_service("NATS", "127.0.0.1", 4222)
    part = StreamPart(NATS_URL, stream=f"NONE{uuid.uuid4().hex[:8].upper()}")
    assert await part.erase(uuid.uuid4().hex, "erased-1") == 0
    assert await part.remnants(uuid.uuid4().hex) == []


async def test_an_empty_stream_and_one_whose_tail_was_deleted_finish(stream):
    ana, ben, _ = _ids()
    event = Events()
    await stream.publish([event("account", ben, "workout.recorded", ben), event("account", ana, "x.y", ana)])
    part = StreamPart(NATS_URL, stream=stream.stream, timeout=2.0)
    assert await part.erase(ana, "erased-1") == 1  # the last message: the next scan's end is a gap
    assert await part.remnants(ana) == [] and await part.erase(ana, "erased-2") == 0
    assert await part.erase(ben, "erased-3") == 1
    assert await part.remnants(ben) == []  # no message left at all


async def test_a_foreign_message_that_names_the_person_goes_and_one_that_does_not_stays(stream):
    ana, _, _ = _ids()
    event = Events()
    await stream.publish([event("account", ana, "x.y", None)])
    await _publish_raw(stream, f"{stream.prefix}.other.thing", b"\xc1 not msgpack, mentions " + ana.encode())
    await _publish_raw(stream, f"{stream.prefix}.other.thing", b"\xc1\xd9\xff garbage of nobody")
    await _publish_raw(stream, f"{stream.prefix}.{ana}.thing", b"")  # named by the subject alone
    part = StreamPart(NATS_URL, stream=stream.stream)
    lines = await part.remnants(ana)
    assert len(lines) == 3 and sum("(not an Arena event)" in line for line in lines) == 2
    assert await part.erase(ana, "erased-1") == 3
    assert [m.get("raw") for m in await _messages(stream)] == [b"\xc1\xd9\xff garbage of nobody"]


@pytest.mark.parametrize(
    "hostile",
    ["*", ">", "u.*.>", "arena.events.>", "a b\r\nNats-Msg-Id: x", "[?]\\", "\x00", "\udc80", "ü" * 300],
    ids=["star", "gt", "wildcards", "prefix", "header-injection", "glob", "nul", "surrogate", "long"],
)
async def test_hostile_ids_erase_their_own_messages_and_nothing_else(stream, hostile):
    ben = uuid.uuid4().hex
    event = Events()
    await stream.publish([
        event("account", ben, "workout.recorded", ben, note="nothing special here"),
        event("group", "g1", "group.joined", ben, by=ben),
    ])  # fmt: skip
    if "\udc80" not in hostile:  # a lone surrogate cannot travel as UTF-8: nobody's id has one
        await stream.publish([event("account", "acct1", "workout.recorded", hostile, user_id=hostile)])
    part = StreamPart(NATS_URL, stream=stream.stream)
    assert await part.erase(hostile, "erased-1") == (0 if "\udc80" in hostile else 1)
    assert await part.remnants(hostile) == []
    assert [m["user_id"] for m in await _messages(stream)] == [ben, ben]


@pytest.mark.parametrize("bad", ["", None, 7, b"bytes"])
async def test_no_user_id_or_an_empty_one_is_refused(bad):
    part = StreamPart(NATS_URL)
    with pytest.raises((TypeError, ValueError)):
        await part.erase(bad, "erased-1")
    with pytest.raises((TypeError, ValueError)):
        await part.remnants(bad)


@pytest.mark.parametrize("stream_name", ["", "A.B", "A*", "A>", "A B"])
def test_a_stream_name_that_is_not_one_is_refused(stream_name):
    with pytest.raises(ValueError):
        StreamPart(NATS_URL, stream=stream_name)


async def test_a_server_that_does_not_answer_fails_the_run_for_the_eraser_to_retry():
    part = StreamPart("nats://127.0.0.1:1", timeout=1.0)
    with pytest.raises(Exception):  # noqa: B017 - whichever the client raises; the relay retries the batch
        await part.erase(uuid.uuid4().hex, "erased-1")


async def test_a_large_stream_is_scanned_in_batches_to_its_end(stream):
    """30k messages, a batch at a time: the person's few go, all others stay. (100k: 2.8 s to publish,
    3.7 s to scan, 51 MB resident, on the 2-core CI machine.)"""
    ana = uuid.uuid4().hex
    event = Events()
    total = 30_000
    for start in range(0, total, 10_000):
        await stream.publish([
            event("account", ana if n % 7_500 == 0 else f"u{n % 97}", "workout.recorded",
                  ana if n % 7_500 == 0 else f"u{n % 97}", n=n)
            for n in range(start, start + 10_000)
        ])  # fmt: skip
    part = StreamPart(NATS_URL, stream=stream.stream)
    assert await part.erase(ana, "erased-1") == 4
    assert await part.remnants(ana) == []
    import nats

    nc = await nats.connect(NATS_URL)
    try:
        assert (await nc.jetstream().stream_info(stream.stream)).state.messages == total - 4
    finally:
        await nc.close()


def test_the_eraser_settings_build_the_stream_part():
    from serve.erasure import parts

    (part,) = [p for p in parts({"nats": NATS_URL}) if p.name == "stream"]
    assert isinstance(part, StreamPart) and (part.name, part.stream) == ("stream", "ARENA_EVENTS")
