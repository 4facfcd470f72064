"""What Arena's hosts are made of, by import path (hosts import them in their own process):
the entity kinds, and the function that opens the store a host keeps them in."""

from __future__ import annotations

__all__ = ["KINDS", "OPEN_STORE"]

OPEN_STORE = "persistence:open_store"

KINDS: tuple[str, ...] = (
    "actors.account:Account",
    "actors.email:EmailClaim",
    "actors.workout:Workout",
    "actors.feed:Feed",
    "actors.inbox:Inbox",
    "actors.achievements:Achievements",
    "actors.training:Training",
    "actors.race:Race",
    "actors.race:RaceRef",
    "actors.race:RaceIndex",
    "actors.race:RaceEntries",
    "actors.device:Device",
    "actors.device:DeviceOwner",
    "actors.audit:AuditDay",
    "actors.revocation:RevocationList",
    "actors.group:Group",
    "actors.group_members:GroupMembers",
    "actors.user_groups:UserGroups",
    "actors.group_feed:GroupFeed",
    "actors.group_post:GroupPost",
    "actors.group_directory:GroupDirectory",
    "actors.challenge:Challenge",
    "actors.challenge:ChallengeDirectory",
    "actors.challenge_participants:ChallengeParticipants",
    "actors.challenge_board:ChallengeBoard",
    "actors.challenge_entries:ChallengeEntries",
    "actors.group_event:GroupEvent",
    "actors.group_event_index:GroupEventIndex",
    "actors.group_event_calendar:EventCalendar",
    "actors.segment:Segment",
    "actors.segment_index:SegmentShard",
    "actors.segment_records:SegmentRecords",
    "actors.route:Route",
    "actors.route_directory:RouteDirectory",
    "actors.route_library:RouteLibrary",
    "actors.gear:Gear",
    "actors.catalogue:Catalogue",
    "actors.orders:ShopOrder",
    "actors.co_purchase:CoPurchase",
    "actors.promo:Promotion",
    "actors.promo:PromoDirectory",
    "actors.subscription:Subscription",
    "actors.campaign:Campaign",
    "actors.campaign_audience:CampaignAudience",
    "actors.sport_event:SportEvent",
    "actors.sport_event_directory:SportEventDirectory",
    "actors.sport_event_entries:SportEventEntries",
    "actors.partner_offers:PartnerOffers",
)
