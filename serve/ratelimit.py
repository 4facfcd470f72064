"""The failed-login limiter this deployment uses (``engine.login_limits``): Redis when it is
configured; else one Ray actor that every API replica of the namespace shares; else (one
process, as in unit tests) counts in this process."""

from __future__ import annotations

import time
from typing import Any

from engine.login_limits import LoginLimiter, LoginWindows, MemoryLoginLimiter, RateLimited

__all__ = ["RayLoginLimiter", "login_limiter"]


class _SharedCounts:
    """The Ray actor behind ``RayLoginLimiter``: one ``MemoryLoginLimiter`` for every replica."""

    def __init__(self, policy: dict) -> None:
        self._limiter = MemoryLoginLimiter(**policy)

    async def check(self, account: str, address: str) -> int | None:
        try:
            await self._limiter.check(account, address)
        except RateLimited as limited:
            return limited.retry_after
        return None

    async def failed(self, account: str, address: str) -> None:
        await self._limiter.failed(account, address)

    async def succeeded(self, account: str, address: str) -> None:
        await self._limiter.succeeded(account, address)


class RayLoginLimiter:
    """Without Redis: the counts live in one named, detached Ray actor that every API replica
    of the namespace shares, so two replicas do not each allow the full number of guesses.
    Counts are in memory (a restart of that actor forgets them, as a Redis restart would)."""

    def __init__(self, namespace: str, **policy) -> None:
        LoginWindows(
            policy.get("account_limit", 5), policy.get("address_limit", 20), policy.get("window_s", 900.0), time.time
        )  # the policy's own checks, here in the caller rather than in a remote actor
        self._namespace = namespace
        self._policy = policy
        self._actor: Any = None  # the shared actor's handle, found or made on first use

    def _counts(self):
        if self._actor is None:
            import ray

            self._actor = (
                ray.remote(_SharedCounts)
                .options(
                    name="arena-login-limits",
                    namespace=self._namespace,
                    lifetime="detached",
                    get_if_exists=True,
                    num_cpus=0,
                    max_restarts=-1,
                )
                .remote(self._policy)
            )
        return self._actor

    async def _call(self, method: str, account: str, address: str):
        from ray.exceptions import RayActorError

        from engine.errors import HostUnavailable

        if not isinstance(account, str) or not isinstance(address, str):
            raise TypeError("account and address must be strings")
        try:
            return await getattr(self._counts(), method).remote(account, address)
        except RayActorError as error:  # sign-in waits for its limits rather than going unlimited
            raise HostUnavailable(f"sign-in limits are restarting: {type(error).__name__}") from None

    async def check(self, account: str, address: str) -> None:
        retry_after = await self._call("check", account, address)
        if retry_after is not None:
            raise RateLimited(retry_after)

    async def failed(self, account: str, address: str) -> None:
        await self._call("failed", account, address)

    async def succeeded(self, account: str, address: str) -> None:
        await self._call("succeeded", account, address)

    async def aclose(self) -> None:
        self._actor = None


def login_limiter(redis_url: str | None, namespace: str | None = None, **policy) -> LoginLimiter:
    """Shared counts in Redis when it is configured; else in a Ray actor shared by the replicas of
    ``namespace``; else (no namespace: one process, as in unit tests) counts in this process."""
    if redis_url:
        from persistence.redis_login_limits import RedisLoginLimiter  # late: Redis's client loads only where used

        return RedisLoginLimiter(redis_url, **policy)
    if namespace is not None:
        return RayLoginLimiter(namespace, **policy)
    return MemoryLoginLimiter(**policy)
