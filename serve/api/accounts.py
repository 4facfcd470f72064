"""Accounts and sessions: register, sign in, refresh, sign out, password, profile, roles."""

from __future__ import annotations

import logging
import time
from typing import Annotated, Literal

from email_validator import EmailNotValidError, validate_email
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from actors.account import ROLES, VISIBILITIES, Account
from actors.achievements import Achievements
from actors.athlete import SEXES, birth_year_problem
from actors.email import EmailClaim
from engine.errors import NotFound, Rejected
from engine.gamification import badges
from engine.login_limits import RateLimited
from serve.addresses import client_address
from serve.api.races import privacy_changed
from serve.audit import audit
from serve.auth import InvalidToken
from serve.consents import current
from serve.context import Arena, ArenaDep, CallerDep, EntityId, OptionalCallerDep, new_id
from serve.problems import Problem

__all__ = ["router"]

log = logging.getLogger(__name__)
router = APIRouter(tags=["accounts"])

Password = Annotated[str, Field(min_length=10, max_length=256)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def normalise_email(email: str) -> str:
    try:
        return validate_email(email, check_deliverability=False).normalized.lower()
    except EmailNotValidError as error:
        raise ValueError(str(error)) from None


class Registration(Strict):
    email: Annotated[str, Field(max_length=254)]
    password: Password
    display_name: Annotated[str, Field(min_length=1, max_length=80)]
    health_consent: bool = False  # to the current text of GET /consents (docs/privacy.md)

    @field_validator("email")
    @classmethod
    def _normalised(cls, email: str) -> str:
        return normalise_email(email)


class Login(Strict):
    email: Annotated[str, Field(max_length=254)]
    password: Annotated[str, Field(max_length=256)]


class RefreshRequest(Strict):
    refresh_token: Annotated[str, Field(max_length=512)]


class PasswordChange(Strict):
    current_password: Annotated[str, Field(max_length=256)]
    new_password: Password


class Profile(Strict):
    display_name: Annotated[str | None, Field(min_length=1, max_length=80)] = None
    sports: Annotated[list[Annotated[str, Field(max_length=30)]] | None, Field(max_length=20)] = None
    city: Annotated[str | None, Field(max_length=80)] = None
    region: Annotated[str | None, Field(max_length=80)] = None
    units: Literal["metric", "imperial"] | None = None
    bio: Annotated[str | None, Field(max_length=500)] = None
    time_zone: Annotated[str | None, Field(max_length=64)] = None  # IANA, e.g. Europe/Paris: the athlete's days
    # for the segment boards by sex and age group only: shown to nobody else (docs/segments.md)
    sex: Literal[SEXES] | None = None  # type: ignore[valid-type]
    birth_year: Annotated[int | None, Field(strict=True)] = None

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, name: str | None) -> str | None:
        badges.time_zone(name)  # a ValueError that names it
        return name

    @field_validator("birth_year")
    @classmethod
    def _plausible_year(cls, year: int | None) -> int | None:
        if year is not None and (problem := birth_year_problem(year, time.time())):
            raise ValueError(problem)
        return year


class ProfileUpdate(Strict):
    profile: Profile | None = None
    private: bool | None = None
    default_visibility: Literal[VISIBILITIES] | None = None  # type: ignore[valid-type]
    marketing_consent: bool | None = None  # news and offers (docs/commerce.md); recorded with when and how


class Reauthentication(Strict):
    password: Annotated[str, Field(max_length=256)]


class Roles(Strict):
    roles: Annotated[list[Literal[ROLES]], Field(min_length=1, max_length=3)]  # type: ignore[valid-type]


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int


async def end_sessions(arena: Arena, user_id: str, *, sid: str | None = None, before: float | None = None) -> None:
    """Revoke one session's access tokens (``sid``) or all of a user's issued ``before`` an instant,
    and close the live streams they hold open (on every replica, through the bus)."""
    ttl = arena.tokens.access_ttl + 1
    if sid is not None:
        await arena.revocations.revoke_session(sid, ttl)
    if before is not None:
        await arena.revocations.revoke_user(user_id, before, ttl)
    try:
        await arena.bus.publish(user_id, {"type": "session_revoked", "sid": sid, "before": before})
    except Exception as error:  # the streams also re-check their token every few seconds
        log.warning("revocation notice to %s's streams not sent: %s", user_id, error)


async def _issue(arena: Arena, user_id: str, roles: list[str]) -> TokenPair:
    token, refresh = arena.tokens.refresh(user_id)
    expires = time.time() + arena.tokens.refresh_ttl
    await arena.ref(Account, user_id).ask(
        Account.open_session, family=refresh.family, token_hash=refresh.secret_hash, expires=expires
    )
    access, _ = arena.tokens.access(user_id, roles, refresh.family)
    return TokenPair(access_token=access, refresh_token=token, expires_in=int(arena.tokens.access_ttl))


