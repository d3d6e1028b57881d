"""Per-company pacing shared by every process and machine: Intuit's limits kept in Redis.

The same pacer as `SharedRealmPacer` (postgres.py), with the same interface (the `Pacer` protocol: `async with
pacer.slot(batch=...)`, `throttled(retry_after)`, `stats()`, `astats()`) and the same guarantees across
processes, kept in Redis instead of PostgreSQL (`QBFLOW_REDIS_URL`):

* no interval of `window + margin` seconds holds more than `per_window` requests (`batch_per_window`
  batch requests) of one company, each counted at its *end* (see inprocess.py for why the end);
* at most `concurrent` requests of one company are in flight at once;
* after a 429, every process pauses that company.

Keys, per company (the `{realm}` hash tag keeps one company's keys in one slot of a Redis Cluster):

    <prefix>:{realm}:live       sorted set: leases (requests in flight), member = lease id, score = expiry
    <prefix>:{realm}:live_b     the same, batch requests only
    <prefix>:{realm}:ended      sorted set: the sliding log, member = lease id, score = end time
    <prefix>:{realm}:ended_b    the same, batch requests only
    <prefix>:{realm}:realm      hash: paused_until, throttles (429s seen)
    <prefix>:{realm}:seq        counter drawing lease ids (never expires, so ids are never reused)
    <prefix>:realms             set of the companies paced (for `qbflow status`)

Every time is seconds since the epoch on the *Redis server's* clock (`redis.call('TIME')`, read inside each
script), the one clock all workers share, so the clocks of the workers' machines play no part.

Admission is one Lua script (EVALSHA), which Redis runs atomically: no other command on any key runs
while it does, so admissions to one company are serialised across all processes, as under PostgreSQL's row
lock. The script:

1. reads `now` from TIME;
2. settles leases that expired without an end (their worker died, or could not renew them): each moves from
   `live` to `ended` scored at its expiry. The request ended no later than that, so this is an upper bound
   of its end, as the log needs. Log entries older than `keep` (twice the window plus the lease time) are
   trimmed;
3. computes the wait as inprocess.py does: the pause (`paused_until - now`); `concurrent` leases alive -> until
   a lease ends; for the window, with `excess = alive + ended_in_window - limit + 1`, nothing if
   `excess <= 0`, else the `excess`-th oldest end in the window (ZRANGEBYSCORE ... LIMIT) + window + margin -
   now, or "until a lease ends" when only requests in flight fill it. The same for batches against
   `batch_per_window`. When waiting for a lease to end, at least until the earliest lease expiry or
   `recheck`, whichever is sooner;
4. no wait: draws an id and adds the lease to `live` (and `live_b`) scored `now + lease_ttl`, and returns
   it. Else returns the wait, which the caller spends off Redis: exactly as long as the log says when the
   window is full; when waiting for a lease to end, until the earliest expiry, at most `recheck` seconds, or
   until a request of this process ends (a local event), whichever is first. No spinning.

While a request lasts, a task renews its lease every `lease_ttl / 3` seconds (a script that moves its score
to `now + lease_ttl` only if the lease is still alive: an expired lease is never revived, since others may
already have counted it as ended). When the request ends, a script removes the lease and adds it to the log
at the server's `now` (later than the true end: an upper bound again; if the lease had been settled at its
expiry, its entry moves to this later end). A worker killed mid-request leaves its lease, which stops
counting as in flight after `lease_ttl` (30 s by default) and counts as ended at its expiry. The keys of a
company expire when nothing has used them for `keep + lease_ttl`, except its counter and pause hash.

Why the guarantees hold: the argument of postgres.py, with Redis's atomic scripts in place of the row
lock. Take the last-admitted request r among those ending in some interval [a, a + window + margin). Every
other one was admitted by an earlier script run, so r's script saw its lease: alive (counted as in flight),
or ended at a stamp >= a and <= r's `now`, inside r's window. So at most `limit - 1` others, and r. The same
with leases alive gives at most `concurrent` in flight. As there, a worker frozen for longer than
`lease_ttl` is treated as dead, the one case where the limits could be exceeded. Redis must keep its writes
(a Redis that restarts empty forgets the log: the next minute may then see up to twice the limit; run it
with persistence, or accept that after a restart).

A 429 (`throttled`) pauses this process at once and, in one script, moves `paused_until` to
`max(paused_until, now + pause)` for every process; each admission reads it.

Within one process, requests for one company first pass a local semaphore of `concurrent` places and a local
lock, so only one coroutine per process and company runs the admission script at a time, and local waiters
are admitted in order. Each event loop gets its own asyncio Redis client (a client belongs to one loop);
`stats()` and a `throttled()` outside any loop use a synchronous client.

`RedisBackend` is this pacing as a `PacingBackend`: its pacers (`redis_pacer_for`) and each company's rates read
with the census script (`qbflow status`). `pacing_backend(...)` (qbflow.qbo.pacing) picks it when
`QBFLOW_REDIS_URL` is set, unless `QBFLOW_SHARED_LIMITS=0`.

The URL may carry a password: it is never logged nor shown (`redact_url`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio
from redis.exceptions import RedisError

from qbflow.qbo._aio import PerLoop
from qbflow.qbo.pacing.base import DEFAULT_LIMITS, Limits, Rates, RealmRate
from qbflow.qbo.pacing.leased import DEFAULT_LEASE_TTL, DEFAULT_RECHECK, LeasedPacer, Pause

__all__ = ["DEFAULT_PREFIX", "RedisBackend", "RedisRealmPacer", "redact_url", "redis_pacer_for", "reset_redis_pacers"]

log = logging.getLogger("qbflow.qbo")

DEFAULT_PREFIX = "qbflow:pacer"

# Shared by the scripts: the server's clock, and scores written with microseconds (Lua's own number-to-string
# conversion keeps only 14 digits, a tenth of a millisecond at today's epoch).
_PRELUDE = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function f(x) return string.format('%.6f', x) end
"""

