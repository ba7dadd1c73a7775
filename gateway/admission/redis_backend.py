"""Admission shared by every replica through Redis: one Lua script call per admit, one per settle.

Keys (all under the hash tag ``{prefix}`` so a Redis Cluster keeps them in one slot)::

    {p}:b:<kind>:<id>:<window>   hash  spent, reserved     nano-USD, TTL = window end + 1 day
    {p}:r:<kind>:<id>:<window>   zset  "<ticket>:<nanos>" scored by expiry (ms): open reservations
    {p}:q:<kind>:<id>:<minute>   hash  r (requests), t (tokens) in one fixed 60 s window, TTL 120 s
    {p}:t:<ticket>               string  present until the ticket is settled or released

The client computes the windows from its clock (injectable for tests) and passes every key in
KEYS, so a script touches only declared keys. ``ADMIT`` first drops expired reservations (a
replica that died mid-request), reads every subject's counters, returns a rejection without
writing anything if any check fails, else reserves on all subjects and creates the ticket key.
``SETTLE`` deletes the ticket key first; if it was already gone it does nothing, which makes a
second settle (or a settle after release) a no-op on every replica.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from gateway.admission.base import (
    RATE_WINDOW_S,
    BudgetState,
    OutputClaim,
    Settlement,
    Subject,
    Ticket,
    as_utc,
    budget_window,
    nanos_to_usd,
    new_ticket_id,
    rate_info,
    rate_minute,
    rejection,
    tightest_remaining,
    unique_subjects,
    unit_price,
    usd_to_nanos,
    window_ttl_s,
)
from gateway.admission.resp import PipelinedRedis, RedisError, Script

# KEYS[1] ticket key; then per subject: budget hash, reservation zset, rate hash.
# ARGV: now_ms, ticket id, fixed reserve nanos, tokens, reservation expiry ms, ticket ttl s, rate ttl s,
#       output unit price (nanos per million units; 0: no output claim), max units, min units,
#       tokens per unit, then per subject: budget nanos (-1: none), budget key ttl s (-1: never),
#       rpm (-1), tpm (-1).
# Returns {ok, reason, subject index, units granted, reserve nanos, then per subject: spent,
# reserved, requests, tokens}. Numbers are Lua doubles: exact for money below 2^53 nano-dollars.
ADMIT_LUA = """
local now = tonumber(ARGV[1])
local fixed = tonumber(ARGV[3])
local tokens = tonumber(ARGV[4])
local price, max_units, min_units, per_unit = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local n = (#KEYS - 1) / 3
local budget, bttl, rpm, tpm = {}, {}, {}, {}
local spent, reserved, reqs, toks = {}, {}, {}, {}
for i = 1, n do
  local a = 11 + 4 * (i - 1)
  budget[i] = tonumber(ARGV[a + 1]); bttl[i] = tonumber(ARGV[a + 2])
  rpm[i] = tonumber(ARGV[a + 3]); tpm[i] = tonumber(ARGV[a + 4])
  local bkey, rkey, qkey = KEYS[3 * i - 1], KEYS[3 * i], KEYS[3 * i + 1]
  spent[i], reserved[i] = 0, 0
  if budget[i] >= 0 then
    local stale = redis.call('ZRANGEBYSCORE', rkey, '-inf', now)
    if #stale > 0 then
      local freed = 0
      for _, m in ipairs(stale) do freed = freed + tonumber(string.match(m, ':(%d+)$')) end
      redis.call('ZREMRANGEBYSCORE', rkey, '-inf', now)
      redis.call('HINCRBY', bkey, 'reserved', string.format('%d', -freed))
    end
    local v = redis.call('HMGET', bkey, 'spent', 'reserved')
    spent[i] = tonumber(v[1] or '0'); reserved[i] = tonumber(v[2] or '0')
  end
  local q = redis.call('HMGET', qkey, 'r', 't')
  reqs[i] = tonumber(q[1] or '0'); toks[i] = tonumber(q[2] or '0')
end
local units, short = max_units, 0
if price > 0 then
  for i = 1, n do
    if budget[i] >= 0 then
      local room = budget[i] - spent[i] - reserved[i] - fixed
      local afford = 0
      if room > 0 then afford = math.floor(room * 1000000 / price) end
      if afford < units then units = afford; short = i end
    end
  end
end
local function cost(u)
  if price <= 0 or u <= 0 then return 0 end
  return math.ceil(u * price / 1000000)
end
local reserve = fixed + cost(units)
local function answer(ok, reason, idx)
  local out = {ok, reason, idx, units, reserve}
  for i = 1, n do
    out[#out + 1] = spent[i]; out[#out + 1] = reserved[i]; out[#out + 1] = reqs[i]; out[#out + 1] = toks[i]
  end
  return out
end
if units < min_units then
  units = 0; reserve = fixed + cost(min_units)
  if short == 0 then short = 1 end
  return answer(0, 1, short)
end
tokens = tokens + units * per_unit
local member = ARGV[2] .. ':' .. string.format('%d', reserve)
if reserve > 0 then
  for i = 1, n do
    if budget[i] >= 0 and spent[i] + reserved[i] + reserve > budget[i] then return answer(0, 1, i) end
  end
end
for i = 1, n do
  if rpm[i] >= 0 and reqs[i] + 1 > rpm[i] then return answer(0, 2, i) end
end
for i = 1, n do
  if tpm[i] >= 0 and toks[i] + tokens > tpm[i] then return answer(0, 3, i) end
end
for i = 1, n do
  local bkey, rkey, qkey = KEYS[3 * i - 1], KEYS[3 * i], KEYS[3 * i + 1]
  if budget[i] >= 0 and reserve > 0 then
    redis.call('HINCRBY', bkey, 'reserved', string.format('%d', reserve))
    redis.call('ZADD', rkey, ARGV[5], member)
    if bttl[i] >= 0 then
      redis.call('EXPIRE', bkey, bttl[i]); redis.call('EXPIRE', rkey, bttl[i])
    end
    reserved[i] = reserved[i] + reserve
  end
  redis.call('HINCRBY', qkey, 'r', 1)
  if tokens > 0 then redis.call('HINCRBY', qkey, 't', string.format('%d', tokens)) end
  redis.call('EXPIRE', qkey, ARGV[7])
  reqs[i] = reqs[i] + 1; toks[i] = toks[i] + tokens
end
redis.call('SET', KEYS[1], string.format('%d', reserve), 'EX', ARGV[6])
return answer(1, 0, 0)
"""

# KEYS[1] ticket key; then per subject: budget hash, reservation zset, rate hash (admit-time windows).
# ARGV: member, reserve nanos, actual nanos, token delta, then per subject: has budget (1/0), budget ttl s.
SETTLE_LUA = """
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
local n = (#KEYS - 1) / 3
local delta = tonumber(ARGV[4])
for i = 1, n do
  local bkey, rkey, qkey = KEYS[3 * i - 1], KEYS[3 * i], KEYS[3 * i + 1]
  if ARGV[3 + 2 * i] == '1' then
    if redis.call('ZREM', rkey, ARGV[1]) == 1 then
      redis.call('HINCRBY', bkey, 'reserved', '-' .. ARGV[2])
    end
    if ARGV[3] ~= '0' then
      redis.call('HINCRBY', bkey, 'spent', ARGV[3])
      local ttl = tonumber(ARGV[4 + 2 * i])
      if ttl >= 0 then redis.call('EXPIRE', bkey, ttl) end
    end
  end
  if delta ~= 0 and redis.call('EXISTS', qkey) == 1 then redis.call('HINCRBY', qkey, 't', ARGV[4]) end
end
return 1
"""

# KEYS[1] budget hash. ARGV: spent nanos, ttl s (-1: never). Returns 1 if seeded.
SEED_LUA = """
if redis.call('HSETNX', KEYS[1], 'spent', ARGV[1]) == 0 then return 0 end
if tonumber(ARGV[2]) >= 0 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 1
"""


ADMIT, SETTLE, SEED = Script(ADMIT_LUA), Script(SETTLE_LUA), Script(SEED_LUA)


class RedisAdmission:
    """Budgets and rate limits in Redis, shared by every replica pointing at the same prefix."""

    def __init__(
        self,
        redis_url: str | None = None,
        prefix: str = "switchyard",
        *,
        clock: Callable[[], datetime] | None = None,
        reservation_ttl_s: int = 900,
        ticket_ttl_s: int = 86_400,
        timeout_s: float = 5.0,
    ) -> None:
        if not redis_url:
            raise ValueError("RedisAdmission needs a redis_url")
        self._redis = PipelinedRedis(redis_url, connect_timeout_s=timeout_s, call_timeout_s=timeout_s)
        self._p = "{" + prefix + "}"
        self._clock = clock or (lambda: datetime.now(UTC))
        self._reservation_ttl_s = reservation_ttl_s
        self._ticket_ttl_s = ticket_ttl_s

    def _keys(self, subject: Subject, window_id: str | None, minute: int) -> list[str]:
        base = f"{subject.kind}:{subject.id}"
        window = window_id or "-"
        return [f"{self._p}:b:{base}:{window}", f"{self._p}:r:{base}:{window}", f"{self._p}:q:{base}:{minute}"]

    async def admit(
        self,
        subjects: Sequence[Subject],
        *,
        tokens: int,
        reserve_usd: Decimal,
        output: OutputClaim | None = None,
        now: datetime | None = None,
    ) -> Ticket:
        now = as_utc(now or self._clock())
        subs = unique_subjects(subjects)
        fixed = usd_to_nanos(reserve_usd, round_up=True)
        minute, reset_s = rate_minute(now)
        now_ms = int(now.timestamp() * 1000)
        ticket_id = new_ticket_id()
        keys = [f"{self._p}:t:{ticket_id}"]
        args: list[Any] = [
            now_ms,
            ticket_id,
            fixed,
            tokens,
            now_ms + self._reservation_ttl_s * 1000,
            self._ticket_ttl_s,
            2 * RATE_WINDOW_S,
            unit_price(output),
            output.max_units if output else 0,
            output.min_units if output else 0,
            output.tokens_per_unit if output else 0,
        ]
        windows: list[str | None] = []
        for subject in subs:
            window = budget_window(subject.period, now) if subject.budget_usd is not None else None
            windows.append(window.id if window else None)
            keys += self._keys(subject, window.id if window else None, minute)
            args += [
                usd_to_nanos(subject.budget_usd, round_up=False) if subject.budget_usd is not None else -1,
                window_ttl_s(window, now) if window else -1,
                subject.rpm if subject.rpm is not None else -1,
                subject.tpm if subject.tpm is not None else -1,
            ]
        reply = [int(x) for x in await self._redis.evalsha(ADMIT, keys, args)]
        ok, reason, index, units, reserve = reply[:5]
        counts = [reply[5 + 4 * i : 9 + 4 * i] for i in range(len(subs))]
        info = rate_info(subs, [c[2] for c in counts], [c[3] for c in counts], reset_s)
        if output is not None:
            tokens += units * output.tokens_per_unit
        if not ok:
            spent, reserved = counts[index - 1][0], counts[index - 1][1]
            raise rejection(
                reason,
                subs[index - 1],
                now=now,
                info=info,
                reset_s=reset_s,
                tokens=tokens,
                reserve_nanos=reserve,
                spent_nanos=spent,
                reserved_nanos=reserved,
                budget_remaining_nanos=tightest_remaining(subs, [c[0] for c in counts], [c[1] for c in counts]),
            )
        # The script's reserved counts include this request's own reservation on budgeted subjects.
        others = [c[1] - (reserve if s.budget_usd is not None else 0) for s, c in zip(subs, counts, strict=True)]
        return Ticket(
            id=ticket_id,
            subjects=subs,
            tokens=tokens,
            reserve_nanos=reserve,
            windows=tuple(windows),
            rate_window=minute,
            limits=info,
            output_units=units if output is not None else None,
            budget_remaining_nanos=tightest_remaining(subs, [c[0] for c in counts], others),
            rpm_full=tuple(s for s, c in zip(subs, counts, strict=True) if s.rpm is not None and c[2] >= s.rpm),
            rate_reset_s=reset_s,
        )

    async def settle(self, ticket: Ticket, *, actual_usd: Decimal, actual_tokens: int) -> bool:
        return await self._finish(ticket, usd_to_nanos(actual_usd, round_up=True), actual_tokens)

    async def release(self, ticket: Ticket) -> bool:
        return await self._finish(ticket, 0, 0)

    async def settle_many(self, settlements: Sequence[Settlement]) -> list[bool]:
        if not settlements:
            return []
        calls = [self._finish_call(s.ticket, usd_to_nanos(s.actual_usd, round_up=True), s.actual_tokens) for s in settlements]
        replies = await self._redis.evalsha_many(SETTLE, calls)
        failed = next((r for r in replies if isinstance(r, Exception)), None)
        if failed is not None:  # a script error: the settler isolates the ticket that caused it
            raise RedisError(str(failed))
        return [bool(r) for r in replies]

    async def _finish(self, ticket: Ticket, actual: int, actual_tokens: int) -> bool:
        keys, args = self._finish_call(ticket, actual, actual_tokens)
        return bool(await self._redis.evalsha(SETTLE, keys, args))

    def _finish_call(self, ticket: Ticket, actual: int, actual_tokens: int) -> tuple[list[str], list[Any]]:
        now = self._clock()
        keys = [f"{self._p}:t:{ticket.id}"]
        args: list[Any] = [f"{ticket.id}:{ticket.reserve_nanos}", ticket.reserve_nanos, actual, actual_tokens - ticket.tokens]
        for subject, window_id in zip(ticket.subjects, ticket.windows, strict=True):
            keys += self._keys(subject, window_id, ticket.rate_window)
            ttl = window_ttl_s(budget_window(subject.period, now), now) if window_id is not None else -1
            args += [1 if window_id is not None else 0, ttl]
        return keys, args

    async def seed_spend(self, subject: Subject, period_start: datetime, usd: Decimal) -> bool:
        window = budget_window(subject.period, period_start)
        key = self._keys(subject, window.id, 0)[0]
        ttl = window_ttl_s(window, self._clock())
        return bool(await self._redis.evalsha(SEED, [key], [usd_to_nanos(usd, round_up=True), ttl]))

    async def budget_state(self, subject: Subject, now: datetime | None = None) -> BudgetState:
        now = as_utc(now or self._clock())
        window = budget_window(subject.period, now)
        bkey, rkey, _ = self._keys(subject, window.id, 0)
        (spent, _reserved), live = await self._redis.pipeline(
            [
                ("HMGET", bkey, "spent", "reserved"),
                ("ZRANGEBYSCORE", rkey, f"({int(now.timestamp() * 1000)}", "+inf"),
            ]
        )
        reserved = sum(int(m.rsplit(b":", 1)[1]) for m in live)  # counts only unexpired holds
        return BudgetState(window, nanos_to_usd(int(spent or 0)), nanos_to_usd(reserved), subject.budget_usd)

    async def ping(self) -> bool:
        return await self._redis.ping()

    async def aclose(self) -> None:
        await self._redis.aclose()
