"""Arena's domain events: each declared once, with its fields and the user it is about.

``docs/events.md`` lists them with who emits and who reacts (``tests/test_events_docs.py``
fails when it misses one). A change to an event's fields is a new version with an ``upgrade``
from the old ones, so events already in the outbox and the lake stay readable.
"""

from __future__ import annotations

from engine.events import declare

__all__ = [
    "ACCOUNT_ERASED",
    "AUDIENCE_CHANGED",
    "BADGE_AWARDED",
    "CAMPAIGN_SCHEDULED",
    "CAMPAIGN_SENT",
    "CHALLENGE_COMPLETED",
    "CHALLENGE_JOINED",
    "CHALLENGE_LEFT",
    "CHALLENGE_PROGRESSED",
    "CHALLENGE_WORKOUT",
    "COMMENT_POSTED",
    "FOLLOW_ENDED",
    "FOLLOW_STARTED",
    "GEAR_SUGGESTED",
    "KUDOS_GIVEN",
    "GEAR_WORN",
    "GROUP_EVENT_ANSWERED",
    "GROUP_EVENT_ATTENDED",
    "GROUP_EVENT_WITHDRAWN",
    "GROUP_EVENT_CANCELLED",
    "GROUP_EVENT_CHANGED",
    "GROUP_EVENT_LISTED",
    "GROUP_EVENT_REMINDER",
    "GROUP_EVENT_TOGETHER",
    "GROUP_INVITED",
    "GROUP_JOINED",
    "GROUP_LEFT",
    "GROUP_HEIR",
    "GROUP_LISTED",
    "GROUP_MEMBER_ERASED",
    "GROUP_POSTED",
    "GROUP_ROLE_CHANGED",
    "GROUP_SUCCESSION",
    "GROUP_WORKOUT_SHARED",
    "HEALTH_WITHDRAWN",
    "LEVEL_REACHED",
    "PROMO_REDEEMED",
    "PROMOTION_LISTED",
    "RACE_RESULT",
    "RACE_SETTLED",
    "ROUTE_LISTED",
    "SEGMENT_EFFORT",
    "SEGMENT_EFFORT_REMOVED",
    "SHOP_PURCHASED",
    "SUBSCRIPTION_CHANGED",
    "SPORT_EVENT_CANCELLED",
    "SPORT_EVENT_LISTED",
    "SPORT_EVENT_REGISTRATION",
    "SPORT_EVENT_REMINDER",
    "TRAINING_WARNING",
    "WORKOUT_DELETED",
    "WORKOUT_EDITED",
    "WORKOUT_RECORDED",
    "WORKOUT_TRACKED",
]


def _workout_recorded_v3(fields: dict, version: int) -> dict:
    """Version 1 had no region: the owner's region then was not recorded. Before version 3 a summary had
    no ``start_point``: where the workout started is unknown."""
    if version < 2:
        fields = {**fields, "region": None}
    summary = fields["summary"]
    if isinstance(summary, dict) and "start_point" not in summary:
        fields = {**fields, "summary": {**summary, "start_point": None}}
    return fields


WORKOUT_RECORDED = declare(
    "workout.recorded",
    version=3,
    fields=("owner", "owner_name", "region", "workout_id", "visibility", "summary"),
    user_field="owner",
    doc="A workout joined its owner's account (recorded by hand, imported from a file, or a race result); "
    "v2 adds the owner's region (for the lake's daily aggregates per region); v3 the summary's ``start_point`` "
    "([lat, lon] of the track's first fix, null without one: typed in, indoor, a race).",
    upgrade=_workout_recorded_v3,
)

WORKOUT_EDITED = declare(
    "workout.edited",
    fields=("owner", "workout_id", "before", "after"),
    user_field="owner",
    doc="A workout's owner changed what counts of it (its visibility, sport or figures; a new title alone is no "
    "event): ``before`` and ``after`` are its whole summary, visibility included, as it was and as it is. Emitted "
    "by the owner's account, so it follows the workout's workout.recorded in the account's own order.",
)

WORKOUT_DELETED = declare(
    "workout.deleted",
    fields=("owner", "workout_id", "summary"),
    user_field="owner",
    doc="A workout was deleted: ``summary`` is the one that counted (boards, challenges, points take it back).",
)

