"""Visitor limits and the spending ceiling, enforced in the core so no route around the UI skips them.

Built on the ``limits`` library: moving windows for messages, a sliding-window counter for tokens (cheap
with large costs), and a day-keyed counter for dollars; in memory by default, in Redis when ``REDIS_URL``
is set so that they hold across replicas. Concurrency (one reply at a time per visitor, a cap for the
whole process) is counted in-process, and per visitor also in Redis when it is configured.

``Guard.admit`` decides before any upstream call (a refusal is a :class:`~chatbot.core.errors.Friendly` with
which limit and when it resets); ``Guard.settle`` records what a reply really used.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import math
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from limits import RateLimitItem
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from chatbot.core.errors import Friendly, friendly
from chatbot.core.policy import Policy, parse_limits  # noqa: F401 - re-exported: limits' public names

#: Dollars are counted in millionths, since the counters are integers.
MICRO = 1_000_000
#: Price assumed per million tokens (input, output) for a model whose price nobody knows, when a budget
#: is set: deliberately high, so an unknown model cannot slip past the ceiling.
UNKNOWN_PRICE = (15.0, 75.0)
NAMESPACE = "switchboard"


@dataclass(frozen=True)
class Visitor:
    """Who is asking: the bucket all their limits are counted in."""

    key: str
    signed_in: bool = False
    own_key: bool = False  # brings their own API key: the owner's quotas are not spent
    api: bool = False  # an HTTP API token: counted against the API limits


def client_address(peer: str | None, forwarded_for: str | None, trusted_proxies: int) -> str:
    """The client's address: ``X-Forwarded-For`` is believed only for ``trusted_proxies`` hops, counted
    from the right (each trusted proxy appends the address it saw). A forged left part is ignored."""
    chain = [part.strip() for part in (forwarded_for or "").split(",") if part.strip()] if trusted_proxies else []
    chain.append(peer or "unknown")
    index = max(len(chain) - 1 - trusted_proxies, 0)
    return chain[index]


def forwarded_for(headers: Any) -> str | None:
    """Every ``X-Forwarded-For`` line of a request, in order, joined with commas (or None). A proxy may
    append its own line instead of extending the client's (haproxy does): reading only the first line
    would believe a forged value. ``headers``: Starlette ``Headers`` (anything with ``getlist``), raw
    ASGI ``(name, value)`` pairs, or a plain mapping (which can hold one line only)."""
    if headers is None:
        return None
    if callable(getattr(headers, "getlist", None)):
        lines = [str(v) for v in headers.getlist("x-forwarded-for")]
    elif isinstance(headers, Mapping):
        value = next((v for k, v in headers.items() if str(k).lower() == "x-forwarded-for"), None)
        lines = [str(value)] if value is not None else []
    else:
        lines = [_text(v) for k, v in _pairs(headers) if _text(k).lower() == "x-forwarded-for"]
    return ",".join(lines) if lines else None


def _pairs(headers: Iterable[Any]) -> list[tuple[Any, Any]]:
    return [tuple(pair) for pair in headers if isinstance(pair, (tuple, list)) and len(pair) == 2]


def _text(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else str(value)


def visitor_bucket(address: str) -> str:
    """IPv4 as is; IPv6 grouped by /64 (one subscriber gets a whole /64); anything else as a string."""
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return f"addr:{address[:64]}"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"ip:{ip.ipv4_mapped}"
        return f"ip6:{ipaddress.ip_network(f'{ip}/64', strict=False)}"
    return f"ip:{ip}"


def visitor_from(
    peer: str | None,
    headers: Any,
    trusted_proxies: int,
    username: str | None = None,
    own_key: bool = False,
    *,
    api_token: str | None = None,
) -> Visitor:
    """Whom a request's limits count, for every face: the signed-in user when there is one (a login, HTTP
    Basic, the Spaces login button), else an HTTP API token (against the API limits, each token on its own),
    else the client address. ``headers`` as :func:`forwarded_for` takes them (all ``X-Forwarded-For`` lines
    count)."""
    if username:
        return Visitor(f"user:{username[:128]}", signed_in=True, own_key=own_key)
    if api_token:
        return Visitor(f"api-token:{api_token[:16]}", api=True, own_key=own_key)
    return Visitor(visitor_bucket(request_address(peer, headers, trusted_proxies)), own_key=own_key)


def request_address(peer: str | None, headers: Any, trusted_proxies: int) -> str:
    """The client address of a request (see :func:`client_address`), from every ``X-Forwarded-For`` line."""
    return client_address(peer, forwarded_for(headers) if trusted_proxies else None, trusted_proxies)


@dataclass
class Ticket:
    """An admitted request: what to release and settle when the reply ends."""

    visitor: Visitor
    stream_id: str
    reserved_micro: int
    counted: bool  # counted against the owner's quotas
    settled: bool = False
    #: Tickets still holding the stream slot this one shares (a compare's columns: :meth:`Guard.admit_group`).
    holders: list[int] | None = None


class Guard:
    """Admits or refuses requests, and records what they used."""

    def __init__(self, policy: Policy, redis_url: str | None = None) -> None:
        self.policy = policy
        self.storage: Storage = (  # an async URI gives an async storage (limits types it as either)
            cast(Storage, storage_from_string(_async_uri(redis_url), implementation="redispy"))
            if redis_url else MemoryStorage()
        )
        self._moving = MovingWindowRateLimiter(self.storage)
        self._sliding = SlidingWindowCounterRateLimiter(self.storage)
        self._redis_url = redis_url
        self._redis = None
        self._active: Counter[str] = Counter()
        self._total = 0
        self._lock = asyncio.Lock()

    # -- concurrency -------------------------------------------------------------------------------------
    async def _acquire_stream(self, visitor: Visitor, stream_id: str) -> Friendly | None:
        policy = self.policy
        async with self._lock:
            if policy.max_streams and self._total >= policy.max_streams:
                return friendly("limit_capacity")
            if policy.streams_per_visitor and self._active[visitor.key] >= policy.streams_per_visitor:
                return friendly("limit_one_at_a_time")
            if policy.streams_per_visitor and self._redis_url:
                redis = await self._redis_client()
                key = f"{NAMESPACE}:streams:{visitor.key}"
                count = await redis.incr(key)
                await redis.expire(key, 600)  # a crashed replica's slots free themselves
                if count > policy.streams_per_visitor:
                    await redis.decr(key)
                    return friendly("limit_one_at_a_time")
            self._active[visitor.key] += 1
            self._total += 1
        return None

    async def _release_stream(self, visitor: Visitor) -> None:
        async with self._lock:
            self._active[visitor.key] -= 1
            if self._active[visitor.key] <= 0:
                del self._active[visitor.key]
            self._total -= 1
            if self.policy.streams_per_visitor and self._redis_url:
                redis = await self._redis_client()
                await redis.decr(f"{NAMESPACE}:streams:{visitor.key}")

    async def _redis_client(self):  # noqa: ANN202 - redis.asyncio.Redis, imported lazily
        if self._redis is None:
            import redis.asyncio as aioredis

            self._redis = aioredis.from_url(self._redis_url)
        return self._redis

    # -- admission ---------------------------------------------------------------------------------------
    async def admit_group(self, visitor: Visitor, costs: list[float | None]) -> list[Ticket] | Friendly:
        """Admit the requests of one compare all or none: one stream slot (one action of the visitor's),
        every request counted as a message and every worst-case cost reserved up front; one ticket each."""
        known = [cost for cost in costs if cost is not None]
        first = await self.admit(visitor, sum(known) if known else None, messages=len(costs))
        if isinstance(first, Friendly):
            return first
        holders = [len(costs)]
        tickets = [Ticket(visitor, first.stream_id, math.ceil((cost or 0.0) * MICRO) if first.reserved_micro else 0,
                          first.counted, holders=holders) for cost in costs]
        tickets[0].reserved_micro += first.reserved_micro - sum(t.reserved_micro for t in tickets)
        return tickets

    async def admit(self, visitor: Visitor, max_cost_usd: float | None, messages: int = 1) -> Ticket | Friendly:
        """Admit one request (reserving its worst-case cost, counting ``messages``) or say which limit refuses it."""
        ticket = Ticket(visitor, uuid.uuid4().hex, 0, counted=not visitor.own_key)
        refused = await self._acquire_stream(visitor, ticket.stream_id)
        if refused is not None:
            return refused
        try:
            if ticket.counted:
                refused = await self._check_quotas(ticket, max_cost_usd, messages)
        except Exception:
            await self._release_stream(visitor)
            raise
        if refused is not None:
            await self._release_stream(visitor)
            return refused
        return ticket

    async def reserve(self, ticket: Ticket, max_cost_usd: float | None) -> Friendly | None:
        """Raise an admitted request's reservation to ``max_cost_usd`` (its prompt is counted now), or say
        that the spending ceiling refuses it (the caller then settles the ticket)."""
        budget = self.policy.daily_budget_usd
        extra = math.ceil((max_cost_usd or 0.0) * MICRO) - ticket.reserved_micro
        if budget is None or not ticket.counted or extra <= 0:
            return None
        total = await self.storage.incr(_spend_key(), 2 * 86_400, extra)
        if total > budget * MICRO:
            await self.storage.incr(_spend_key(), 2 * 86_400, -extra)
            return friendly("limit_budget", wait=_until_midnight())
        ticket.reserved_micro += extra
        return None

    async def precheck(self, visitor: Visitor) -> Friendly | None:
        """A cheap look (nothing counted) before any work is spent on a request: a visitor who is over a
        limit is refused before their history is tokenised."""
        if visitor.own_key:
            return None
        policy = self.policy
        if policy.streams_per_visitor and self._active[visitor.key] >= policy.streams_per_visitor:
            return friendly("limit_one_at_a_time")
        for item in policy.rate_for(visitor):
            if not await self._moving.test(item, NAMESPACE, "messages", visitor.key):
                return await self._refusal("limit_messages", self._moving, item, visitor.key, "messages")
        for item in policy.tokens_for(visitor):
            if not await self._sliding.test(item, NAMESPACE, "tokens", visitor.key):
                return await self._refusal("limit_tokens", self._sliding, item, visitor.key, "tokens")
        budget = policy.daily_budget_usd
        if budget is not None and await self.storage.get(_spend_key()) >= budget * MICRO:
            return friendly("limit_budget", wait=_until_midnight())
        return None

    async def _check_quotas(self, ticket: Ticket, max_cost_usd: float | None, messages: int = 1) -> Friendly | None:
        visitor, policy = ticket.visitor, self.policy
        for item in policy.tokens_for(visitor):
            if not await self._sliding.test(item, NAMESPACE, "tokens", visitor.key):
                return await self._refusal("limit_tokens", self._sliding, item, visitor.key, "tokens")
        if policy.daily_budget_usd is not None:
            spent = await self.storage.get(_spend_key())
            reserve = math.ceil((max_cost_usd or 0.0) * MICRO)
            if spent + reserve > policy.daily_budget_usd * MICRO:
                return friendly("limit_budget", wait=_until_midnight())
        for item in policy.rate_for(visitor):  # last, and atomic: a request refused above does not use up a message
            if not await self._moving.hit(item, NAMESPACE, "messages", visitor.key, cost=messages):
                return await self._refusal("limit_messages", self._moving, item, visitor.key, "messages")
        if policy.daily_budget_usd is not None:
            ticket.reserved_micro = math.ceil((max_cost_usd or 0.0) * MICRO)
            total = await self.storage.incr(_spend_key(), 2 * 86_400, ticket.reserved_micro)
            if total > policy.daily_budget_usd * MICRO:  # another request got there first
                await self.storage.incr(_spend_key(), 2 * 86_400, -ticket.reserved_micro)
                ticket.reserved_micro = 0
                return friendly("limit_budget", wait=_until_midnight())
        return None

    async def _refusal(self, kind: str, limiter, item: RateLimitItem, key: str, what: str) -> Friendly:  # noqa: ANN001
        stats = await limiter.get_window_stats(item, NAMESPACE, what, key)
        wait = max(stats.reset_time - time.time(), 1.0)
        return friendly(kind, retry_after=wait, limit=_describe(item, what), wait=wait)

    async def settle(self, ticket: Ticket, tokens: int, cost_usd: float | None) -> None:
        """Record what the reply used (tokens in and out, dollars) and free its stream slot. Idempotent."""
        if ticket.settled:
            return
        ticket.settled = True
        try:
            if ticket.counted:
                visitor = ticket.visitor
                for item in self.policy.tokens_for(visitor):
                    if tokens > 0 and not await self._sliding.hit(item, NAMESPACE, "tokens", visitor.key, cost=tokens):
                        # more than the allowance left: use up the rest, so the next request is refused
                        stats = await self._sliding.get_window_stats(item, NAMESPACE, "tokens", visitor.key)
                        if stats.remaining > 0:
                            await self._sliding.hit(item, NAMESPACE, "tokens", visitor.key, cost=stats.remaining)
                if self.policy.daily_budget_usd is not None:
                    actual = math.ceil((cost_usd or 0.0) * MICRO)
                    if actual != ticket.reserved_micro:
                        await self.storage.incr(_spend_key(), 2 * 86_400, actual - ticket.reserved_micro)
        finally:
            if ticket.holders is not None:  # a compare's column: the last one to end frees the shared slot
                ticket.holders[0] -= 1
            if ticket.holders is None or ticket.holders[0] <= 0:
                await self._release_stream(ticket.visitor)

    async def spent_today(self) -> float:
        return await self.storage.get(_spend_key()) / MICRO


def _async_uri(url: str) -> str:
    return url if url.startswith("async+") else f"async+{url}"


def _spend_key() -> str:
    return f"{NAMESPACE}:spend:{dt.datetime.now(dt.timezone.utc):%Y-%m-%d}"


def _until_midnight() -> float:
    """Seconds until the spending ceiling resets (midnight UTC)."""
    now = dt.datetime.now(dt.timezone.utc)
    midnight = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - now).total_seconds()


def _describe(item: RateLimitItem, what: str) -> str:
    unit = item.GRANULARITY.name
    per = f"{item.multiples} {unit}s" if item.multiples > 1 else unit
    return f"{item.amount:,} {what} per {per}"
