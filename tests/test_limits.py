"""Visitor identity, the Guard's limits and the spending ceiling (in memory; Redis in test_security)."""

from __future__ import annotations

import asyncio

import pytest
from starlette.datastructures import Headers

from chatbot.core.limits import (
    Guard,
    Policy,
    Visitor,
    client_address,
    forwarded_for,
    parse_limits,
    visitor_bucket,
    visitor_from,
)


def test_forwarded_for_is_believed_only_for_trusted_hops() -> None:
    assert client_address("10.0.0.9", "6.6.6.6", trusted_proxies=0) == "10.0.0.9"
    assert client_address("10.0.0.9", "6.6.6.6, 1.2.3.4", trusted_proxies=1) == "1.2.3.4"
    assert client_address("10.0.0.9", "6.6.6.6, 1.2.3.4, 10.0.0.5", trusted_proxies=2) == "1.2.3.4"
    assert client_address("10.0.0.9", None, trusted_proxies=3) == "10.0.0.9"  # fewer hops than trusted


def test_rotating_forged_forwarded_for_lands_in_one_bucket() -> None:
    buckets = {visitor_from("203.0.113.7", {"x-forwarded-for": f"198.51.100.{i}"}, 0).key for i in range(50)}
    assert buckets == {"ip:203.0.113.7"}
    # behind one trusted proxy, forged values left of what the proxy appended are ignored too
    forged = {visitor_from("10.0.0.1", {"x-forwarded-for": f"9.9.9.{i}, 203.0.113.7"}, 1).key for i in range(50)}
    assert forged == {"ip:203.0.113.7"}


def test_every_forwarded_for_line_counts_in_order() -> None:
    # haproxy appends its own line after the client's forged one: the true address is the last line's
    raw = [(b"host", b"app"), (b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"203.0.113.7")]
    headers = Headers(raw=raw)  # as the ASGI server hands them (names lower-cased)
    assert forwarded_for(headers) == "6.6.6.6,203.0.113.7"
    assert forwarded_for([("X-Forwarded-For", "6.6.6.6"), ("x-forwarded-for", "203.0.113.7")]) == (
        "6.6.6.6,203.0.113.7"
    )
    assert forwarded_for({"X-Forwarded-For": "1.2.3.4"}) == "1.2.3.4"
    assert forwarded_for({}) is None and forwarded_for(None) is None
    assert visitor_from("127.0.0.1", headers, 1).key == "ip:203.0.113.7"
    # a forged line of several hops, then the proxy's: still the proxy's
    two = Headers(raw=[(b"x-forwarded-for", b"9.9.9.9, 8.8.8.8"), (b"x-forwarded-for", b"203.0.113.7")])
    assert visitor_from("127.0.0.1", two, 1).key == "ip:203.0.113.7"
    # two trusted proxies, each appending a line of its own
    three = Headers(raw=[(b"x-forwarded-for", b"9.9.9.9"), (b"x-forwarded-for", b"203.0.113.7"),
                         (b"x-forwarded-for", b"10.0.0.2")])
    assert visitor_from("10.0.0.3", three, 2).key == "ip:203.0.113.7"
    rotating = {visitor_from("127.0.0.1", Headers(raw=[(b"x-forwarded-for", f"9.9.9.{i}".encode()),
                                                       (b"x-forwarded-for", b"203.0.113.7")]), 1).key
                for i in range(20)}
    assert rotating == {"ip:203.0.113.7"}


def test_ipv6_grouped_by_64_and_users_by_name() -> None:
    assert visitor_bucket("2001:db8:1:2:aaaa::1") == visitor_bucket("2001:db8:1:2:ffff::9") == "ip6:2001:db8:1:2::/64"
    assert visitor_bucket("2001:db8:1:3::1") != visitor_bucket("2001:db8:1:2::1")
    assert visitor_bucket("::ffff:192.0.2.1") == "ip:192.0.2.1"
    assert visitor_bucket("testclient") == "addr:testclient"
    user = visitor_from("1.2.3.4", {}, 0, username="ana")
    assert user.key == "user:ana" and user.signed_in


def test_one_visitor_rule_for_every_face() -> None:
    """A signed-in user is counted as that user through any face; an API token (without a login) in its
    own bucket, against the API limits; else the client address."""
    token = "token-a-0123456789abcdefghij"
    assert visitor_from("1.2.3.4", {}, 0, username="ana", api_token=token).key == "user:ana"
    api = visitor_from("1.2.3.4", {}, 0, api_token=token)
    assert api.key == f"api-token:{token[:16]}" and api.api and not api.signed_in
    assert visitor_from("1.2.3.4", {}, 0, api_token="").key == "ip:1.2.3.4"


def test_parse_limits() -> None:
    assert [str(i) for i in parse_limits("5/minute;50/day", "X")] == ["5 per 1 minute", "50 per 1 day"]
    assert parse_limits("none", "X") == () and parse_limits(None, "X") == ()
    with pytest.raises(ValueError, match="CHATBOT_RATE_LIMIT"):
        parse_limits("five a minute", "CHATBOT_RATE_LIMIT")


