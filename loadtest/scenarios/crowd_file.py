"""The seeded crowd (``loadtest.crowd``) as locust users see it: no Ray, no secrets."""

from __future__ import annotations

import itertools
import json
import os
from functools import cache


@cache
def crowd() -> dict:
    with open(os.environ.get("ARENA_CROWD", "reports/crowd.json")) as file:
        return json.load(file)


@cache
def identities():
    """Each seeded athlete once, shared by every user of this locust process."""
    return iter(crowd()["athletes"])


def cycle_identities():
    return itertools.cycle(crowd()["athletes"])
