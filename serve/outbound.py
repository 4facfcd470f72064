"""Outbound webhooks: the relay's ``webhooks`` stream, which puts partner events into each endpoint's durable
queue, and the delivery worker, which POSTs them signed (docs/commerce.md, "Outbound webhooks").

Both run in the relay's process (``Settings.streams`` names ``open_outbound``): it is one per cluster, so
no two workers send one endpoint's queue at once, and Ray restarts it. The stream moves its outbox cursor
only once every endpoint took the batch (``WebhookEndpoint.enqueue``, journaled), and the worker removes a
delivery only once the receiver answered 2xx (``WebhookEndpoint.report``): a crash anywhere sends again,
never loses (at least once; ``id`` is the event's id for the receiver to drop repeats).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

import actors.events  # noqa: F401  # the catalogue, to upgrade old versions of an event
from actors.webhook import DIRECTORY, PARTNER_EVENTS, WebhookDirectory, WebhookEndpoint
from engine.codec import unpack
from engine.commerce.signatures import sign_webhook
from engine.errors import EngineError
from engine.events import CATALOGUE, EventRecord
from engine.store import Store

__all__ = ["URL_MAX", "Policy", "OutboundStream", "Worker", "check_url", "open_outbound", "signature"]

log = logging.getLogger(__name__)

URL_MAX = 2_000
_ENQUEUED = 500  # events in one enqueue message
_SENT = 50  # deliveries the worker takes from a queue at once (sent one after the other, in order)
_LOCAL_NAMES = ("localhost", ".localhost", ".local", ".internal", ".home.arpa")

Ask = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Policy:
    attempts: int = 12  # attempts before a delivery is dead
    backoff: float = 2.0  # seconds before the first retry, doubling each time, with jitter
    backoff_max: float = 900.0
    timeout: float = 10.0  # seconds for one attempt, connection included
    allow_private: bool = False  # may deliver to loopback and private networks (tests, a local setup)
    poll: float = 1.0  # seconds between looks at the endpoints when nothing pokes the worker

    def retry_at(self, attempt: int, now: float) -> float | None:
        """When to try a delivery again after its ``attempt``-th failure; None: it is dead. Equal jitter:
        half the doubled delay, plus up to as much again, so endpoints that failed together retry apart."""
        if attempt >= self.attempts:
            return None
        delay = min(self.backoff * 2 ** (attempt - 1), self.backoff_max)
        return now + delay / 2 + random.random() * delay / 2


def check_url(url: str, allow_private: bool) -> str:
    """The URL an endpoint may have, or ``ValueError`` with the reason: https (http too with
    ``allow_private``), a host, no user or password in it, no fragment, at most ``URL_MAX`` characters;
    no loopback, private, link-local or reserved address, nor a local name, unless ``allow_private``.
    A name is resolved again at each delivery (``_GuardedResolver``), so one that later points inside is
    refused then."""
    if len(url) > URL_MAX:
        raise ValueError(f"the URL is longer than {URL_MAX} characters")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise ValueError("the URL has spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise ValueError(f"the URL cannot be read: {error}") from None
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes:
        raise ValueError(f"the URL must start with {' or '.join(s + '://' for s in schemes)}")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError("the URL must not carry a user name or password: the signature authenticates Arena")
    host = parts.hostname
    if not host:
        raise ValueError("the URL has no host")
    if parts.fragment:
        raise ValueError("the URL must not have a fragment")
    if port == 0:
        raise ValueError("the URL's port is 0")
    if not allow_private:
        if host.endswith(_LOCAL_NAMES) or "." not in host and _literal(host) is None:
            raise ValueError(f"{host} is a local name")
        address = _literal(host)
        if address is not None and not address.is_global:
            raise ValueError(f"{host} is not a public address")
    return url


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


class _Blocked(OSError):
    pass


class _GuardedResolver(AbstractResolver):
    """Resolves as aiohttp would, and refuses a name any of whose addresses is not public (a partner's
    DNS that points at Arena's own network, or changes to do so after the endpoint was checked)."""

    def __init__(self) -> None:
        self._resolver = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        for entry in found:
            address = _literal(entry["host"])
            if address is None or not address.is_global:
                raise _Blocked(f"{host} resolves to {entry['host']}, not a public address")
        return found

    async def close(self) -> None:
        await self._resolver.close()


def signature(secrets: Sequence[str], body: bytes, t: int) -> str:
    """``t=<unix>,v1=<hex>`` with one ``v1`` per secret (the new key and, while a rotation lasts, the old)."""
    return ",".join([f"t={t}", *(sign_webhook(secret, body, t).split(",", 1)[1] for secret in secrets)])


def body_of(item: dict) -> bytes:
    """What a delivery POSTs: the same bytes at every attempt."""
    at = datetime.fromtimestamp(item["at"], UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    payload = {"id": item["id"], "type": item["type"], "version": item["version"], "at": at, "data": item["data"]}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _queued(record: EventRecord) -> dict | None:
    declared = CATALOGUE.get(record.type)
    try:
        fields = unpack(record.body)
        if declared is not None:
            fields = declared.fields_at_current(fields, record.version)
    except Exception as error:  # an event nobody can read: the reactions dead-letter it, partners never see it
        log.error("webhooks: event %s cannot be read: %s; not sent", record.id, error)
        return None
    return {
        "id": record.id,
        "type": record.type,
        "version": record.version if declared is None else declared.version,
        "at": record.at,
        "data": {name: fields.get(name) for name in PARTNER_EVENTS[record.type]},
        "user": record.user_id,
        "position": record.position,
    }


class Worker:
    """Sends each endpoint's queue in order, one task per endpoint (one slow partner holds back no other)."""

    def __init__(self, ask: Ask, policy: Policy) -> None:
        self._ask, self.policy = ask, policy
        self._tasks: dict[str, asyncio.Task] = {}
        self._wakes: dict[str, asyncio.Event] = {}
        self._wake = asyncio.Event()
        self._main: asyncio.Task | None = None
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> None:
        if self._main is None:
            self._main = asyncio.get_running_loop().create_task(self._run(), name="arena-webhooks")

    def poke(self) -> None:
        """New deliveries were queued: look now rather than at the next poll."""
        self._wake.set()
        for wake in self._wakes.values():
            wake.set()

    async def stop(self) -> None:
        tasks = [t for t in (self._main, *self._tasks.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._main, self._tasks = None, {}
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                listing = await self._ask(WebhookDirectory.kind, DIRECTORY, "listing", {})
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a host restarting: look again at the next poll
                log.warning("webhooks: the directory did not answer: %s", error)
            else:
                for endpoint_id in listing:
                    task = self._tasks.get(endpoint_id)
                    if task is None or task.done():
                        self._tasks[endpoint_id] = asyncio.get_running_loop().create_task(self._serve(endpoint_id))
                for endpoint_id in [e for e in self._tasks if e not in listing]:
                    self._tasks.pop(endpoint_id).cancel()
                    self._wakes.pop(endpoint_id, None)
            await _wait(self._wake, self.policy.poll)

    async def _serve(self, endpoint_id: str) -> None:
        wake = self._wakes.setdefault(endpoint_id, asyncio.Event())
        while True:
            wake.clear()
            try:
                due = await self._ask(WebhookEndpoint.kind, endpoint_id, "due", {"now": time.time(), "limit": _SENT})
                if due["gone"]:
                    return
                if due["items"]:
                    results = await self._send(due)
                    await self._ask(WebhookEndpoint.kind, endpoint_id, "report", {"results": results})
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the endpoint's host restarting: what was sent unreported goes again
                log.warning("webhooks: endpoint %s: %s", endpoint_id, error)
                due = {"wait": None}
            wait = self.policy.poll if due["wait"] is None else min(due["wait"], self.policy.poll)
            await _wait(wake, wait)

    async def _send(self, due: dict) -> list[dict]:
        results = []
        for item in due["items"]:
            result = await self._post(due["url"], due["secrets"], item)
            results.append(result)
            if not result["ok"]:  # in order: nothing after it goes before it
                break
        return results

    async def _post(self, url: str, secrets: list[str], item: dict) -> dict:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=_GuardedResolver(), limit=64),
                timeout=aiohttp.ClientTimeout(total=self.policy.timeout),
            )
        body, started = body_of(item), time.monotonic()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Arena-Webhooks/1",
            "Arena-Signature": signature(secrets, body, int(time.time())),
            "Arena-Event-Id": item["id"],
            "Arena-Delivery-Attempt": str(item["attempts"] + 1),
        }
        status: int | None = None
        try:
            host = urlsplit(url).hostname or ""
            address = _literal(host)
            if not self.policy.allow_private and address is not None and not address.is_global:
                raise _Blocked(f"{host} is not a public address")
            async with self._session.post(url, data=body, headers=headers, allow_redirects=False) as answer:
                status = answer.status
                await answer.content.read(1024)  # a little, so the connection is reused; the rest is discarded
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except TimeoutError:
            error = f"no answer within {self.policy.timeout:g} s"
        except (aiohttp.ClientError, OSError) as failure:
            error = f"{type(failure).__name__}: {failure}"[:300]
        latency = round((time.monotonic() - started) * 1000, 1)
        ok = error is None
        retry_at = None if ok else self.policy.retry_at(item["attempts"] + 1, time.time())
        return {"id": item["id"], "ok": ok, "status": status, "latency_ms": latency, "error": error,
                "retry_at": retry_at}  # fmt: skip


async def _wait(event: asyncio.Event, timeout: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), max(timeout, 0.0))
    except TimeoutError:
        pass


