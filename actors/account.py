"""An athlete's account: credentials, sessions, profile, privacy, social graph, workouts.

Everything here is deterministic in state and message: ids, hashes and times are
computed by the caller (the API) and arrive in the message, so a replay of the
journal rebuilds the same account. Password hashing and token signing happen in
the API, never in the entity.
"""

from __future__ import annotations

from typing import Any

from actors.athlete import SEXES, birth_year_problem
from actors.campaign import audience_shard
from actors.events import (
    ACCOUNT_ERASED,
    AUDIENCE_CHANGED,
    FOLLOW_ENDED,
    FOLLOW_STARTED,
    HEALTH_WITHDRAWN,
    RACE_RESULT,
    WORKOUT_DELETED,
    WORKOUT_EDITED,
    WORKOUT_RECORDED,
)
from actors.paging import page
from engine.entity import Entity, query, update
from engine.errors import NotFound, Rejected
from engine.events import Event, To, react
from engine.privacy_zones import MAX_ZONES

__all__ = ["Account", "COUNTED_FIELDS", "HEALTH_FIELDS", "ROLES", "VISIBILITIES"]

ROLES = ("athlete", "organizer", "admin")
VISIBILITIES = ("public", "followers", "private")
_PROFILE_FIELDS = ("display_name", "sports", "city", "region", "units", "bio", "time_zone", "sex", "birth_year")
_PERSONAL = ("sex", "birth_year")  # for the segment boards' filters only: nobody else sees them (docs/segments.md)
_MAX_SESSIONS = 20
_TARGETED = ("region", "sports", "time_zone")  # what campaigns target by (docs/commerce.md)
_CONSENT_LOG = 50
HEALTH_FIELDS = ("avg_hr", "max_hr", "hrv", "weight_kg")  # what a workout summary holds of health data
# What boards, challenges and points count of a workout: a change to one of them is a workout.edited.
COUNTED_FIELDS = ("visibility", "sport", "start", "elapsed_s", "moving_s", "distance_m", "elevation_gain_m",
                  "best_efforts", "source")  # fmt: skip