# KEYS: live, live_b, ended, ended_b, realm, seq
# ARGV: batch (0/1), window, concurrent, per_window, batch_per_window, lease_ttl, recheck, keep
# Returns {1, lease id, now} when admitted, else {0, wait, until_end (0/1)}.
_ADMIT = _PRELUDE + """
local live, live_b, ended, ended_b, realm, seq = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local batch = ARGV[1] == '1'
local window, concurrent = tonumber(ARGV[2]), tonumber(ARGV[3])
local per_window, batch_per_window = tonumber(ARGV[4]), tonumber(ARGV[5])
local ttl, recheck, keep = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local life = math.ceil(keep + ttl)

-- Leases that expired without an end count as ended at their expiry.
local function settle(from, to)
  local gone = redis.call('ZRANGEBYSCORE', from, '-inf', f(now), 'WITHSCORES')
  for i = 1, #gone, 2 do redis.call('ZADD', to, gone[i + 1], gone[i]) end
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', from, '-inf', f(now)) end
end
settle(live, ended)
settle(live_b, ended_b)
redis.call('ZREMRANGEBYSCORE', ended, '-inf', f(now - keep))
redis.call('ZREMRANGEBYSCORE', ended_b, '-inf', f(now - keep))

local edge = '(' .. f(now - window)
-- Seconds until the window leaves room for one more; nil when only requests in flight fill it.
local function room(log, alive, limit)
  local n = redis.call('ZCOUNT', log, edge, '+inf')
  local excess = alive + n - limit + 1
  if excess <= 0 then return 0 end
  if excess > n then return nil end
  local nth = redis.call('ZRANGEBYSCORE', log, edge, '+inf', 'WITHSCORES', 'LIMIT', excess - 1, 1)
  return tonumber(nth[2]) + window - now
end

local alive = redis.call('ZCARD', live)
local wait = tonumber(redis.call('HGET', realm, 'paused_until') or '0') - now
local until_end = alive >= concurrent
local r = room(ended, alive, per_window)
if r == nil then until_end = true elseif r > wait then wait = r end
if batch then
  r = room(ended_b, redis.call('ZCARD', live_b), batch_per_window)
  if r == nil then until_end = true elseif r > wait then wait = r end
end
if until_end then
  local soon = recheck
  local first = redis.call('ZRANGE', live, 0, 0, 'WITHSCORES')
  if #first > 0 then soon = math.min(recheck, tonumber(first[2]) - now) end
  if soon > wait then wait = soon end
end
if wait > 0 then
  return {0, f(wait), until_end and 1 or 0}
end
local id = redis.call('INCR', seq)
local expiry = f(now + ttl)
redis.call('ZADD', live, expiry, id)
if batch then redis.call('ZADD', live_b, expiry, id) end
for _, key in ipairs({live, live_b, ended, ended_b}) do redis.call('EXPIRE', key, life) end
return {1, tostring(id), f(now)}
"""