async def _admit_many(guard: Guard, visitor: Visitor, n: int, cost: float | None = None) -> list:
    return [await guard.admit(visitor, cost) for _ in range(n)]


async def test_message_rate_refuses_with_limit_and_reset() -> None:
    guard = Guard(Policy(rate=parse_limits("3/minute", "X")))
    ana, bob = Visitor("ip:1.1.1.1"), Visitor("ip:2.2.2.2")
    results = await _admit_many(guard, ana, 4)
    for ticket in results[:3]:
        await guard.settle(ticket, 10, None)
    refused = results[3]
    assert refused.kind == "limit_messages" and "3 messages per minute" in refused.text
    assert "seconds" in refused.text and 0 < refused.retry_after <= 60
    assert not hasattr(await guard.admit(bob, None), "kind")  # another visitor is not affected


async def test_tokens_per_day_counted_from_settled_usage() -> None:
    guard = Guard(Policy(tokens=parse_limits("1000/day", "X")))
    ana = Visitor("ip:1.1.1.1")
    ticket = await guard.admit(ana, None)
    await guard.settle(ticket, 1200, None)
    refused = await guard.admit(ana, None)
    assert refused.kind == "limit_tokens" and "1,000 tokens per day" in refused.text


async def test_one_stream_at_a_time_and_a_cap_for_the_app() -> None:
    guard = Guard(Policy(streams_per_visitor=1, max_streams=2))
    ana, bob, cy = Visitor("a"), Visitor("b"), Visitor("c")
    first = await guard.admit(ana, None)
    assert (await guard.admit(ana, None)).kind == "limit_one_at_a_time"
    second = await guard.admit(bob, None)
    assert (await guard.admit(cy, None)).kind == "limit_capacity"
    await guard.settle(first, 0, None)
    await guard.settle(first, 0, None)  # settling twice frees one slot only
    assert not hasattr(await guard.admit(cy, None), "kind")
    await guard.settle(second, 0, None)


async def test_spending_ceiling_reserves_worst_case_then_settles_actual() -> None:
    guard = Guard(Policy(daily_budget_usd=1.0))
    ana = Visitor("a")
    replies = 0
    for _ in range(20):
        ticket = await guard.admit(ana, 0.05)  # worst case of the request
        if hasattr(ticket, "kind"):
            assert ticket.kind == "limit_budget" and "midnight UTC" in ticket.text
            break
        await guard.settle(ticket, 100, 0.10)  # what the upstream reported
        replies += 1
    assert replies == 10 and await guard.spent_today() == pytest.approx(1.0)


async def test_concurrent_admissions_never_overspend() -> None:
    guard = Guard(Policy(daily_budget_usd=1.0, rate=parse_limits("5/minute", "X")))
    tickets = await asyncio.gather(*(guard.admit(Visitor("a"), 0.3) for _ in range(50)))
    admitted = [t for t in tickets if not hasattr(t, "kind")]
    assert len(admitted) == 3  # 3 x 0.3 reserved fits in $1; the rate limit alone would allow 5


async def test_own_key_spends_no_quota() -> None:
    guard = Guard(Policy(rate=parse_limits("1/minute", "X"), daily_budget_usd=0.0))
    for _ in range(5):
        ticket = await guard.admit(Visitor("a", own_key=True), 1.0)
        assert not hasattr(ticket, "kind")
        await guard.settle(ticket, 10_000, 1.0)
    assert await guard.spent_today() == 0


async def test_limits_hold_across_replicas_through_redis(redis_server) -> None:
    """Two app processes (two Guards) on one Redis share every visitor's limits and the ceiling."""
    policy = Policy(rate=parse_limits("4/minute", "X"), streams_per_visitor=1, daily_budget_usd=1.0)
    url = redis_server.url
    guard_a, guard_b = Guard(policy, url), Guard(policy, url)
    await guard_a.storage.reset()
    ana = Visitor(f"ip:10.0.0.{id(policy) % 250}")
    first = await guard_a.admit(ana, 0.01)
    assert (await guard_b.admit(ana, 0.01)).kind == "limit_one_at_a_time"  # one stream, whichever replica
    await guard_a.settle(first, 10, 0.4)
    admitted = 1
    for guard in (guard_b, guard_a, guard_b, guard_a, guard_b):
        ticket = await guard.admit(ana, 0.01)
        if hasattr(ticket, "kind"):
            assert ticket.kind in ("limit_messages", "limit_budget")
            continue
        admitted += 1
        await guard.settle(ticket, 10, 0.4)
    assert admitted == 3  # $0.40 each: the third reply takes the day to $1.20 > $1, nothing after it
    assert await guard_b.spent_today() == pytest.approx(1.2)
