"""One slice of the campaigns' audience: the users whose id hashes to this shard, with what campaigns
target them by, and the campaigns' deliveries to them in each one's local time.

A campaign never holds its recipients: each of the ``SHARDS`` shards keeps its slice (kept current by
domain events: consent and profile from the account, tier from the subscription, level and groups from
their events), and on ``campaign.scheduled`` sets one durable timer per distinct local send time of its
members (quiet hours move it to 08:00 local). When a timer rings, the shard emits ``campaign.sent`` for
those members who consent and are targeted then, up to ``SENT_BATCH`` of them an event (the relay takes
one to each of their inboxes); the inbox applies mutes and frequency caps.
Bounded: the members of one slice (users / ``SHARDS``: 15,625 at 1,000,000 users, a few MB), ``GROUPS``
groups per member, the last ``CAMPAIGNS`` campaigns' figures.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from actors.account import Account
from actors.campaign import Campaign
from actors.erasing import pseudonymise
from actors.events import (
    AUDIENCE_CHANGED,
    CAMPAIGN_SCHEDULED,
    CAMPAIGN_SENT,
    GROUP_JOINED,
    GROUP_LEFT,
    LEVEL_REACHED,
    SUBSCRIPTION_CHANGED,
)
from engine.entity import Entity, query, update
from engine.events import Event, To, react

__all__ = ["CampaignAudience", "QUIET_FROM", "QUIET_UNTIL", "SENT_BATCH", "due_at", "matches"]

QUIET_FROM, QUIET_UNTIL = 22, 8  # local hours: nothing marketing is delivered from 22:00 to 08:00
GROUPS = 100
CAMPAIGNS = 50
SENT_BATCH = 2_000  # recipients one ``campaign.sent`` names: about 70 KB of ids
_ZONES: dict[str, ZoneInfo] = {}


def _zone(name: str | None) -> ZoneInfo:
    key = name or "UTC"
    zone = _ZONES.get(key)
    if zone is None:
        try:
            zone = ZoneInfo(key)
        except (ValueError, OSError, KeyError):
            zone = ZoneInfo("UTC")
        _ZONES[key] = zone
    return zone


def due_at(send_at: str, time_zone: str | None, now: float) -> float:
    """When a campaign meant for ``send_at`` (a local wall time, ``2025-05-01T09:00``) reaches someone in
    ``time_zone``: that time there, or now if it has passed, moved out of quiet hours to 08:00."""
    zone = _zone(time_zone)
    wanted = datetime.fromisoformat(send_at).replace(tzinfo=zone)
    local = datetime.fromtimestamp(max(wanted.timestamp(), now), zone)
    if local.hour >= QUIET_FROM:
        local = (local + timedelta(days=1)).replace(hour=QUIET_UNTIL, minute=0, second=0, microsecond=0)
    elif local.hour < QUIET_UNTIL:
        local = local.replace(hour=QUIET_UNTIL, minute=0, second=0, microsecond=0)
    return local.timestamp()


def matches(member: dict, target: dict) -> bool:
    """Whether a member who consents is in a campaign's target (an empty criterion takes everyone)."""
    return bool(
        member.get("c")
        and (not target["regions"] or member.get("r") in target["regions"])
        and (not target["sports"] or set(member.get("s", ())) & set(target["sports"]))
        and member.get("l", 0) >= target["min_level"]
        and (not target["groups"] or set(member.get("g", ())) & set(target["groups"]))
        and (not target["tiers"] or member.get("t", "free") in target["tiers"])
    )