# KEYS: live, live_b; ARGV: id, lease_ttl, batch (0/1), life. Returns 1 if renewed, 0 if the lease is gone.
_RENEW = _PRELUDE + """
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s or tonumber(s) <= now then return 0 end
local expiry = f(now + tonumber(ARGV[2]))
redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[2], 'XX', expiry, ARGV[1])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return 1
"""

# KEYS: live, live_b, ended, ended_b; ARGV: id, batch (0/1), life. Records the end now (also for a lost lease).
_END = _PRELUDE + """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], f(now), ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[3])
if ARGV[2] == '1' then
  redis.call('ZADD', KEYS[4], f(now), ARGV[1])
  redis.call('EXPIRE', KEYS[4], ARGV[3])
end
return f(now)
"""

# KEYS: live, live_b; ARGV: id. A lease given back unused (its caller was cancelled before sending anything).
_FORGET = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS: realm; ARGV: pause. Returns {now, paused_until}.
_PAUSE = _PRELUDE + """
local till = math.max(tonumber(redis.call('HGET', KEYS[1], 'paused_until') or '0'), now + tonumber(ARGV[1]))
redis.call('HSET', KEYS[1], 'paused_until', f(till))
redis.call('HINCRBY', KEYS[1], 'throttles', 1)
return {f(now), f(till)}
"""

# KEYS: live, live_b, ended, ended_b, realm; ARGV: window. Read only.
# Returns {now, alive, alive_batches, ended, ended_batches, paused_until, throttles, next_expiry}.
_CENSUS = _PRELUDE + """
local edge, at = '(' .. f(now - tonumber(ARGV[1])), f(now)
local alive = redis.call('ZCOUNT', KEYS[1], '(' .. at, '+inf')
local alive_b = redis.call('ZCOUNT', KEYS[2], '(' .. at, '+inf')
-- expired leases not settled yet: ended at their expiry
local ended = redis.call('ZCOUNT', KEYS[3], edge, '+inf') + redis.call('ZCOUNT', KEYS[1], edge, at)
local ended_b = redis.call('ZCOUNT', KEYS[4], edge, '+inf') + redis.call('ZCOUNT', KEYS[2], edge, at)
local paused = redis.call('HGET', KEYS[5], 'paused_until') or '0'
local throttles = tonumber(redis.call('HGET', KEYS[5], 'throttles') or '0')
return {at, alive, alive_b, ended, ended_b, paused, throttles}
"""


def redact_url(url: str) -> str:
    """`url` without its password (for logs and `qbflow status`)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(a Redis URL)"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


@dataclass(frozen=True)
class RedisLease:
    """One admitted request: its lease id and when it was admitted (Redis clock, seconds since the epoch)."""

    id: str
    admitted_at: float
    batch: bool


@dataclass(frozen=True)
class _Census:
    now: float
    alive: int
    alive_batches: int
    ended: int
    ended_batches: int
    paused_until: float
    throttles: int


class _Scripts:
    """One Redis client (asyncio or not) and the pacer's scripts registered on it (EVALSHA, loaded on demand)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.admit = client.register_script(_ADMIT)
        self.renew = client.register_script(_RENEW)
        self.end = client.register_script(_END)
        self.forget = client.register_script(_FORGET)
        self.pause = client.register_script(_PAUSE)
        self.census = client.register_script(_CENSUS)


def _census(reply: list[Any]) -> _Census:
    return _Census(now=float(reply[0]), alive=int(reply[1]), alive_batches=int(reply[2]), ended=int(reply[3]),
                   ended_batches=int(reply[4]), paused_until=float(reply[5]), throttles=int(reply[6]))


def _keys(prefix: str, realm_id: str) -> dict[str, str]:
    base = f"{prefix}:{{{realm_id}}}"
    return {name: f"{base}:{name}" for name in ("live", "live_b", "ended", "ended_b", "realm", "seq")}


