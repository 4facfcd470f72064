"""Locust's final request counts, written when it quits to ``ARENA_FINAL_COUNTS`` (JSON).

Its CSV is rewritten once a second while it runs and not at the end, so it can miss the
last second; a scenario that compares what locust sent with what Arena took reads these.
"""

from __future__ import annotations

import json
import os

from locust import events


@events.quitting.add_listener
def _write(environment, **_) -> None:
    path = os.environ.get("ARENA_FINAL_COUNTS")
    if not path or environment.runner is None:
        return
    entries = environment.runner.stats.entries.values()
    counts = {f"{e.method} {e.name}": {"requests": e.num_requests, "failures": e.num_failures} for e in entries}
    with open(path, "w") as file:
        json.dump(counts, file)