class OutboundStream:
    """The relay's stream that queues partner events for the endpoints that want them, and runs the worker."""

    name = "webhooks"

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._ask: Ask | None = None
        self.worker: Worker | None = None

    def bind(self, store: Store, ask: Ask) -> None:
        self._ask = ask
        self.worker = Worker(ask, self.policy)
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # started at the first batch instead
            return
        self.worker.start()  # the relay's actor: queues left by a crash go out without waiting for an event

    async def publish(self, records: Sequence[EventRecord]) -> None:
        if self._ask is None or self.worker is None:
            raise RuntimeError("the webhooks stream is not bound to a relay (bind)")
        self.worker.start()
        events = [e for e in (_queued(r) for r in records if r.type in PARTNER_EVENTS) if e is not None]
        if not events:
            return
        listing = await self._ask(WebhookDirectory.kind, DIRECTORY, "listing", {})
        for endpoint_id, types in listing.items():
            mine = [event for event in events if event["type"] in types]
            for first in range(0, len(mine), _ENQUEUED):
                chunk = mine[first : first + _ENQUEUED]
                try:
                    await self._ask(WebhookEndpoint.kind, endpoint_id, "enqueue", {"events": chunk})
                except EngineError as error:
                    if error.retryable:
                        raise  # the batch goes again (the endpoints skip what they took)
                    # a bug in one endpoint's entity must not hold back every partner
                    log.error("webhooks: endpoint %s refused %d event(s) for good: %s", endpoint_id, len(chunk), error)
        self.worker.poke()

    async def close(self) -> None:
        if self.worker is not None:
            await self.worker.stop()


def open_outbound(spec: str) -> OutboundStream:
    """The stream with the policy ``spec`` gives (``Settings.webhooks_spec``): ``attempts=12&backoff=2&
    backoff_max=900&timeout=10&allow_private=0&poll=1``, each optional."""
    config = dict(parse_qsl(spec))
    defaults = Policy()
    return OutboundStream(
        Policy(
            attempts=int(config.get("attempts", defaults.attempts)),
            backoff=float(config.get("backoff", defaults.backoff)),
            backoff_max=float(config.get("backoff_max", defaults.backoff_max)),
            timeout=float(config.get("timeout", defaults.timeout)),
            allow_private=config.get("allow_private", "0") == "1",
            poll=float(config.get("poll", defaults.poll)),
        )
    )