class RedisRealmPacer(LeasedPacer):
    """Admits requests to one realm at a pace its throttles allow, counted across every process that shares
    the Redis server. Share one per realm per process (`redis_pacer_for`). What happens in this process is
    `LeasedPacer`'s; here: admission, lease writes and the census, each one script."""

    _store_errors = (RedisError,)
    _store_name = "Redis"

    def __init__(
        self,
        realm_id: str,
        limits: Limits = DEFAULT_LIMITS,
        *,
        url: str,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        recheck: float = DEFAULT_RECHECK,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        super().__init__(realm_id, limits, lease_ttl=lease_ttl, recheck=recheck)
        self.prefix = prefix
        self._url = url  # may carry a password: never logged
        self._keys = _keys(prefix, realm_id)
        self._sync: _Scripts | None = None
        self._sync_lock = threading.Lock()
        self._scripts = PerLoop(lambda: _Scripts(redis.asyncio.Redis.from_url(url)))
        self._registered = False

    def __repr__(self) -> str:
        return f"RedisRealmPacer(realm_id={self.realm_id!r}, limits={self.limits!r}, prefix={self.prefix!r})"

    @property
    def where(self) -> str:
        """The Redis server, password hidden."""
        return redact_url(self._url)

    async def astats(self) -> dict[str, float | int]:
        """`stats` without blocking the event loop."""
        reply = await self._scripts.get().census(keys=self._census_keys(), args=[self.limits.effective_window])
        return self._stats(_census(reply))

    async def aclose(self) -> None:
        """Close this event loop's client (the pacer stays usable: a later call opens another)."""
        scripts = self._scripts._by_loop.pop(asyncio.get_running_loop(), None)
        if scripts is not None:
            close = getattr(scripts.client, "aclose", None) or scripts.client.close  # aclose: redis-py >= 5.0.1
            await close()

    # --- internals -------------------------------------------------------------------------------------
    def _census_keys(self) -> list[str]:
        return [self._keys[name] for name in ("live", "live_b", "ended", "ended_b", "realm")]

    def _census_now(self) -> _Census:
        return _census(self._sync_scripts().census(keys=self._census_keys(), args=[self.limits.effective_window]))

    def _sync_scripts(self) -> _Scripts:
        with self._sync_lock:
            if self._sync is None:
                self._sync = _Scripts(redis.Redis.from_url(self._url))
            return self._sync

    @property
    def _keep(self) -> float:
        # Twice the window: a process pacing to a longer window than ours must still find its entries.
        return 2 * self.limits.effective_window + self.lease_ttl

    @property
    def _life(self) -> int:
        return int(self._keep + self.lease_ttl) + 1

    def _pause_everyone_now(self, pause: float) -> Pause:
        reply = self._sync_scripts().pause(keys=[self._keys["realm"]], args=[pause])
        return Pause(float(reply[0]), float(reply[1]))

    async def _pause_everyone_async(self, pause: float) -> Pause:
        reply = await self._scripts.get().pause(keys=[self._keys["realm"]], args=[pause])
        return Pause(float(reply[0]), float(reply[1]))

    async def _admit(self, batch: bool) -> RedisLease:
        async with self._admission.get():
            scripts = self._scripts.get()
            if not self._registered:
                await scripts.client.sadd(f"{self.prefix}:realms", self.realm_id)
                self._registered = True
            ended = self._ended.get()
            limits = self.limits
            keys = [self._keys[name] for name in ("live", "live_b", "ended", "ended_b", "realm", "seq")]
            args = [1 if batch else 0, limits.effective_window, limits.concurrent, limits.per_window,
                    limits.batch_per_window, self.lease_ttl, self.recheck, self._keep]
            while True:
                if await self._wait_local_pause():
                    continue
                ended.clear()  # an end during the script below wakes the wait after it
                call = asyncio.ensure_future(scripts.admit(keys=keys, args=args))
                try:
                    reply = await asyncio.shield(call)
                except asyncio.CancelledError:
                    call.add_done_callback(lambda done: self._forget_unused(done, batch))
                    raise
                if int(reply[0]) == 1:
                    self.admitted += 1
                    return RedisLease(reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1]),
                                      float(reply[2]), batch)
                # A tiny positive wait can round to "not yet" forever on a coarse clock; never wait less than 1 ms.
                await self._wait(max(float(reply[1]), 0.001), int(reply[2]) == 1, ended)

    def _forget_unused(self, call: asyncio.Future[Any], batch: bool) -> None:
        # The caller was cancelled while being admitted: nothing was sent, so the lease goes without a trace.
        if call.cancelled() or call.exception() is not None or int(call.result()[0]) != 1:
            return
        lease_id = call.result()[1]
        self._in_background(call.get_loop().create_task(self._scripts.get().forget(
            keys=[self._keys["live"], self._keys["live_b"]], args=[lease_id])))

    async def _renew_lease(self, lease: RedisLease) -> bool:
        renewed = await self._scripts.get().renew(keys=[self._keys["live"], self._keys["live_b"]],
                                                  args=[lease.id, self.lease_ttl, 1 if lease.batch else 0, self._life])
        return int(renewed) == 1

    async def _end_lease(self, lease: RedisLease) -> None:
        call = asyncio.ensure_future(self._scripts.get().end(
            keys=[self._keys[name] for name in ("live", "live_b", "ended", "ended_b")],
            args=[lease.id, 1 if lease.batch else 0, self._life]))
        await asyncio.shield(call)  # a cancelled caller does not cancel the record of the end


