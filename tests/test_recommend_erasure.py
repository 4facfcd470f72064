"""Erasure in the recommendation models (engine.recommend.erasure): a model trained by the real
training code on a tiny community, kept as several versions, the person erased from each; the
Recommender's replica stops serving them at its next look, without Ray Serve; a training across an
erasure keeps nothing; the next training from the erased lake never meets them."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

import actors.events  # noqa: F401  (declares the event types the lake writes)
from connectors.lake import Lake, LakeWriter
from connectors.lake.erasure import LakePart
from engine.codec import pack
from engine.events import EventRecord
from engine.recommend import Index, Registry, build, train
from engine.recommend.erasure import ModelsPart, erase_models
from engine.recommend.registry import ErasedMeanwhile
from serve.recommender import TRAINING_TABLES, Recommender, _answer, train_job

T0 = 1_750_000_000.0
STAND_IN = "erased-0123456789abcdef"


def _rows(person: str, others: int = 11) -> dict[str, list[dict]]:
    """Lake rows of a small club scene: everybody joins two of three clubs, races one race, and
    turns up at club events together (so people are items too: ``user:<id>``)."""
    people = [person] + [uuid.uuid4().hex for _ in range(others)]
    rows: dict[str, list[dict]] = {"workout.recorded": [], "group.joined": [], "race.result": [],
                                   "group_event.attended": [], "group.listed": []}  # fmt: skip
    for n, user in enumerate(people):
        rows["workout.recorded"].append({"user_id": user, "region": "Bretagne", "summary_sport": "run", "at": T0})
        for club in (f"club-{n % 3}", f"club-{(n + 1) % 3}"):
            rows["group.joined"].append({"user_id": user, "group_id": club, "at": T0 + n})
        rows["race.result"].append({"user_id": user, "race_id": "race-1", "summary_sport": "run",
                                    "result_place": n + 1, "at": T0 + 100})  # fmt: skip
        for e in range(3):
            rows["group_event.attended"].append({"user_id": user, "event_id": f"ev-{n % 2}-{e}",
                                                 "group_id": f"club-{n % 3}", "at": T0 + 200 + e + n})  # fmt: skip
    for c in range(3):
        rows["group.listed"].append({"group_id": f"club-{c}", "at": T0, "listing_visibility": "public",
                                     "listing_sports": '["run"]', "listing_region": "Bretagne"})  # fmt: skip
    return rows


def _model(rows: dict[str, list[dict]], seed: int = 0):
    return train(build(rows), epochs=3, dim=6, seed=seed)


@pytest.fixture
def registry(tmp_path):
    person = uuid.uuid4().hex
    rows = _rows(person)
    keeper = Registry(tmp_path / "models")
    for seed in range(3):
        keeper.save(_model(rows, seed), {"recall": 0.5})
    keeper.promote("v000002")
    return keeper, person


async def test_the_person_leaves_every_version_and_the_others_keep_their_vectors(registry):
    keeper, person = registry
    part = ModelsPart(keeper.root)
    before = {v: keeper.load(v) for v in ("v000001", "v000002", "v000003")}
    assert all(person in m.users and f"user:{person}" in m.items for m in before.values())
    assert [line.split(":")[0] for line in await part.remnants(person)] == ["v000001", "v000002", "v000003"]

    assert await part.erase(person, STAND_IN) == 3

    assert await part.remnants(person) == []
    for version, old in before.items():
        new = keeper.load(version)
        assert person not in new.users and f"user:{person}" not in new.items
        assert len(new.users) == len(old.users) - 1 and len(new.items) == len(old.items) - 1
        other = next(u for u in old.users if u != person)
        assert np.array_equal(new.user_vector(other, [])[0], old.user_vector(other, [])[0])
        assert np.array_equal(new.item_vector(f"user:{other}", []), old.item_vector(f"user:{other}", []))
        found = Index(new).search(np.stack([new.user_vector(other, [])[0]]), "user", [50], [{other}])[0]
        assert len(found) == len(old.users) - 2 and person not in {i for i, _ in found}
        assert new.features == old.features and new.never == old.never
    assert keeper.current() == "v000002" and keeper.versions()[1]["metrics"] == {"recall": 0.5}
    assert await part.erase(person, STAND_IN) == 0  # again: nothing left


async def test_a_serving_replica_drops_the_person_at_its_next_look_without_a_new_version(registry):
    keeper, person = registry
    replica = Recommender.func_or_class(str(keeper.root), 0)  # type: ignore[attr-defined]  # the class, without Serve
    assert replica.served is not None and replica.served.version == "v000002"
    other = next(u for u in replica.served.model.users if u != person)
    ask = {"user": other, "kind": "user", "k": 50}
    offered = {i for i, _ in _answer(replica.served, [ask])[0]["items"]}
    assert person in offered
    assert replica._refresh() == "v000002" and person in replica.served.model.users  # nothing new: same model
    kept = replica.served

    await ModelsPart(keeper.root).erase(person, STAND_IN)
    assert replica._refresh() == "v000002"

    assert replica.served is not kept and person not in replica.served.model.users
    answer = _answer(replica.served, [ask, {"user": person, "kind": "group", "k": 3}])
    assert {i for i, _ in answer[0]["items"]} == offered - {person}
    assert answer[1]["cold_start"] and answer[1]["version"] == "v000002"  # they are nobody to the model now
    now = replica.served
    assert replica._refresh() == "v000002" and replica.served is now  # no reload without a change


async def test_a_training_across_an_erasure_keeps_no_version_and_the_next_one_does(tmp_path):
    person = uuid.uuid4().hex
    root = tmp_path / "models"
    rows = _rows(person)

    class ErasedWhileRead(dict):
        """The lake's tables, read while an erasure begins (as the lake's part rewrites the lake)."""

        def get(self, key, default=None):
            if Registry(root).generation() == 0:
                erase_models(root, person, STAND_IN)
            return super().get(key, default)

    with pytest.raises(ErasedMeanwhile):
        train_job(tmp_path / "lake", root, epochs=2, dim=4, tables=ErasedWhileRead(rows))
    assert Registry(root).versions() == [] and Registry(root).current() is None

    made = train_job(tmp_path / "lake", root, epochs=2, dim=4, tables=rows)
    assert made["version"] == "v000001" and Registry(root).current() == "v000001"


def _event(position: int, type_: str, user: str | None, **fields) -> EventRecord:
    return EventRecord("test", f"s{position}", position, 0, type_, 1, fields["at"], user, pack(fields), position)


def _training_tables(root) -> dict[str, list[dict]]:
    """The training tables as ``read_lake`` gives them, read with DuckDB rather than Ray Data."""
    tables: dict[str, list[dict]] = {}
    with Lake(root) as lake:
        for name, columns in TRAINING_TABLES.items():
            if name not in lake.tables:
                tables[name] = []
                continue
            relation = lake.sql(f'SELECT * FROM "{name}"')
            present = [c for c in columns if c in relation.columns]
            relation = lake.sql(f'SELECT {", ".join(f"{chr(34)}{c}{chr(34)}" for c in present)} FROM "{name}"')
            tables[name] = [dict(zip(present, row, strict=True)) for row in relation.fetchall()]
    return tables


async def test_the_next_training_from_the_erased_lake_never_meets_the_person(tmp_path):
    person = uuid.uuid4().hex
    rows = _rows(person)
    records, position = [], 0
    for type_ in ("group.joined", "race.result", "group_event.attended", "group.listed"):
        for row in rows[type_]:
            position += 1
            fields = {**row, "at": T0 + position}
            if type_ == "race.result":
                fields = {"race_id": row["race_id"], "user_id": row["user_id"], "at": fields["at"],
                          "summary": {"sport": "run"}, "result": {"place": row["result_place"]}}  # fmt: skip
            if type_ == "group.listed":
                fields = {"group_id": row["group_id"], "at": fields["at"],
                          "listing": {"visibility": "public", "sports": ["run"], "region": "Bretagne"}}  # fmt: skip
            records.append(_event(position, type_, fields.get("user_id"), **fields))
    LakeWriter(tmp_path / "lake").write(records)
    seen = build(_training_tables(tmp_path / "lake"))
    assert person in seen.users and f"user:{person}" in seen.items

    await LakePart(tmp_path / "lake").erase(person, STAND_IN)
    made = train_job(
        tmp_path / "lake", tmp_path / "models", epochs=2, dim=4, tables=_training_tables(tmp_path / "lake")
    )

    model = Registry(tmp_path / "models").load(made["version"])
    assert person not in model.users and not [i for i in model.items if person in i]
    assert len(model.users) == len(seen.users) - 1 and await ModelsPart(tmp_path / "models").remnants(person) == []


@pytest.mark.parametrize(
    "person",
    ["quote\"and'apostrophe", "x'; DROP TABLE users; --", "ü-名前-🏃", "back\\slash\nnew line", "p" * 128],
    ids=["quotes", "sql", "unicode", "escapes", "longest"],
)
async def test_hostile_ids_leave_the_models_and_bad_arguments_are_refused(tmp_path, person):
    keeper = Registry(tmp_path / "models")
    keeper.save(_model(_rows(person, others=5)), {})
    part = ModelsPart(keeper.root)
    assert await part.remnants(person)

    assert await part.erase(person, STAND_IN) == 1

    assert await part.remnants(person) == [] and person not in keeper.load("v000001").users
    for user_id, stand_in, error in [("", STAND_IN, ValueError), (None, STAND_IN, TypeError),
                                     (person, "", ValueError), (person, f"erased-{person}", ValueError)]:  # fmt: skip
        with pytest.raises(error):
            await part.erase(user_id, stand_in)
    with pytest.raises(TypeError):
        await part.remnants(b"bytes")  # type: ignore[arg-type]


async def test_no_registry_yet_means_nothing_to_erase_and_a_broken_model_file_is_listed(tmp_path):
    person = uuid.uuid4().hex
    part = ModelsPart(tmp_path / "models")
    assert await part.remnants(person) == []
    assert await part.erase(person, STAND_IN) == 0
    assert await part.remnants(person) == [] and Registry(tmp_path / "models").generation() == 1

    keeper = Registry(tmp_path / "models")
    keeper.save(_model(_rows(person, others=3)), {})
    (keeper.root / "versions" / "v000001" / "model.pt").write_bytes(b"not a model " + person.encode())
    assert await part.erase(person, STAND_IN) == 0  # unreadable: left, and listed
    assert [line.split(":")[0] for line in await part.remnants(person)] == ["v000001"]