FOLLOW_STARTED = declare(
    "follow.started",
    fields=("user_id", "followee_id"),
    user_field="user_id",
    doc="``user_id`` follows ``followee_id`` now (at once, or when a private account accepted the request). "
    "Emitted by the follower's account; no entity reacts: the lake keeps it for the recommendation model.",
)

FOLLOW_ENDED = declare(
    "follow.ended",
    fields=("user_id", "followee_id"),
    user_field="user_id",
    doc="``user_id`` no longer follows ``followee_id`` (unfollowed, or a block on either side).",
)

KUDOS_GIVEN = declare(
    "kudos.given",
    fields=("user_id", "workout_id", "owner"),
    user_field="user_id",
    doc="``user_id`` gave kudos to a workout of ``owner`` (once per athlete and workout).",
)

COMMENT_POSTED = declare(
    "comment.posted",
    fields=("user_id", "workout_id", "owner", "comment_id"),
    user_field="user_id",
    doc="``user_id`` commented on a workout of ``owner``. The text stays with the workout, not in the event.",
)

RACE_RESULT = declare(
    "race.result",
    fields=("race_id", "user_id", "workout_id", "summary", "result"),
    user_field="user_id",
    doc="A race became final: one per athlete who started it (finished or did not), with the result "
    "row and the workout summary it becomes.",
)

RACE_SETTLED = declare(
    "race.settled",
    fields=("race_id", "status", "athletes"),
    user_field=None,  # about the race, no athlete
    doc="A race became final or was cancelled: nothing more comes from its devices. The lake archives "
    "its raw telemetry from the race's journal (docs/lake.md). ``athletes``: how many entered.",
)

GROUP_LISTED = declare(
    "group.listed",
    fields=("group_id", "directory", "listing"),
    user_field=None,
    doc="What discovery shows of a group changed (created, edited, its member count moved on): ``listing`` is "
    "its directory card, or null when it must not be listed (hidden, deleted). ``directory``: the directory "
    "shard that lists it (actors/group_shards.py).",
)

GROUP_JOINED = declare(
    "group.joined",
    fields=("group_id", "user_id", "role", "via", "by"),
    user_field="user_id",
    doc="A user became a member of a group: ``via`` created, open, request or invitation; ``role`` owner for "
    "the creator, else member; ``by`` who let them in (themselves, or the admin who approved).",
)

GROUP_LEFT = declare(
    "group.left",
    fields=("group_id", "user_id", "reason", "by"),
    user_field="user_id",
    doc="A member is no longer one: ``reason`` left, removed or banned; ``by`` who did it.",
)

GROUP_ROLE_CHANGED = declare(
    "group.role_changed",
    fields=("group_id", "user_id", "role", "by"),
    user_field="user_id",
    doc="A member's role changed (owner, admin, member): an appointment, a demotion, an ownership transfer.",
)

GROUP_MEMBER_ERASED = declare(
    "group.member_erased",
    fields=("group_id",),
    user_field=None,  # the person is erased: nobody is named
    doc="A member of the group was erased (docs/privacy.md): its count loses one. Emitted by the member shard "
    "that held them, in place of a group.left that would name them.",
)

GROUP_SUCCESSION = declare(
    "group.succession",
    fields=("group_id", "shards"),
    user_field=None,
    doc="An erased owner left a group with no admin to take it: each of its member shards (``shards``) is asked "
    "for its longest-standing member, and the group goes to the longest-standing of them all.",
)

GROUP_HEIR = declare(
    "group.heir",
    fields=("group_id", "shard", "user_id", "since"),
    user_field="user_id",
    doc="A member shard's answer to group.succession: its longest-standing member and since when (both null "
    "for a shard with no member).",
)

GROUP_INVITED = declare(
    "group.invited",
    fields=("group_id", "user_id", "by"),
    user_field="user_id",
    doc="A group's admin invited a user to join.",
)

GROUP_POSTED = declare(
    "group.posted",
    fields=("group_id", "post_id", "author", "author_name", "text"),
    user_field="author",
    doc="A member posted in a group's feed.",
)

GROUP_WORKOUT_SHARED = declare(
    "group.workout_shared",
    fields=("group_id", "shard", "owner", "owner_name", "workout_id", "visibility", "summary"),
    user_field="owner",
    doc="A member's workout (not private) reached one of their groups: one per group the athlete belongs to, "
    "emitted by the athlete's list of groups as it reacts to workout.recorded. ``shard``: the athlete's member "
    "shard in that group (its weekly board); the other fields are workout.recorded's.",
)