# --- one pacer per realm per process ---------------------------------------------------------------------
_PACERS: dict[tuple[str, str, str], RedisRealmPacer] = {}
_pacers_lock = threading.Lock()


def redis_pacer_for(realm_id: str, url: str, limits: Limits | None = None, *, lease_ttl: float = DEFAULT_LEASE_TTL,
                    prefix: str = DEFAULT_PREFIX) -> RedisRealmPacer:
    """The process-wide Redis pacer of `realm_id` on the server at `url`.

    Made on first use (with `limits`, default Intuit's); later calls return the same pacer, and passing
    different `limits` then replaces its limits.
    """
    with _pacers_lock:
        slot = (url, prefix, realm_id)
        pacer = _PACERS.get(slot)
        if pacer is None:
            pacer = _PACERS[slot] = RedisRealmPacer(realm_id, limits or DEFAULT_LIMITS, url=url,
                                                    lease_ttl=lease_ttl, prefix=prefix)
        elif limits is not None and limits != pacer.limits:
            pacer.set_limits(limits)
        return pacer


def reset_redis_pacers() -> None:
    """Forget every Redis pacer (tests)."""
    with _pacers_lock:
        _PACERS.clear()


class RedisBackend:
    """Limits kept in the Redis server at `url` (under `prefix`), shared by every process that uses it."""

    name = "Redis"
    shared = True

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX, timeout: float = 2.0) -> None:
        self._url = url  # may carry a password: never logged
        self.prefix = prefix
        self.timeout = timeout  # for `rates`: status must answer even when Redis does not

    def __repr__(self) -> str:
        return f"RedisBackend({self.where!r}, prefix={self.prefix!r})"

    @property
    def where(self) -> str:
        """The Redis server, password hidden."""
        return redact_url(self._url)

    def pacer(self, realm_id: str, limits: Limits | None = None) -> RedisRealmPacer:
        """The process-wide `RedisRealmPacer` of `realm_id` on this server (`redis_pacer_for`)."""
        return redis_pacer_for(realm_id, self._url, limits, prefix=self.prefix)

    def rates(self, window: float = 60.0) -> Rates:
        """Every company paced here (the `<prefix>:realms` set), each read with the census script. A server that
        does not answer (within `timeout`) gives rates not measured, saying so."""
        try:
            realms = self._read_rates(window)
        except Exception as error:  # noqa: BLE001 - status must answer even when Redis does not
            return Rates(measured=False, note=f"not measured (Redis): the limits are held in Redis at {self.where}, "
                                              f"which did not answer ({type(error).__name__})")
        return Rates(measured=True, realms=realms,
                     note=f"limits held in Redis at {self.where}: from its request log, the last {window:.0f} s")

    def _read_rates(self, window: float) -> list[RealmRate]:
        client = redis.Redis.from_url(self._url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout)
        try:
            census = client.register_script(_CENSUS)
            rates = []
            for raw in sorted(client.smembers(f"{self.prefix}:realms")):
                realm_id = raw.decode() if isinstance(raw, bytes) else str(raw)
                keys = _keys(self.prefix, realm_id)
                found = _census(census(keys=[keys[name] for name in ("live", "live_b", "ended", "ended_b", "realm")],
                                       args=[window]))
                rates.append(RealmRate(realm_id=realm_id, recent=found.ended, in_flight=found.alive,
                                       throttles=found.throttles, paused_for=max(0.0, found.paused_until - found.now)))
            return rates
        finally:
            client.close()
