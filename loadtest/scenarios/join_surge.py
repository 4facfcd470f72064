"""Join surge: every seeded athlete joins one race, as fast as they come.

Each request is one athlete's ``POST /races/{id}/athletes``; the run ends when the
crowd has joined. A 429 or 503 with Retry-After is Arena protecting itself: the
athlete waits as told and tries again (counted as its own request). Anything else
is an error. Run with ``python -m loadtest.scenarios join-surge``.
"""

from __future__ import annotations

import time

import gevent
from locust import FastHttpUser, constant, events, task

from loadtest.scenarios.crowd_file import crowd, identities

_done = {"joined": 0, "first": None, "last": None, "quitting": False}


class JoiningAthlete(FastHttpUser):
    wait_time = constant(0)

    @task
    def join(self) -> None:
        athlete = next(identities(), None)
        if athlete is None:  # everyone has joined: the surge is over (alone, the whole run is)
            if len(self.environment.user_classes) == 1 and not _done["quitting"]:
                _done["quitting"] = True
                gevent.spawn_later(0.1, self.environment.runner.quit)  # once, from outside the users
            gevent.sleep(3600)  # idle until the run ends (a stopped user would reset the stats)
            return
        path = f"/api/v1/races/{crowd()['race']}/athletes"
        headers = {"Authorization": f"Bearer {athlete['token']}"}
        while True:
            with self.client.post(path, json={}, headers=headers, name="join", catch_response=True) as answer:
                if answer.status_code in (429, 503) and answer.headers.get("Retry-After"):
                    answer.success()  # deliberate back-pressure, not a failure
                    time.sleep(float(answer.headers["Retry-After"]))
                    continue
                if answer.status_code != 201:
                    answer.failure(f"{answer.status_code}: {answer.text[:200]}")
                    return
            now = time.monotonic()
            _done["first"] = _done["first"] or now
            _done["last"] = now
            _done["joined"] += 1
            return


@events.quitting.add_listener
def _report(environment, **_) -> None:
    if _done["first"] is not None:
        span = _done["last"] - _done["first"]
        print(f"join surge: {_done['joined']:,} joined in {span:.1f} s ({_done['joined'] / max(span, 1e-9):,.0f}/s)")
