"""The recommendation model without Ray: interactions from lake rows (hostile ones dropped), the model
against popularity on a planted community, cold start, the index's exclusions, the registry."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.recommend import Index, Registry, build, evaluate, time_split, train
from engine.recommend.evaluate import model_scorer, popularity_scorer
from loadtest.reco_eval import community


@pytest.fixture(scope="module")
def planted():
    rows = community(users=300, places=4, seed=3)
    data = build(rows)
    fit, test = time_split(data, 0.2)
    return rows, data, fit, test, train(fit, epochs=25, dim=16, seed=0)


def test_the_model_beats_popularity_clearly_on_people_and_groups(planted):
    _, _, fit, test, model = planted
    ours = evaluate(model_scorer(model, fit), fit, test)
    popular = evaluate(popularity_scorer(fit), fit, test)
    for kind in ("user", "group"):
        assert ours[kind].recall > popular[kind].recall + 0.3, (kind, ours[kind], popular[kind])
        assert ours[kind].ndcg > 2 * popular[kind].ndcg, (kind, ours[kind], popular[kind])


def test_the_split_is_by_time_and_holds_out_only_known_users(planted):
    _, data, fit, test, _ = planted
    assert len(fit) + len(test) <= len(data)
    assert fit.at.max() <= test.at.min()
    assert set(test.user.tolist()) <= set(fit.user.tolist())


def test_hostile_rows_are_dropped_alone_and_counted():
    rows = {
        "group.joined": [
            {"user_id": "a", "group_id": "g1", "at": 1.0},
            {"user_id": None, "group_id": "g1", "at": 1.0},
            {"user_id": "a" * 500, "group_id": "g1", "at": 1.0},
            {"user_id": 7, "group_id": "g1", "at": 1.0},
            {"user_id": "b", "group_id": "g1", "at": math.nan},
            {"user_id": "b", "group_id": "g1", "at": "yesterday"},
            {"user_id": "b", "group_id": "g1", "at": True},
            {"user_id": "b", "group_id": "g2"},
        ],
        "group.listed": [{"group_id": "g1", "at": 0.0, "listing_visibility": "public", "listing_sports": "not json"}],
        "workout.recorded": [{"user_id": ["x"], "region": {"a": 1}, "summary_sport": 3}],
    }
    data = build(rows)
    assert data.users == ["a"] and data.items == ["group:g1"]
    assert data.skipped == 7
    assert data.item_features["group:g1"] == ["kind:group", "sport:not json"]


def test_follows_that_still_hold_comments_and_kudos_become_pairs_with_their_weights():
    rows = {
        "follow.started": [
            {"user_id": "ann", "followee_id": "bob", "at": 1.0},
            {"user_id": "ann", "followee_id": "cat", "at": 1.0},  # ended at 2, again at 3: holds
            {"user_id": "ann", "followee_id": "cat", "at": 3.0},
            {"user_id": "bob", "followee_id": "dan", "at": 1.0},  # ended at 5: gone
            {"user_id": "bob", "followee_id": ["dan"], "at": 1.0},  # hostile: dropped, counted
        ],
        "follow.ended": [
            {"user_id": "ann", "followee_id": "cat", "at": 2.0},
            {"user_id": "bob", "followee_id": "dan", "at": 5.0},
        ],
        "comment.posted": [{"user_id": "dan", "owner": "ann", "at": 4.0}],
        "kudos.given": [{"user_id": "cat", "owner": "ann", "at": 4.0}, {"user_id": "cat", "owner": "cat", "at": 4.0}],
    }
    data = build(rows)
    pairs = {(data.users[u], data.items[i], round(float(w), 3)) for u, i, w in zip(data.user, data.item, data.weight)}
    assert pairs == {("ann", "user:bob", 1.0), ("ann", "user:cat", 1.0), ("dan", "user:ann", 0.7),
                     ("cat", "user:ann", 0.5)}, "no follow that ended, no kudos to oneself"  # fmt: skip
    assert data.skipped == 1


def test_a_group_hidden_at_its_last_listing_is_never_in_the_index_and_one_listed_again_is():
    joined = [{"user_id": f"u{n}", "group_id": g, "at": float(n)} for n in range(6) for g in ("open", "secret", "back")]
    listed = [
        {"group_id": "secret", "at": 1.0, "listing_visibility": "public"},
        {"group_id": "secret", "at": 2.0, "listing_visibility": None},
        {"group_id": "back", "at": 1.0, "listing_visibility": None},
        {"group_id": "back", "at": 3.0, "listing_visibility": "private"},
    ]
    model = train(build({"group.joined": joined, "group.listed": listed}), epochs=2, dim=4)
    index = Index(model)
    found = index.search(np.stack([model.user_vectors[0]]), "group", [10], [set()])[0]
    assert {g for g, _ in found} == {"open", "back"}


def test_a_newcomer_is_proposed_the_clubs_of_their_region_and_sport(planted):
    rows, data, _, _, _ = planted
    model = train(data, epochs=25, dim=16, seed=0)
    index = Index(model)
    vector, cold = model.user_vector("nobody-yet", ["sport:swim", "region:region-2"])
    assert cold
    top = index.search(np.stack([vector]), "group", [4], [set()])[0]
    clubs = {r["group_id"]: (r["listing_region"], r["listing_sports"]) for r in rows["group.listed"]}
    assert [clubs[g] for g, _ in top[:2]] == [("region-2", '["swim"]')] * 2, top


def test_the_index_leaves_out_what_is_excluded_and_answers_each_row_its_own_k(planted):
    _, data, _, _, model = planted
    index = Index(model)
    users = np.stack([model.user_vectors[0], model.user_vectors[1]])
    first = index.search(users, "user", [5, 2], [set(), set()])
    assert [len(r) for r in first] == [5, 2]
    excluded = {first[0][0][0], first[0][1][0]}
    again = index.search(users, "user", [5, 2], [excluded, set()])
    assert not excluded & {i for i, _ in again[0]} and len(again[0]) == 5
    with pytest.raises(ValueError, match="kind is one of"):
        index.search(users, "shoe", [1, 1], [set(), set()])


def test_the_registry_keeps_versions_promotes_and_rolls_back(planted, tmp_path):
    *_, model = planted
    registry = Registry(tmp_path)
    assert registry.current() is None and registry.versions() == []
    first = registry.save(model, {"recall": 0.5})
    second = registry.save(model, {"recall": 0.6})
    assert (first, second) == ("v000001", "v000002")
    registry.promote(first)
    registry.promote(second)
    assert registry.current() == second
    assert [v["current"] for v in registry.versions()] == [False, True]
    assert registry.rollback() == first and registry.current() == first
    with pytest.raises(LookupError, match="no earlier"):
        registry.rollback()
    loaded = registry.load(first)
    assert loaded.items == model.items and np.array_equal(loaded.item_vectors, model.item_vectors)
    for bad in ("../etc", "v1", "v000009", ""):
        with pytest.raises(LookupError):
            registry.promote(bad)
    (tmp_path / "current").write_text("../../x")
    assert registry.current() is None  # a pointer that is not a version name is no pointer


def test_the_models_command_lists_promotes_and_rolls_back(planted, tmp_path, capsys):
    from serve.cli import main

    *_, model = planted
    registry = Registry(tmp_path)
    first, second = registry.save(model, {}), registry.save(model, {})
    assert main(["models", "promote", first, "--registry", str(tmp_path)]) == 0
    assert main(["models", "promote", second, "--registry", str(tmp_path)]) == 0
    assert main(["models", "rollback", "--registry", str(tmp_path)]) == 0
    assert registry.current() == first
    assert main(["models", "list", "--registry", str(tmp_path)]) == 0
    assert f"* {first}" in capsys.readouterr().out
    assert main(["models", "promote", "../../etc", "--registry", str(tmp_path)]) == 1
    assert main(["models", "promote", "--registry", str(tmp_path)]) == 2
    assert "no model version" in capsys.readouterr().err
