"""A settled race's record on its ``race_ref``: what readers see once the race's own host has stopped."""

from __future__ import annotations

import pytest

from actors.race import Race, RaceRef
from engine.errors import NotFound, Rejected


def record(status: str = "final", corrections: int = 0, private: list[int] | None = None) -> dict:
    board = {"entries": [{"participant": i, "rank": i + 1} for i in range(3)]}
    return {
        "info": {
            "status": status,
            "transitions": [{"status": status}],
            "corrections": [{"user_id": "u0"}] * corrections,
        },
        "results": [{"user_id": f"u{i}", "place": i + 1, "private": False} for i in range(3)],
        "view": {
            "status": status,
            "roster": [[f"u{i}", f"U{i}", None] for i in range(3)],
            "boards": {"": board},
            "private": private or [],
        },
        "flags": [],
        "device_map": {"watch": 0},
    }


def test_a_record_answers_every_read_and_the_view_as_the_race_would():
    ref = RaceRef("r")
    ref.register("org")
    assert ref.state() == {"exists": True, "status": None}
    with pytest.raises(Rejected, match="not settled"):
        ref.info()
    ref.settle(record())
    assert ref.state() == {"exists": True, "status": "final"}
    assert set(RaceRef.READS) <= set(Race.handlers)  # the same reads, the same names
    assert ref.results()[0]["place"] == 1 and ref.device_map() == {"watch": 0}
    view = ref.view(n=2, known=1)
    assert [a[0] for a in view["roster"]] == ["u1", "u2"] and len(view["boards"][""]["entries"]) == 2
    assert len(ref.view()["boards"][""]["entries"]) == 3  # the stored record is not trimmed


def test_only_a_settled_race_of_a_known_id_gets_a_record_and_an_older_one_never_replaces_it():
    with pytest.raises(NotFound):
        RaceRef("unknown").settle(record())
    ref = RaceRef("r")
    ref.register("org")
    with pytest.raises(Rejected):
        ref.settle(record(status="live"))
    ref.settle(record(corrections=1))
    ref.settle(record(corrections=0))  # a slower replica's older record
    assert len(ref.info()["corrections"]) == 1


def test_a_privacy_change_reaches_the_record_and_every_later_one():
    ref = RaceRef("r")
    ref.register("org")
    ref.settle(record())
    ref.privacy("u1", True)
    assert ref.view()["private"] == [1] and ref.results()[1]["private"] is True
    ref.settle(record(corrections=1))  # a correction's new record
    assert ref.view()["private"] == [1] and ref.results()[1]["private"] is True
    ref.privacy("u1", False)
    assert ref.view()["private"] == []
