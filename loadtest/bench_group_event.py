"""One group event filled to its bounds: the cost of an answer and the size of its snapshot.

Builds the entity directly (no host, no store): ``capacity`` yes answers, then ``waiting`` more onto the
waitlist, ``promotions`` no answers from people going (each promotes the first waiting), and
``declined`` no answers from people who never said yes. Prints the time of an answer, of a promotion,
the msgpack size of the snapshot (what the host writes) and of the largest audience (a cancellation's).

Run: ``.venv/bin/python -m loadtest.bench_group_event`` (the bounds: 5,000 going, 5,000 waiting,
5,000 declined)
"""

from __future__ import annotations

import argparse
import time
import uuid

from actors.group_event import CAPACITY_MOST, DECLINED_KEPT, WAITLIST_MOST, GroupEvent
from engine.codec import pack


def _answer(event: GroupEvent, user: str, going: bool) -> None:
    event.answer("g", user, going)
    event._events.clear()  # what the host would commit with the turn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=int, default=CAPACITY_MOST)
    parser.add_argument("--waiting", type=int, default=WAITLIST_MOST)
    parser.add_argument("--declined", type=int, default=DECLINED_KEPT)
    parser.add_argument("--promotions", type=int, default=1_000)
    args = parser.parse_args()

    event = GroupEvent("bench")
    event._now = time.time()
    meeting = {"lat": 48.8462, "lon": 2.3371, "label": "Medicis fountain"}
    details = {"title": "A big run", "sport": "run", "start": event._now + 86_400, "time_zone": "Europe/Paris",
               "meeting_point": meeting, "capacity": args.capacity}  # fmt: skip
    event.create("g", "owner", details)
    people = [uuid.uuid4().hex for _ in range(args.capacity + args.waiting + args.promotions)]
    started = time.perf_counter()
    for user in people[: args.capacity + args.waiting]:
        _answer(event, user, True)
    per_yes = (time.perf_counter() - started) / (args.capacity + args.waiting)
    started = time.perf_counter()
    for user in people[: args.promotions]:  # going ones say no: the first waiting takes each place
        _answer(event, user, False)
    per_promotion = (time.perf_counter() - started) / max(1, args.promotions)
    for user in people[args.capacity + args.waiting :]:  # refill the waitlist
        _answer(event, user, True)
    for _ in range(args.declined - args.promotions):
        _answer(event, uuid.uuid4().hex, False)
    snapshot = len(pack(event.snapshot()))
    audience = event.audience("answered")
    print(f"going {len(event.going):,}, waiting {len(event.waitlist):,}, declined {len(event.declined):,}")
    print(f"an answer (yes) {per_yes * 1e6:.1f} us, a no that promotes {per_promotion * 1e6:.1f} us")
    print(f"snapshot {snapshot / 1024:.0f} KiB; a cancellation's audience {len(audience):,} ids "
          f"({len(pack(audience)) / 1024:.0f} KiB)")  # fmt: skip


if __name__ == "__main__":
    main()