BADGE_AWARDED = declare(
    "badge.awarded",
    fields=("user_id", "user_name", "badge", "title", "cause", "backfill"),
    user_field="user_id",
    doc="An athlete earned a badge (docs/gamification.md), once per badge: ``badge`` the rule's id, ``cause`` "
    "the fact that earned it (a workout, a race, an event id), ``backfill`` true when a back-fill from the lake "
    "found it in the athlete's history (followers are not told of those).",
)

LEVEL_REACHED = declare(
    "level.reached",
    fields=("user_id", "user_name", "level", "points"),
    user_field="user_id",
    doc="An athlete's points reached a new level (docs/gamification.md): the level reached and the points then.",
)

CHALLENGE_JOINED = declare(
    "challenge.joined",
    fields=("challenge_id", "user_id", "shard", "team", "ends"),
    user_field="user_id",
    doc="An athlete joined a challenge (docs/challenges.md): ``shard`` the participant shard that holds their "
    "progress, ``team`` the group they compete for in a team challenge (else null), ``ends`` the unix time after "
    "which no workout can count any more (the period's last day, in every time zone).",
)

CHALLENGE_LEFT = declare(
    "challenge.left",
    fields=("challenge_id", "user_id", "shard"),
    user_field="user_id",
    doc="An athlete left a challenge: their progress left its boards.",
)

CHALLENGE_WORKOUT = declare(
    "challenge.workout",
    fields=("challenge_id", "shard", "owner", "workout_id", "seq", "summary"),
    user_field="owner",
    doc="One of a participant's workouts as it now stands, for one challenge they are in: emitted by the athlete's "
    "challenge entries as they react to workout.recorded, .edited and .deleted. ``summary`` null: the workout "
    "no longer exists. ``seq``: the account's journal seq of the change, so a participant shard keeps the newest "
    "state of each workout whatever order the three event types arrive in.",
)

CHALLENGE_PROGRESSED = declare(
    "challenge.progressed",
    fields=("challenge_id", "user_id", "team", "before", "after", "n"),
    user_field="user_id",
    doc="A participant's standing in a challenge moved: ``before`` and ``after`` are ``[score, at]`` (score higher "
    "is better, null for no score yet; at: when they got there) or null for not a participant (a join, a leave). "
    "``n`` counts the participant's changes. The challenge's rank index keeps its boards from these.",
)

CHALLENGE_COMPLETED = declare(
    "challenge.completed",
    fields=("challenge_id", "user_id", "user_name", "title", "goal_type"),
    user_field="user_id",
    doc="An athlete reached a challenge's goal: once per athlete and challenge, whatever is replayed, edited or "
    "redelivered (a correction below the goal later takes back nothing).",
)

GROUP_EVENT_LISTED = declare(
    "group_event.listed",
    fields=("group_id", "event_id", "card"),
    user_field=None,  # about the event
    doc="A group event was created, edited or cancelled: ``card`` is what the group's list of events keeps (title, "
    "sport, start, time zone, meeting point, status, revision).",
)

GROUP_EVENT_ANSWERED = declare(
    "group_event.answered",
    fields=("group_id", "event_id", "user_id", "answer", "promoted", "card"),
    user_field="user_id",
    doc="An athlete's answer to a group event changed: ``answer`` going, waitlisted or not_going; ``promoted`` true "
    "when a freed place took them from the waitlist; ``card`` the event as group_event.listed shows it.",
)

GROUP_EVENT_CHANGED = declare(
    "group_event.changed",
    fields=("group_id", "event_id", "card", "moved", "by"),
    user_field=None,
    doc="A group event's details were edited: ``moved`` lists what of its time and place changed (start, time_zone, "
    "meeting_point; empty for other details), ``card`` the event as it now is.",
)

GROUP_EVENT_CANCELLED = declare(
    "group_event.cancelled",
    fields=("group_id", "event_id", "card", "by"),
    user_field=None,
    doc="A group event was cancelled by one of the group's admins.",
)

GROUP_EVENT_REMINDER = declare(
    "group_event.reminder",
    fields=("group_id", "event_id", "card", "lead"),
    user_field=None,
    doc="A group event starts in ``lead`` (24h, 1h): its durable timer rang, once.",
)

GROUP_EVENT_ATTENDED = declare(
    "group_event.attended",
    fields=("user_id", "user_name", "group_id", "event_id", "workout_id", "visibility"),
    user_field="user_id",
    doc="An athlete who was going did the event: their workout ``workout_id`` (of that ``visibility``, never private) "
    "started near the meeting point around the start. Once per athlete and event.",
)

