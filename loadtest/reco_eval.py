"""The recommendation model against popularity and random, on a synthetic community with planted structure.

The community: places (regions), each with clubs of one sport; athletes with a home place and one
or two sports, who join clubs of their place and sports, challenges of their sports, races of their
place; cliques of friends inside each club who turn up to the club's events together (so who trains
with whom follows co-participation), follow each other, give kudos and comment; a share of joins at random. Rows come out as the lake keeps
them (event type → rows with the lake's columns), so the model is trained through the same
``engine.recommend.build`` as from the lake.

    .venv/bin/python -m loadtest.reco_eval                 # 3,000 athletes (the table in docs/models.md)
    .venv/bin/python -m loadtest.reco_eval --users 500     # quicker
"""

from __future__ import annotations

import argparse
import random
import time

from engine.recommend import build, evaluate, time_split, train
from engine.recommend.evaluate import model_scorer, popularity_scorer, random_scorer

__all__ = ["community", "compare", "main"]

SPORTS = ("run", "ride", "swim", "hike", "row")
DAY = 86_400.0
T0 = 1_750_000_000.0


def community(users: int = 3000, places: int = 12, seed: int = 1, noise: float = 0.1) -> dict[str, list[dict]]:
    """Lake rows of a community of ``users`` athletes with planted structure (docs/models.md)."""
    rng = random.Random(seed)
    rows: dict[str, list[dict]] = {t: [] for t in ("workout.recorded", "group.joined", "group.listed",
                                                   "challenge.joined", "race.result", "group_event.attended",
                                                   "follow.started", "follow.ended", "kudos.given",
                                                   "comment.posted")}  # fmt: skip
    region = [f"region-{p}" for p in range(places)]
    clubs = [(f"club-{p}-{s}-{n}", p, s) for p in range(places) for s in SPORTS for n in range(2)]
    challenges = [(f"ch-{s}-{n}", s) for s in SPORTS for n in range(8)]
    races = [(f"race-{p}-{s}-{n}", p, s, T0 + rng.uniform(0, 365) * DAY) for p in range(places)
             for s in SPORTS[:3] for n in range(3)]  # fmt: skip
    for club, p, s in clubs:
        hidden = rng.random() < 0.05
        rows["group.listed"].append({"group_id": club, "at": T0, "listing_visibility": None if hidden else "public",
                                     "listing_sports": f'["{s}"]', "listing_region": region[p]})  # fmt: skip
    athletes = []
    for n in range(users):
        user = f"u{n:06d}"
        p = rng.randrange(places)
        sports = rng.sample(SPORTS, rng.choice((1, 1, 2)))
        athletes.append((user, p, sports))
        for _ in range(3):
            rows["workout.recorded"].append(
                {"user_id": user, "region": region[p], "summary_sport": rng.choice(sports), "at": T0}
            )
    members: dict[str, list[str]] = {}
    for user, p, sports in athletes:
        mine = [c for c in clubs if c[1] == p and c[2] in sports]
        for club, _, _ in rng.sample(mine, min(len(mine), rng.choice((1, 2)))):
            members.setdefault(club, []).append(user)
            rows["group.joined"].append({"user_id": user, "group_id": club, "at": T0 + rng.uniform(0, 365) * DAY})
        for challenge, _ in rng.sample([c for c in challenges if c[1] in sports], 2):
            rows["challenge.joined"].append({"user_id": user, "challenge_id": challenge, "ends": T0 + 400 * DAY,
                                             "at": T0 + rng.uniform(0, 365) * DAY})  # fmt: skip
        for race, _, _, at in [r for r in races if r[1] == p and r[2] in sports]:
            if rng.random() < 0.4:
                rows["race.result"].append({"user_id": user, "race_id": race, "summary_sport": race.split("-")[2],
                                            "result_place": rng.randrange(1, 200), "at": at})  # fmt: skip
        if rng.random() < noise:
            club = rng.choice(clubs)[0]
            rows["group.joined"].append({"user_id": user, "group_id": club, "at": T0 + rng.uniform(0, 365) * DAY})
    for club, people in members.items():
        cliques = [people[i : i + 5] for i in range(0, len(people), 5)]
        for n in range(24):  # a club event every two weeks; one or two cliques come
            at = T0 + (n * 15 + rng.uniform(0, 5)) * DAY
            for clique in rng.sample(cliques, min(len(cliques), rng.choice((1, 2)))):
                for user in clique:
                    if rng.random() < 0.7:
                        rows["group_event.attended"].append({"user_id": user, "event_id": f"{club}-e{n}",
                                                             "group_id": club, "at": at + rng.uniform(0, 3600)})  # fmt: skip
        for clique in cliques:  # friends follow each other, cheer and comment, over the year
            for user in clique:
                for friend in clique:
                    if friend == user:
                        continue
                    if rng.random() < 0.5:
                        at = T0 + rng.uniform(0, 365) * DAY
                        rows["follow.started"].append({"user_id": user, "followee_id": friend, "at": at})
                        if rng.random() < 0.1:  # some unfollow later
                            rows["follow.ended"].append({"user_id": user, "followee_id": friend,
                                                         "at": at + rng.uniform(1, 60) * DAY})  # fmt: skip
                    for _ in range(rng.choice((0, 1, 2))):
                        rows["kudos.given"].append({"user_id": user, "owner": friend,
                                                    "at": T0 + rng.uniform(0, 365) * DAY})  # fmt: skip
                    if rng.random() < 0.2:
                        rows["comment.posted"].append({"user_id": user, "owner": friend,
                                                       "at": T0 + rng.uniform(0, 365) * DAY})  # fmt: skip
    return rows


def compare(rows: dict[str, list[dict]], *, epochs: int = 30, dim: int = 32, seed: int = 0, k: int = 20) -> dict:
    """recall@k and NDCG@k per kind of the model, popularity and random on a time-split hold-out."""
    data = build(rows)
    fit, test = time_split(data, 0.2)
    started = time.perf_counter()
    model = train(fit, epochs=epochs, dim=dim, seed=seed)
    trained_s = time.perf_counter() - started
    table = {
        "model": evaluate(model_scorer(model, fit), fit, test, k),
        "popularity": evaluate(popularity_scorer(fit), fit, test, k),
        "random": evaluate(random_scorer(len(fit.items), seed), fit, test, k),
    }
    return {"table": table, "pairs": len(data), "train_pairs": len(fit), "test_pairs": len(test),
            "users": len(data.users), "items": len(data.items), "train_s": trained_s}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    result = compare(community(args.users, seed=args.seed), epochs=args.epochs)
    print(f"{result['users']:,} users, {result['items']:,} items, {result['pairs']:,} pairs "
          f"({result['train_pairs']:,} train, {result['test_pairs']:,} held out); trained in {result['train_s']:.1f} s")  # fmt: skip
    print(
        "| kind | users | model recall@20 | model NDCG@20 | popularity recall@20 | popularity NDCG@20 | random recall@20 | random NDCG@20 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    table = result["table"]
    for kind in table["model"]:
        m, p, r = table["model"][kind], table["popularity"][kind], table["random"][kind]
        print(
            f"| {kind} | {m.users:,} | {m.recall:.3f} | {m.ndcg:.3f} | {p.recall:.3f} | {p.ndcg:.3f} | {r.recall:.3f} | {r.ndcg:.3f} |"
        )


if __name__ == "__main__":
    main()