class CampaignAudience(Entity):
    kind = "campaign_audience"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        # user -> c: consents, r: region, s: sports, z: time zone, t: tier, l: level, g: groups
        self.members: dict[str, dict] = {}
        self.campaigns: dict[str, dict] = {}  # id -> spec, sent, zones done; the last CAMPAIGNS

    def erase_user(self, user_id: str, stand_in: str) -> bool:
        """Their targeting row goes (they are no longer in any audience); a campaign they created stays
        scheduled, created by the stand-in."""
        self.members.pop(user_id, None)
        return pseudonymise(self, user_id, stand_in)

    def _member(self, user_id: str) -> dict:
        member = self.members.get(user_id)
        if member is None:
            member = self.members[user_id] = {}
        return member

    # -- the slice, kept by events ------------------------------------------

    @react(AUDIENCE_CHANGED, to=To.field("shard"))
    def on_audience_changed(self, event: Event) -> None:
        profile = event.fields["profile"] or {}
        member = self._member(event.fields["user_id"])
        member.update(c=bool(event.fields["consent"]), r=profile.get("region"), s=list(profile.get("sports") or ()),
                      z=profile.get("time_zone"))  # fmt: skip

    @react(SUBSCRIPTION_CHANGED, to=To.field("shard"))
    def on_subscription_changed(self, event: Event) -> None:
        self._member(event.fields["user_id"])["t"] = event.fields["tier"]

    @react(LEVEL_REACHED, to=To.ask(Account, "user_id", Account.audience_shards))
    def on_level_reached(self, event: Event) -> None:
        member = self._member(event.fields["user_id"])
        member["l"] = max(member.get("l", 0), event.fields["level"])

    @react(GROUP_JOINED, to=To.ask(Account, "user_id", Account.audience_shards))
    def on_group_joined(self, event: Event) -> None:
        member = self._member(event.fields["user_id"])
        groups = [g for g in member.get("g", ()) if g != event.fields["group_id"]]
        member["g"] = [*groups, event.fields["group_id"]][-GROUPS:]

    @react(GROUP_LEFT, to=To.ask(Account, "user_id", Account.audience_shards))
    def on_group_left(self, event: Event) -> None:
        member = self._member(event.fields["user_id"])
        member["g"] = [g for g in member.get("g", ()) if g != event.fields["group_id"]]

    @update
    def enrol(self, members: dict[str, dict]) -> int:
        """Back-fill members in bulk (from the lake's user dimension, or a load test): as the events would."""
        for user_id, fields in members.items():
            self._member(user_id).update(fields)
        return len(self.members)

    # -- campaigns ----------------------------------------------------------

    @react(CAMPAIGN_SCHEDULED, to=To.ask(Campaign, "campaign_id", Campaign.shards))
    def on_campaign_scheduled(self, event: Event) -> None:
        campaign_id, spec = event.fields["campaign_id"], event.fields["spec"]
        known = self.campaigns.get(campaign_id)
        if known is not None and known["cancelled"]:  # cancelled before its schedule reached this shard
            return
        zones = {m.get("z") or "UTC" for m in self.members.values() if matches(m, spec["target"])}
        by_due: dict[float, list[str]] = {}
        for zone in sorted(zones):
            by_due.setdefault(due_at(spec["send_at"], zone, self.now), []).append(zone)
        timers = [f"{campaign_id}@{due:.0f}" for due in by_due]
        for name, (due, names) in zip(timers, by_due.items(), strict=True):
            self.set_timer(name, due, "deliver", {"campaign_id": campaign_id, "zones": names})
        self.campaigns[campaign_id] = {"spec": spec, "sent": 0, "pending": len(by_due), "cancelled": False,
                                       "timers": timers}  # fmt: skip
        for old in list(self.campaigns)[:-CAMPAIGNS]:
            del self.campaigns[old]

    @update
    def deliver(self, campaign_id: str, zones: list[str]) -> int:
        """A timer: the campaign reaches its targeted, consenting members in ``zones`` now."""
        campaign = self.campaigns.get(campaign_id)
        if campaign is None or campaign["cancelled"]:
            return 0
        spec, wanted = campaign["spec"], set(zones)
        message = spec["message"]
        due = [user_id for user_id, member in self.members.items()
               if (member.get("z") or "UTC") in wanted and matches(member, spec["target"])]  # fmt: skip
        for first in range(0, len(due), SENT_BATCH):  # one outbox row a batch, not a recipient
            self.emit(CAMPAIGN_SENT, campaign_id=campaign_id, user_ids=due[first : first + SENT_BATCH], message=message)
        sent = len(due)
        campaign["sent"] += sent
        campaign["pending"] -= 1
        return sent

    @update
    def cancel(self, campaign_id: str) -> None:
        """Stop the campaign's deliveries to come; a cancel that overtakes the campaign's schedule (the relay
        brings ``campaign.scheduled`` a moment later) is remembered, so the schedule sets no timer."""
        campaign = self.campaigns.get(campaign_id)
        if campaign is None:
            self.campaigns[campaign_id] = {"spec": None, "sent": 0, "pending": 0, "cancelled": True, "timers": []}
            for old in list(self.campaigns)[:-CAMPAIGNS]:
                del self.campaigns[old]
            return
        campaign["cancelled"] = True
        for name in campaign["timers"]:
            self.cancel_timer(name)

    @query
    def figures(self, campaign_id: str) -> dict:
        campaign = self.campaigns.get(campaign_id)
        if campaign is None:
            return {"sent": 0, "pending": 0, "known": False}
        return {"sent": campaign["sent"], "pending": 0 if campaign["cancelled"] else campaign["pending"],
                "known": True}  # fmt: skip

    @query
    def size(self) -> dict:
        return {"members": len(self.members), "consenting": sum(1 for m in self.members.values() if m.get("c"))}