GROUP_EVENT_WITHDRAWN = declare(
    "group_event.withdrawn",
    fields=("group_id", "event_id", "user_id", "reason"),
    user_field="user_id",
    doc="An athlete who is no longer a member (``reason`` left, removed, banned) is taken off an event of the group "
    "that has not started: their calendar tells each such event, which frees their place.",
)

GROUP_EVENT_TOGETHER = declare(
    "group_event.together",
    fields=("group_id", "event_id", "user_id", "workout_id", "title", "athletes", "count"),
    user_field="user_id",
    doc="Who else did a group event with ``user_id``: ``athletes`` the first 20 others whose linked workout is "
    "public ({user_id, name}), ``count`` how many such others; for the cards of ``workout_id`` in feeds.",
)

GEAR_WORN = declare(
    "gear.worn",
    fields=("user_id", "gear_id", "gear", "catalogue"),
    user_field="user_id",
    doc="An athlete's item of gear passed 90% of its life (docs/commerce.md), once per item: ``gear`` its card "
    "(type, component, brand, model, sports, price, used_m, life_m); ``catalogue`` the catalogue whose products "
    "are suggested as its replacement.",
)

GEAR_SUGGESTED = declare(
    "gear.suggested",
    fields=("user_id", "gear_id", "gear", "suggestions"),
    user_field="user_id",
    doc="Replacements for a worn item, chosen by the catalogue as it reacts to gear.worn: up to three products "
    "(id, title, brand, price, currency, link) of the same type and sport at a similar price; maybe none.",
)

SHOP_PURCHASED = declare(
    "shop.purchased",
    fields=("order_id", "user_id", "lines", "total", "currency", "catalogue"),
    user_field="user_id",
    doc="An order from the brand's shop, attributed to an athlete by the click id of Arena's link, was paid; once per "
    "order whatever the shop retries. ``lines``: product_id, title, brand, quantity, price (minor units), gear_type, "
    "component, sports (the catalogue's labels; null gear_type for what is no gear). ``catalogue``: the co-purchase "
    "index's id (``shop``; absent from orders recorded before it existed).",
)

PROMO_REDEEMED = declare(
    "promo.redeemed",
    fields=("promotion_id", "user_id", "code", "discount"),
    user_field="user_id",
    doc="An athlete redeemed a promotion's code, once per redemption (docs/commerce.md, promo codes).",
)

PROMOTION_LISTED = declare(
    "promotion.listed",
    fields=("promotion_id", "directory", "card"),
    user_field=None,
    doc="What the offers page shows of a promotion changed (created, ended): ``card`` its public card, null when it "
    "is no longer offered. ``directory``: the list of offers that keeps it.",
)

TRAINING_WARNING = declare(
    "training.warning",
    fields=("user_id", "warning", "reason", "day"),
    user_field="user_id",
    doc="An athlete's training load crossed a warning's line (docs/training.md): ``warning`` its code (form_low, "
    "acwr_high, ramp_high, monotony_high), ``reason`` the figures in words, ``day`` the athlete's local day (ISO). "
    "Once per episode: the same warning again only after its figures were back in line.",
)


def _athlete_unknown(fields: dict, version: int) -> dict:
    """Before version 2 an effort carried neither the athlete's sex nor their age group."""
    return {"sex": None, "age_group": None, **fields}


WORKOUT_TRACKED = declare(
    "workout.tracked",
    version=2,
    fields=("owner", "workout_id", "visibility", "flagged", "sex", "age_group", "shard", "track"),
    user_field="owner",
    doc="A recorded workout's GPS track, for the segments of one segment shard it passes through (docs/segments.md): "
    "one per shard, at most 8. ``track``: ``[[lat, lon, unix seconds], ...]``, at most 1,000 points. v2 adds the "
    "owner's ``sex`` and ``age_group`` when the workout was recorded (null when not given, and before v2).",
    upgrade=_athlete_unknown,
)

SEGMENT_EFFORT = declare(
    "segment.effort",
    version=2,
    fields=("segment_id", "owner", "workout_id", "visibility", "flagged", "sex", "age_group", "start", "elapsed_s"),
    user_field="owner",
    doc="A workout's track covered a segment (the exact check of docs/segments.md): one per effort, a loop ridden "
    "twice makes two. ``start``: unix seconds at the segment's start; ``elapsed_s`` from the track's own points. "
    "v2 adds the workout's ``sex`` and ``age_group`` (null before v2: the effort counts on unfiltered boards only).",
    upgrade=_athlete_unknown,
)