@router.post("/accounts", status_code=201, summary="Register an athlete")
async def register(body: Registration, arena: ArenaDep) -> dict:
    user_id = new_id()
    previous = await arena.ref(EmailClaim, body.email).ask(EmailClaim.owner)
    # A sign-up that died between claiming the address and creating the account left an orphan claim.
    orphan = previous if previous and not await arena.ref(Account, previous).ask(Account.exists) else None
    try:
        await arena.ref(EmailClaim, body.email).ask(EmailClaim.claim, user_id=user_id, replace=orphan)
    except Rejected:
        raise Problem(409, "this email address is already registered") from None
    password_hash = await arena.passwords.hash(body.password)
    admins = {normalise_email(e) for e in arena.settings.admin_emails}
    roles = ["athlete", "admin"] if body.email in admins else ["athlete"]
    account = arena.ref(Account, user_id)
    me = await account.ask(
        Account.register, email=body.email, password_hash=password_hash, display_name=body.display_name, roles=roles
    )
    if body.health_consent:
        await account.ask(Account.set_health_consent, given=True, version=current("health"), via="registration")
        me = await account.ask(Account.me)
    return me


@router.post("/auth/login", summary="Sign in: an access token and a rotating refresh token")
async def login(body: Login, request: Request, arena: ArenaDep) -> TokenPair:
    try:
        email, valid = normalise_email(body.email), True
    except ValueError:
        email, valid = body.email.strip().lower(), False
    address = client_address(request)
    try:
        await arena.limiter.check(email, address)
    except RateLimited as limited:
        raise Problem(
            429, "too many failed sign-ins; try again later", headers={"Retry-After": str(limited.retry_after)}
        ) from None
    # An address that does not even parse owns no account, and is never made an entity id.
    user_id = await arena.ref(EmailClaim, email).ask(EmailClaim.owner) if valid else None
    credentials = None
    if user_id is not None:
        try:
            credentials = await arena.ref(Account, user_id).ask(Account.credentials)
        except NotFound:
            credentials = None
    password_hash = credentials["password_hash"] if credentials is not None else None
    # The hash is checked even without an account (against a decoy), so both take as long.
    verified = await arena.passwords.verify(password_hash, body.password)
    if not verified or user_id is None or credentials is None:
        await arena.limiter.failed(email, address)
        known = user_id if credentials is not None else None
        if known is not None:  # a made-up account writes nothing; a real one's failures are its security events
            await audit(arena, "auth.login_failed", subject=known, address=address)
        try:
            await arena.limiter.check(email, address)
        except RateLimited as limited:  # this failure locked the account or the address
            await audit(arena, "auth.lockout", subject=known, address=address, retry_after=limited.retry_after)
        raise Problem(401, "wrong email or password", headers={"WWW-Authenticate": "Bearer"})
    await arena.limiter.succeeded(email, address)
    pair = await _issue(arena, user_id, credentials["roles"])
    await audit(arena, "auth.login", actor=user_id, address=address)
    return pair


@router.post("/auth/refresh", summary="Trade a refresh token for a new pair (the old one stops working)")
async def refresh(body: RefreshRequest, request: Request, arena: ArenaDep) -> TokenPair:
    try:
        presented = arena.tokens.parse_refresh(body.refresh_token)
    except InvalidToken as error:
        raise Problem(401, str(error)) from None
    token, rotated = arena.tokens.refresh(presented.user_id, presented.family)
    try:
        outcome = await arena.ref(Account, presented.user_id).ask(
            Account.rotate_session,
            family=presented.family,
            token_hash=presented.secret_hash,
            new_hash=rotated.secret_hash,
            expires=time.time() + arena.tokens.refresh_ttl,
        )
        credentials = await arena.ref(Account, presented.user_id).ask(Account.credentials)
    except NotFound:
        raise Problem(401, "the refresh token is not valid") from None
    if outcome == "reused":  # stolen: whoever holds its access tokens loses them too
        await end_sessions(arena, presented.user_id, sid=presented.family)
        await audit(
            arena,
            "auth.refresh_reused",
            subject=presented.user_id,
            address=client_address(request),
            session=presented.family,
        )
        raise Problem(401, "this refresh token was already used; its session is revoked, sign in again")
    if outcome != "ok":
        raise Problem(401, "the refresh token expired; sign in again")
    access, _ = arena.tokens.access(presented.user_id, credentials["roles"], presented.family)
    return TokenPair(access_token=access, refresh_token=token, expires_in=int(arena.tokens.access_ttl))


@router.post("/auth/logout", status_code=204, summary="Sign out: revoke this session's tokens")
async def logout(caller: CallerDep, request: Request, arena: ArenaDep) -> Response:
    await arena.ref(Account, caller.id).ask(Account.close_session, family=caller.family)
    await end_sessions(arena, caller.id, sid=caller.family)
    await audit(arena, "auth.logout", actor=caller.id, address=client_address(request), session=caller.family)
    return Response(status_code=204)