class Account(Entity):
    kind = "account"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.registered = False
        self.email = ""
        self.password_hash = ""
        self.roles: list[str] = []
        self.created_at = 0.0
        self.profile: dict[str, Any] = {}
        self.private = False  # a private profile needs follow approval
        self.default_visibility = "public"
        self.sessions: dict[str, dict] = {}  # refresh-token family → {hash, expires, created}
        self.following: dict[str, float] = {}
        self.followers: dict[str, float] = {}
        self.requests_in: dict[str, float] = {}  # who asked to follow me
        self.requests_out: dict[str, float] = {}
        self.blocked: dict[str, float] = {}
        self.workouts: list[dict] = []  # summaries, newest first
        self.fingerprints: dict[str, str] = {}  # file fingerprint → workout id
        self.marketing_consent = False
        self.health_consent = False  # heart rate, HRV, weight are stored only with it (docs/privacy.md)
        self.consent_log: list[dict] = []  # when and how consent was given or taken back, the last _CONSENT_LOG
        self.erasure: dict | None = None  # {"requested_at", "due"} while an erasure waits out its grace period
        self.privacy_zones: list[dict] = []  # {"id", "label", "lat", "lon", "radius_m"}: placed, not the address

    # -- account -------------------------------------------------------

    def _require(self) -> None:
        if not self.registered:
            raise NotFound("no such account")

    @update
    def register(self, email: str, password_hash: str, display_name: str, roles: list[str] | None = None) -> dict:
        if self.registered:
            raise Rejected("this account already exists")
        self.registered = True
        self.email = email
        self.password_hash = password_hash
        self.roles = list(roles or ["athlete"])
        self.created_at = self.now
        self.profile = {"display_name": display_name, "sports": [], "city": None, "region": None, "units": "metric"}
        return self.me()

    @query
    def exists(self) -> bool:
        return self.registered

    @query
    def credentials(self) -> dict:
        self._require()
        return {"password_hash": self.password_hash, "roles": self.roles, "email": self.email}

    @update
    def change_password(self, password_hash: str) -> None:
        self._require()
        self.password_hash = password_hash
        self.sessions.clear()  # every refresh token dies with the old password

    @update
    def set_roles(self, roles: list[str]) -> list[str]:
        self._require()
        unknown = set(roles) - set(ROLES)
        if unknown or not roles:
            raise Rejected(f"roles are one or more of {', '.join(ROLES)}")
        self.roles = sorted(set(roles))
        return self.roles

    # -- sessions (rotating refresh tokens) ----------------------------

    @update
    def open_session(self, family: str, token_hash: str, expires: float) -> None:
        self._require()
        for stale in [f for f, s in self.sessions.items() if s["expires"] <= self.now]:
            del self.sessions[stale]
        while len(self.sessions) >= _MAX_SESSIONS:  # the oldest sign-in makes room
            del self.sessions[min(self.sessions, key=lambda f: self.sessions[f]["created"])]
        self.sessions[family] = {"hash": token_hash, "expires": expires, "created": self.now}

    @update
    def rotate_session(self, family: str, token_hash: str, new_hash: str, expires: float) -> str:
        """``ok``, or why not: a reused old token revokes its whole family (it was stolen)."""
        session = self.sessions.get(family)
        if session is None or session["expires"] <= self.now:
            self.sessions.pop(family, None)
            return "expired"
        if session["hash"] != token_hash:
            del self.sessions[family]
            return "reused"
        session["hash"] = new_hash
        session["expires"] = expires
        return "ok"

    @update
    def close_session(self, family: str) -> None:
        self.sessions.pop(family, None)

    # -- profile ---------------------------------------------------------

    @update
    def update_profile(
        self,
        profile: dict | None = None,
        private: bool | None = None,
        default_visibility: str | None = None,
        marketing_consent: bool | None = None,
        consent_via: str = "settings",
        consent_version: str | None = None,
    ) -> dict:
        self._require()
        targeted = {k: self.profile.get(k) for k in _TARGETED}
        consented = self.marketing_consent
        if default_visibility is not None and default_visibility not in VISIBILITIES:
            raise Rejected(f"visibility is one of {', '.join(VISIBILITIES)}")
        for name, value in (profile or {}).items():
            if name not in _PROFILE_FIELDS:
                raise Rejected(f"unknown profile field {name!r}")
            if name == "sex" and value is not None and value not in SEXES:
                raise Rejected(f"sex is one of {', '.join(SEXES)}, or null")
            if name == "birth_year" and value is not None and (problem := birth_year_problem(value, self.now)):
                raise Rejected(problem)
            self.profile[name] = value
        if private is not None:
            self.private = private
            if not private:  # opening the profile accepts everyone waiting
                for follower in list(self.requests_in):
                    self.followers[follower] = self.now
                self.requests_in.clear()
        if default_visibility is not None:
            self.default_visibility = default_visibility
        if marketing_consent is not None and marketing_consent != self.marketing_consent:
            self.marketing_consent = marketing_consent
            self._log_consent("marketing", marketing_consent, consent_via, consent_version)
        now_targeted = {k: self.profile.get(k) for k in _TARGETED}
        if consented != self.marketing_consent or (self.marketing_consent and targeted != now_targeted):
            self.emit(AUDIENCE_CHANGED, user_id=self.id, shard=audience_shard(self.id),
                      consent=self.marketing_consent, profile=now_targeted if self.marketing_consent else None)  # fmt: skip
        return self.me()

    def _log_consent(self, purpose: str, given: bool, via: str, version: str | None) -> None:
        entry = {"at": self.now, "purpose": purpose, "consent": given, "via": via, "version": version}
        self.consent_log = [*self.consent_log, entry][-_CONSENT_LOG:]

    @update
    def set_health_consent(self, given: bool, version: str, via: str = "settings") -> dict:
        """Consent to health data (heart rate, HRV, weight), recorded with the text's version. Withdrawn,
        it takes effect at once: the account's workouts lose their heart rates here, and everyone else
        holding the athlete's health data hears ``health.withdrawn``."""
        self._require()
        if given != self.health_consent:
            self.health_consent = given
            self._log_consent("health", given, via, version)
            if not given:
                for summary in self.workouts:
                    for name in HEALTH_FIELDS:
                        summary.pop(name, None)
                self.emit(HEALTH_WITHDRAWN, user_id=self.id)
        return {"health": self.health_consent, "marketing": self.marketing_consent}

    @query
    def consents(self) -> dict:
        self._require()
        return {"health": self.health_consent, "marketing": self.marketing_consent, "log": self.consent_log}

    @query
    def me(self) -> dict:
        self._require()
        return {
            "id": self.id,
            "email": self.email,
            "roles": self.roles,
            "created_at": self.created_at,
            "profile": self.profile,
            "private": self.private,
            "default_visibility": self.default_visibility,
            "marketing_consent": self.marketing_consent,
            "health_consent": self.health_consent,
            "consent_log": self.consent_log,
            "erasure": self.erasure,
            "privacy_zones": self.privacy_zones,
            "followers": len(self.followers),
            "following": len(self.following),
            "workouts": len(self.workouts),
        }

    @query
    def view(self, viewer: str | None = None) -> dict:
        """What ``viewer`` may see of this profile, and how they relate."""
        self._require()
        relation = self._relation(viewer)
        if relation["blocked"]:
            raise NotFound("no such account")
        card = {"id": self.id, "display_name": self.profile.get("display_name"), "private": self.private}
        if not self.private or relation["following"] or viewer == self.id:
            card.update(
                profile={k: v for k, v in self.profile.items() if viewer == self.id or k not in _PERSONAL},
                followers=len(self.followers),
                following=len(self.following),
                workouts=len(self.workouts),
            )
        return {**card, "relation": relation}

    def _relation(self, viewer: str | None) -> dict:
        return {
            "self": viewer == self.id,
            "following": viewer in self.followers,  # the viewer follows this account
            "followed_by": viewer in self.following,
            "requested": viewer in self.requests_in,
            "blocked": viewer in self.blocked,
        }

    @query
    def relation(self, viewer: str | None = None) -> dict:
        self._require()
        return {**self._relation(viewer), "private": self.private, "roles": self.roles}

    # -- the social graph: each side keeps its half, the API updates both -----

    @update
    def follow_requested(self, follower: str) -> str:
        """Someone asks to follow this account: ``following``, ``requested`` or refused."""
        self._require()
        if follower == self.id:
            raise Rejected("you cannot follow yourself")
        if follower in self.blocked:
            raise Rejected("you cannot follow this athlete")
        if follower in self.followers:
            return "following"
        if self.private:
            self.requests_in[follower] = self.now
            return "requested"
        self.followers[follower] = self.now
        return "following"

    @update
    def now_following(self, followee: str, status: str) -> None:
        self._require()
        if status == "following":
            self._started_following(followee)
            self.requests_out.pop(followee, None)
        else:
            self.requests_out[followee] = self.now

    def _started_following(self, followee: str) -> None:
        if followee not in self.following:
            self.emit(FOLLOW_STARTED, user_id=self.id, followee_id=followee)
        self.following[followee] = self.now

    def _stopped_following(self, followee: str) -> None:
        if self.following.pop(followee, None) is not None:
            self.emit(FOLLOW_ENDED, user_id=self.id, followee_id=followee)

    @update
    def answer_request(self, follower: str, accept: bool) -> bool:
        self._require()
        if self.requests_in.pop(follower, None) is None:
            raise NotFound("no such follow request")
        if accept:
            self.followers[follower] = self.now
        return accept

    @update
    def request_answered(self, followee: str, accepted: bool) -> None:
        self.requests_out.pop(followee, None)
        if accepted:
            self._started_following(followee)

    @update
    def lost_follower(self, follower: str) -> None:
        self.followers.pop(follower, None)
        self.requests_in.pop(follower, None)

    @update
    def stopped_following(self, followee: str) -> None:
        self._stopped_following(followee)
        self.requests_out.pop(followee, None)

    @update
    def block(self, other: str) -> None:
        self._require()
        if other == self.id:
            raise Rejected("you cannot block yourself")
        self.blocked[other] = self.now
        self._stopped_following(other)
        for relation in (self.followers, self.requests_in, self.requests_out):
            relation.pop(other, None)

    @update
    def unblock(self, other: str) -> None:
        self.blocked.pop(other, None)

    @query
    def people(self, which: str, before: list | None = None, limit: int = 50) -> dict:
        self._require()
        relation = {"followers": self.followers, "following": self.following, "requests": self.requests_in}[which]
        items = sorted(({"id": who, "at": at} for who, at in relation.items()), key=lambda i: (i["at"], i["id"]))
        return page(items[::-1], before, limit)

    @query
    def audience_shards(self) -> list[str]:
        """The campaign audience shard of this account (for events that name a user but no shard)."""
        return [audience_shard(self.id)]

    @query
    def ids(self, which: str) -> list[str]:
        """Every id in ``followers`` or ``following`` (fan-out, friends-only leaderboards)."""
        return list({"followers": self.followers, "following": self.following}[which])

    # -- workouts ----------------------------------------------------------

    @update
    def add_workout(self, summary: dict, fingerprint: str | None = None) -> dict:
        """Record a workout's summary (its visibility, when unset, the account's default); a file seen
        before is refused as a duplicate. Followers' feeds get it through ``workout.recorded``."""
        self._require()
        if fingerprint is not None and fingerprint in self.fingerprints:
            raise Rejected(f"duplicate: this file was already imported as workout {self.fingerprints[fingerprint]}")
        if any(w["id"] == summary["id"] for w in self.workouts):
            raise Rejected(f"workout {summary['id']} is already in this account")
        summary = {**summary, "visibility": summary.get("visibility") or self.default_visibility}
        if fingerprint is not None:
            self.fingerprints[fingerprint] = summary["id"]
        self.workouts.append(summary)
        self.workouts.sort(key=lambda w: (w["start"], w["id"]), reverse=True)
        self.emit(
            WORKOUT_RECORDED,
            owner=self.id,
            owner_name=self.profile.get("display_name"),
            region=self.profile.get("region"),
            workout_id=summary["id"],
            visibility=summary["visibility"],
            summary=summary,
        )
        return summary

    @react(RACE_RESULT, to=To.field("user_id"))
    def on_race_result(self, event: Event) -> None:
        """A race's result joins the athlete's workouts (and, through them, their followers' feeds)."""
        summary, result = event.fields["summary"], event.fields["result"]
        if result.get("flags") or result.get("provisional") or result.get("status") not in ("finished", "dnf"):
            summary = {**summary, "flagged": True}  # fair play had doubts: challenges count nothing of it
        self.add_workout(summary)  # Rejected (declined) for an account that is gone, or a repeat

    @update
    def edit_workout(self, workout_id: str, changes: dict) -> dict:
        """Change a workout's summary; a change to what counts of it (``COUNTED_FIELDS``) is told as
        ``workout.edited`` (boards, challenges)."""
        for summary in self.workouts:
            if summary["id"] == workout_id:
                before = dict(summary)
                summary.update(changes)
                if any(before.get(name) != summary.get(name) for name in COUNTED_FIELDS):
                    self.emit(WORKOUT_EDITED, owner=self.id, workout_id=workout_id, before=before, after=summary)
                return summary
        raise NotFound("no such workout")

    @update
    def remove_workout(self, workout_id: str) -> None:
        gone = [w for w in self.workouts if w["id"] == workout_id]
        self.workouts = [w for w in self.workouts if w["id"] != workout_id]
        self.fingerprints = {f: w for f, w in self.fingerprints.items() if w != workout_id}
        for summary in gone:  # boards, challenges and points take back what it counted
            self.emit(WORKOUT_DELETED, owner=self.id, workout_id=workout_id, summary=summary)

    @query
    def workout_list(self, viewer: str | None = None, before: list | None = None, limit: int = 20) -> dict:
        self._require()
        visible = [w for w in self.workouts if self._may_see(viewer, w["visibility"])]
        return page(visible, before, limit, key=("start", "id"))

    @query
    def workout_ids(self) -> list[str]:
        return [w["id"] for w in self.workouts]

    @query
    def all_workouts(self) -> list[dict]:
        return self.workouts

    def _may_see(self, viewer: str | None, visibility: str) -> bool:
        if viewer == self.id:
            return True
        if viewer in self.blocked:
            return False
        if visibility == "public":
            return not self.private or viewer in self.followers
        return visibility == "followers" and viewer in self.followers

    @query
    def may_see(self, viewer: str | None, visibility: str) -> bool:
        return self.registered and self._may_see(viewer, visibility)

    # -- privacy zones (docs/privacy.md, engine/privacy_zones.py) ----------------

    @update
    def add_privacy_zone(self, zone_id: str, label: str, lat: float, lon: float, radius_m: float) -> dict:
        """A zone already placed by the API (its centre away from the address, which is not kept)."""
        self._require()
        if len(self.privacy_zones) >= MAX_ZONES:
            raise Rejected(f"at most {MAX_ZONES} privacy zones")
        zone = {"id": zone_id, "label": label, "lat": lat, "lon": lon, "radius_m": radius_m, "created_at": self.now}
        self.privacy_zones = [*self.privacy_zones, zone]
        return zone

    @update
    def remove_privacy_zone(self, zone_id: str) -> None:
        self._require()
        kept = [z for z in self.privacy_zones if z["id"] != zone_id]
        if len(kept) == len(self.privacy_zones):
            raise NotFound("no such privacy zone")
        self.privacy_zones = kept

    @query
    def zones(self) -> list[dict]:
        """The zones that hide this athlete's tracks from others (empty for an account that is gone)."""
        return self.privacy_zones if self.registered else []

    # -- erasure (docs/privacy.md) ----------------------------------------------

    @update
    def request_erasure(self, due: float) -> dict:
        """Erase this account at ``due`` (the grace period's end) unless cancelled before; a second
        request keeps the first one's date."""
        self._require()
        if self.erasure is None:
            self.erasure = {"requested_at": self.now, "due": due}
            self.set_timer("erasure", due, "erase_now")
        return self.erasure

    @update
    def cancel_erasure(self) -> None:
        self._require()
        if self.erasure is None:
            raise NotFound("no erasure is pending")
        self.erasure = None
        self.cancel_timer("erasure")

    @query
    def erasure_pending(self) -> dict | None:
        self._require()
        return self.erasure

    @update
    def erase_now(self) -> None:
        """The grace period is over: the account forgets everything at once (nobody can sign in or see
        it from here on) and tells the eraser, which removes the person from everywhere else."""
        if self.erasure is None or not self.registered:
            return
        requested_at = self.erasure["requested_at"]
        self.restore(Account(self.id).snapshot())
        self.emit(ACCOUNT_ERASED, user_id=self.id, requested_at=requested_at)

    # -- personal data -------------------------------------------------------

    @query
    def export(self) -> dict:
        self._require()
        return {
            **self.me(),
            "following": list(self.following),
            "followers": list(self.followers),
            "blocked": list(self.blocked),
            "workouts": self.workouts,
        }