SEGMENT_EFFORT_REMOVED = declare(
    "segment.effort_removed",
    fields=("segment_id", "owner", "workout_id"),
    user_field="owner",
    doc="A workout's efforts on a segment no longer count (the workout was deleted).",
)

ROUTE_LISTED = declare(
    "route.listed",
    fields=("route_id", "owner", "directory", "card"),
    user_field="owner",
    doc="A route was created, edited or deleted (docs/segments.md, Routes): ``card`` is what lists show of it "
    "(null once deleted), ``directory`` the directory shard that lists it when it is not private.",
)

SPORT_EVENT_LISTED = declare(
    "sport_event.listed",
    fields=("event_id", "directory", "card"),
    user_field=None,
    doc="An organizer's event was created or cancelled (docs/sport-events.md): ``card`` is what the event calendar "
    "shows of it (null once cancelled), ``directory`` the calendar shard that lists it.",
)

SPORT_EVENT_REGISTRATION = declare(
    "sport_event.registration",
    fields=("event_id", "user_id", "registration", "card", "promoted"),
    user_field="user_id",
    doc="An athlete's registration to an event changed (registered, waitlisted, cancelled, paid, checked in): "
    "``registration`` as it now is, ``promoted`` when a freed place took it off the waitlist.",
)

SPORT_EVENT_CANCELLED = declare(
    "sport_event.cancelled",
    fields=("event_id", "card", "by"),
    user_field=None,
    doc="An organizer cancelled a whole event: every registration was cancelled with it, refunds recorded.",
)

SPORT_EVENT_REMINDER = declare(
    "sport_event.reminder",
    fields=("event_id", "card", "lead"),
    user_field=None,
    doc="An event starts in ``lead`` (24h): its durable timer rang, once.",
)

ACCOUNT_ERASED = declare(
    "account.erased",
    fields=("user_id", "requested_at"),
    user_field="user_id",
    doc="An account's grace period ended and it is being erased (docs/privacy.md): the eraser removes the person "
    "from every store, the lake and the stream; outside consumers of the stream must erase them too. The one event "
    "about a person that erasure keeps: it is the notice, and holds nothing but the account's random id.",
)

HEALTH_WITHDRAWN = declare(
    "health.withdrawn",
    fields=("user_id",),
    user_field="user_id",
    doc="An athlete withdrew their consent to health data (docs/privacy.md): whoever holds their heart rates, "
    "HRV or weight removes them, and stores none from then on.",
)

AUDIENCE_CHANGED = declare(
    "audience.changed",
    fields=("user_id", "shard", "consent", "profile"),
    user_field="user_id",
    doc="An account's marketing consent, or (while it consents) a field campaigns target by, changed: ``profile`` "
    "is region, sports and time_zone; ``shard`` the campaign audience shard of the user (docs/commerce.md).",
)

SUBSCRIPTION_CHANGED = declare(
    "subscription.changed",
    fields=("user_id", "shard", "state", "plan", "tier"),
    user_field="user_id",
    doc="A premium subscription moved to another state (docs/commerce.md): ``tier`` is the plan whose "
    "entitlements the user now holds (``free`` when none).",
)

CAMPAIGN_SCHEDULED = declare(
    "campaign.scheduled",
    fields=("campaign_id", "spec"),
    user_field=None,
    doc="An admin scheduled a campaign: its message, targeting and local send time; each audience shard "
    "schedules its slice.",
)


def _one_recipient(fields: dict, version: int) -> dict:
    """Version 1 named one recipient (``user_id``); version 2 names a batch of them."""
    return {"campaign_id": fields["campaign_id"], "user_ids": [fields["user_id"]], "message": fields["message"]}


CAMPAIGN_SENT = declare(
    "campaign.sent",
    version=2,
    fields=("campaign_id", "user_ids", "message"),
    user_field=None,
    doc="A campaign is due for ``user_ids``: at most 2,000 members of one audience shard, each consenting, "
    "targeted and outside quiet hours in their time zone. v1 named one recipient (``user_id``): one outbox row "
    "per recipient was the cost that kept a million recipients over ten minutes.",
    upgrade=_one_recipient,
)