@router.post("/auth/password", status_code=204, summary="Change the password; every session is signed out")
async def change_password(body: PasswordChange, caller: CallerDep, request: Request, arena: ArenaDep) -> Response:
    address = client_address(request)
    credentials = await arena.ref(Account, caller.id).ask(Account.credentials)
    if not await arena.passwords.verify(credentials["password_hash"], body.current_password):
        await audit(arena, "auth.password_change_failed", actor=caller.id, address=address)
        raise Problem(403, "the current password is wrong")
    password_hash = await arena.passwords.hash(body.new_password)
    await arena.ref(Account, caller.id).ask(Account.change_password, password_hash=password_hash)
    await end_sessions(arena, caller.id, before=time.time())
    await audit(arena, "auth.password_changed", actor=caller.id, address=address)
    return Response(status_code=204)


@router.get("/me", summary="My account")
async def me(caller: CallerDep, arena: ArenaDep) -> dict:
    return await arena.ref(Account, caller.id).ask(Account.me)


@router.patch("/me", summary="Edit my profile and privacy")
async def edit_me(body: ProfileUpdate, caller: CallerDep, arena: ArenaDep) -> dict:
    changes = body.model_dump(exclude_none=True)
    if "marketing_consent" in changes:
        changes["consent_version"] = current("marketing")
    if body.profile is not None:  # only the fields sent: a profile edit leaves the others as they are
        changes["profile"] = body.profile.model_dump(exclude_unset=True)
    me = await arena.ref(Account, caller.id).ask(Account.update_profile, **changes)
    if "private" in changes:  # the races the athlete joined show them (or hide them) accordingly
        await privacy_changed(arena, caller.id, me["private"])
    if "time_zone" in changes.get("profile", {}):  # streaks and daily caps count the athlete's own days
        await arena.ref(Achievements, caller.id).ask(Achievements.set_time_zone, time_zone=me["profile"]["time_zone"])
    return me


@router.delete("/me", status_code=202, summary="Erase my account after a grace period (I may cancel until then)")
async def erase_me(body: Reauthentication, caller: CallerDep, request: Request, arena: ArenaDep) -> dict:
    """Re-authenticated with the password: a stolen access token alone cannot erase an account. At the
    grace period's end the account is erased from everywhere Arena keeps data (docs/privacy.md)."""
    address = client_address(request)
    account = arena.ref(Account, caller.id)
    credentials = await account.ask(Account.credentials)
    if not await arena.passwords.verify(credentials["password_hash"], body.password):
        await audit(arena, "account.erasure_refused", actor=caller.id, address=address)
        raise Problem(403, "the password is wrong")
    erasure = await account.ask(Account.request_erasure, due=time.time() + arena.settings.erasure_grace)
    await audit(arena, "account.erasure_requested", actor=caller.id, address=address)
    return {**erasure, "cancel": "DELETE /me/erasure"}


@router.get("/me/erasure", summary="My pending erasure, if any")
async def erasure(caller: CallerDep, arena: ArenaDep) -> dict:
    pending = await arena.ref(Account, caller.id).ask(Account.erasure_pending)
    if pending is None:
        raise Problem(404, "no erasure is pending")
    return pending


@router.delete("/me/erasure", status_code=204, summary="Cancel my pending erasure")
async def cancel_erasure(caller: CallerDep, request: Request, arena: ArenaDep) -> Response:
    await arena.ref(Account, caller.id).ask(Account.cancel_erasure)
    await audit(arena, "account.erasure_cancelled", actor=caller.id, address=client_address(request))
    return Response(status_code=204)


@router.get("/users/{user_id}", summary="An athlete's profile, as the caller may see it")
async def profile(user_id: EntityId, caller: OptionalCallerDep, arena: ArenaDep) -> dict:
    return await arena.ref(Account, user_id).ask(Account.view, viewer=caller.id if caller else None)


@router.put("/users/{user_id}/roles", summary="Set an account's roles (admins only)")
async def set_roles(user_id: EntityId, body: Roles, caller: CallerDep, arena: ArenaDep) -> dict:
    if "admin" not in caller.roles:
        raise Problem(403, "only an admin may change roles")
    before = (await arena.ref(Account, user_id).ask(Account.relation, viewer=caller.id))["roles"]
    roles = await arena.ref(Account, user_id).ask(Account.set_roles, roles=body.roles)
    if set(before) - set(roles):  # a token carries its roles: a role taken away must stop working now
        await end_sessions(arena, user_id, before=time.time())
    await audit(arena, "admin.roles_changed", actor=caller.id, subject=user_id, before=before, after=roles)
    return {"roles": roles}
