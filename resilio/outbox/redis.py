"""The Redis outbox backend: a stream read through a consumer group, shared by many machines.

Keys (``P`` is ``resilio:outbox:{name}``; the braces keep them in one cluster slot):

* ``P:stream`` - items ready to run (entries hold the item id), read by the group ``drainers``;
* ``P:item:<id>`` - one hash per item (operation, payload, key, attempts, times, state, error);
* ``P:delayed`` - sorted set of pending items waiting for their next run time;
* ``P:leases`` - sorted set of leased items by lease expiry;
* ``P:dead`` - sorted set of dead items by the time they died;
* ``P:waiting`` - sorted set of pending items (due or delayed, not leased) by creation time,
  for the age of the oldest one;
* ``P:done`` - counter of delivered items (delivered items are deleted);
* ``P:keys`` - hash from idempotency key to the id of the pending or leased item holding it
  (enqueueing a key that is held returns the holder instead of adding an item). The field is
  removed when the holder is delivered or dead-lettered, and set again if a dead item is
  requeued; an entry naming an item that is no longer live counts as free. Items stored by a
  version without this hash are not in it, so their keys are not found as held.

Every state change is one Lua script, so leasing and finishing are atomic. Times come from the
caller's clock (wall time): a lease is judged expired by the next drainer's clock, so machines
sharing an outbox must keep their clocks in sync (NTP) to well within the lease duration.

Each backend reads the stream as its own consumer (``host:pid:random``). Consumers idle for
longer than ``consumer_idle`` with nothing pending are removed from the group (checked at most
once a minute by a leasing backend), so restarted drainers do not pile up in ``XINFO``.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from resilio.outbox._model import ItemState, NewItem, OutboxItem, OutboxStats

__all__ = ["RedisBackend"]

_GROUP = "drainers"
_REAP_EVERY = 60.0  # seconds between checks for idle consumers

# Lua helper: the id of the live (pending or leased) item holding idempotency key k, or false.
# Scripts using it pass the key hash as an argument and the item prefix as KEYS[4].
_HOLDER = """
local function holder(keys_hash, k)
  local held = redis.call('HGET', keys_hash, k)
  if not held then return false end
  local state = redis.call('HGET', KEYS[4] .. held, 'state')
  if state == 'pending' or state == 'leased' then return held end
  return false
end
"""

# KEYS: stream, delayed, waiting, item prefix, keys.
# ARGV: one JSON array of strings per item (one argument each keeps the client's packing cheap):
# id, operation, payload, key, next_run_at, created_at, kind, reason, delayed ("1": first wait in
# the delayed set).
# Returns only the items not stored: {n, fields of the live item holding its key} each (n counts
# from 1), so a batch of new keys gets an empty reply.
_ADD = (
    _HOLDER
    + """
local out = {}
for n = 1, #ARGV do
  local f = cjson.decode(ARGV[n])
  local id = f[1]
  local held = holder(KEYS[5], f[4])
  if held then
    local fields = redis.call('HGETALL', KEYS[4] .. held)
    fields[#fields + 1] = 'item_id'
    fields[#fields + 1] = held
    out[#out + 1] = {n, fields}
  else
    redis.call('HSET', KEYS[4] .. id, 'operation', f[2], 'payload', f[3], 'idempotency_key', f[4],
               'attempts', 0, 'next_run_at', f[5], 'created_at', f[6], 'updated_at', f[6],
               'state', 'pending', 'error_kind', f[7], 'error_reason', f[8])
    redis.call('HSET', KEYS[5], f[4], id)
    redis.call('ZADD', KEYS[3], f[6], id)
    if f[9] == '1' then
      redis.call('ZADD', KEYS[2], f[5], id)
    else
      redis.call('XADD', KEYS[1], '*', 'id', id)
    end
  end
end
return out
"""
)

# Shared Lua prelude: finishing a leased item checks its lease token and takes it off the stream.
_FINISH = (
    """
local item = KEYS[4] .. ARGV[1]
if redis.call('HGET', item, 'token') ~= ARGV[2] then return 0 end
local entry = redis.call('HGET', item, 'entry')
if entry then
  redis.call('XACK', KEYS[1], '"""
    + _GROUP
    + """', entry)
  redis.call('XDEL', KEYS[1], entry)
end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', item, 'token', 'entry', 'lease_until')
local waiting = KEYS[6]
local function free_key()
  local k = redis.call('HGET', item, 'idempotency_key')
  if k and redis.call('HGET', KEYS[7], k) == ARGV[1] then redis.call('HDEL', KEYS[7], k) end
end
"""
)

# KEYS: stream, delayed, leases, item prefix, waiting.
# ARGV: now, lease_until, limit, consumer, token.
_LEASE = (
    """
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[3])
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
  redis.call('XADD', KEYS[1], '*', 'id', id)
  redis.call('ZREM', KEYS[2], id)
end
local out = {}
local function take(id, entry)
  local item = KEYS[4] .. id
  redis.call('HSET', item, 'state', 'leased', 'token', ARGV[5], 'entry', entry,
             'lease_until', ARGV[2], 'updated_at', ARGV[1])
  redis.call('HINCRBY', item, 'attempts', 1)
  redis.call('ZADD', KEYS[3], ARGV[2], id)
  redis.call('ZREM', KEYS[5], id)
  out[#out + 1] = redis.call('HGETALL', item)
  out[#out][#out[#out] + 1] = 'item_id'
  out[#out][#out[#out] + 1] = id
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(expired) do
  local entry = redis.call('HGET', KEYS[4] .. id, 'entry')
  redis.call('XCLAIM', KEYS[1], '"""
    + _GROUP
    + """', ARGV[4], 0, entry, 'JUSTID')
  take(id, entry)
end
local want = limit - #expired
if want > 0 then
  local read = redis.call('XREADGROUP', 'GROUP', '"""
    + _GROUP
    + """', ARGV[4], 'COUNT', want,
                          'STREAMS', KEYS[1], '>')
  if read and read[1] then
    for _, e in ipairs(read[1][2]) do
      local id = e[2][2]
      if redis.call('HGET', KEYS[4] .. id, 'state') == 'pending' then
        take(id, e[1])
      else
        redis.call('XACK', KEYS[1], '"""
    + _GROUP
    + """', e[1])
        redis.call('XDEL', KEYS[1], e[1])
      end
    end
  end
end
return out
"""
)

# ARGV: item id, token, now
_COMPLETE = (
    _FINISH
    + """
free_key()
redis.call('DEL', item)
redis.call('INCR', KEYS[5])
return 1
"""
)

# ARGV: item id, token, now, next_run_at, kind, reason
_RESCHEDULE = (
    _FINISH
    + """
redis.call('HSET', item, 'state', 'pending', 'next_run_at', ARGV[4], 'error_kind', ARGV[5],
           'error_reason', ARGV[6], 'updated_at', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
redis.call('ZADD', waiting, redis.call('HGET', item, 'created_at'), ARGV[1])
return 1
"""
)

# ARGV: item id, token, now, kind, reason
_BURY = (
    _FINISH
    + """
free_key()
redis.call('HSET', item, 'state', 'dead', 'error_kind', ARGV[4], 'error_reason', ARGV[5],
           'updated_at', ARGV[3])
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
return 1
"""
)

# ARGV: item id, token, now, next_run_at ("": when it was due before)
_RELEASE = (
    _FINISH
    + """
local attempts = tonumber(redis.call('HGET', item, 'attempts'))
if attempts > 0 then redis.call('HSET', item, 'attempts', attempts - 1) end
redis.call('HSET', item, 'state', 'pending', 'updated_at', ARGV[3])
local at = ARGV[4]
if at and at ~= '' then
  redis.call('HSET', item, 'next_run_at', at)
else
  at = redis.call('HGET', item, 'next_run_at')
end
redis.call('ZADD', KEYS[2], at, ARGV[1])
redis.call('ZADD', waiting, redis.call('HGET', item, 'created_at'), ARGV[1])
return 1
"""
)

# KEYS: leases, item prefix. ARGV: lease_until, then id, token pairs
_RENEW = """
for i = 2, #ARGV, 2 do
  local item = KEYS[2] .. ARGV[i]
  if redis.call('HGET', item, 'token') == ARGV[i + 1] then
    redis.call('HSET', item, 'lease_until', ARGV[1])
    redis.call('ZADD', KEYS[1], 'XX', ARGV[1], ARGV[i])
  end
end
return 1
"""

# KEYS: dead, delayed, waiting, item prefix, keys. ARGV: now, ids... (none: all)
# A dead item whose idempotency key is held by a live item stays dead (that work is queued).
_REQUEUE = (
    _HOLDER
    + """
local ids = {}
if #ARGV > 1 then
  for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('ZRANGE', KEYS[1], 0, -1)
end
local n = 0
for _, id in ipairs(ids) do
  local item = KEYS[4] .. id
  local k = redis.call('HGET', item, 'idempotency_key')
  if redis.call('ZSCORE', KEYS[1], id) and not holder(KEYS[5], k) then
    redis.call('ZREM', KEYS[1], id)
    redis.call('HSET', item, 'state', 'pending', 'attempts', 0, 'next_run_at', ARGV[1],
               'updated_at', ARGV[1])
    redis.call('HSET', KEYS[5], k, id)
    redis.call('ZADD', KEYS[2], ARGV[1], id)
    redis.call('ZADD', KEYS[3], redis.call('HGET', item, 'created_at'), id)
    n = n + 1
  end
end
return n
"""
)

# KEYS: dead, item prefix. ARGV: cutoff
_PURGE_DEAD = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
for _, id in ipairs(ids) do
  redis.call('DEL', KEYS[2] .. id)
  redis.call('ZREM', KEYS[1], id)
end
return #ids
"""

# KEYS: stream, delayed, leases, dead, done, waiting (the stream and delayed set are unused)
_STATS = """
local oldest = redis.call('ZRANGE', KEYS[6], 0, 0, 'WITHSCORES')[2] or ''
return {redis.call('ZCARD', KEYS[6]), redis.call('ZCARD', KEYS[3]), redis.call('ZCARD', KEYS[4]),
        tonumber(redis.call('GET', KEYS[5]) or '0'), oldest}
"""


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _opt(fields: dict[str, str], key: str) -> str | None:
    value = fields.get(key)
    return value if value else None


def _to_item(fields: dict[str, str]) -> OutboxItem:
    return OutboxItem(
        item_id=fields["item_id"],
        operation=fields["operation"],
        payload=json.loads(fields["payload"]),
        idempotency_key=fields["idempotency_key"],
        attempts=int(fields.get("attempts", 0)),
        next_run_at=float(fields["next_run_at"]),
        created_at=float(fields["created_at"]),
        state=ItemState(fields["state"]),
        error_kind=_opt(fields, "error_kind"),
        error_reason=_opt(fields, "error_reason"),
        lease_token=_opt(fields, "token"),
    )


def _pairs(flat: Sequence[Any]) -> dict[str, str]:
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}


class RedisBackend:
    """Outbox items in Redis, leased through a stream consumer group.

    Args:
        client: A ``redis://`` URL or a ``redis.Redis`` client.
        name: The outbox's name; keys are ``resilio:outbox:{name}:*``.
        socket_timeout: Socket timeout in seconds for a client made from a URL.
        consumer_idle: Seconds after which a stream consumer with nothing pending (a drainer
            that exited or died) is removed from the consumer group.
    """

    def __init__(
        self,
        client: Any,
        *,
        name: str = "outbox",
        socket_timeout: float = 5.0,
        consumer_idle: float = 3600.0,
    ) -> None:
        import redis

        self._owns = isinstance(client, str)
        self.client: redis.Redis = (
            redis.Redis.from_url(
                client, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
            )
            if isinstance(client, str)
            else client
        )
        self.name = name
        p = f"resilio:outbox:{{{name}}}"
        self.prefix = p
        self._stream, self._delayed, self._leases = f"{p}:stream", f"{p}:delayed", f"{p}:leases"
        self._dead, self._done, self._items = f"{p}:dead", f"{p}:done", f"{p}:item:"
        self._waiting, self._keys_hash = f"{p}:waiting", f"{p}:keys"
        self.consumer_idle = consumer_idle
        self._next_reap = float("-inf")
        self.consumer = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        c = self.client
        self._add = c.register_script(_ADD)
        self._lease = c.register_script(_LEASE)
        self._complete = c.register_script(_COMPLETE)
        self._reschedule = c.register_script(_RESCHEDULE)
        self._bury = c.register_script(_BURY)
        self._release = c.register_script(_RELEASE)
        self._renew = c.register_script(_RENEW)
        self._requeue = c.register_script(_REQUEUE)
        self._purge_dead = c.register_script(_PURGE_DEAD)
        self._stats = c.register_script(_STATS)
        self._create_group()

    def add(self, items: Sequence[NewItem]) -> list[OutboxItem | None]:
        """Store new items atomically in one round trip (one script call).

        Returns:
            Per item, ``None`` if it was stored, or the pending or leased item that already
            holds its idempotency key (nothing is stored for it).
        """
        args = [
            _dumps(
                (
                    i.item_id,
                    i.operation,
                    i.payload_json,
                    i.idempotency_key,
                    repr(i.next_run_at),
                    repr(i.created_at),
                    i.error_kind or "",
                    i.error_reason or "",
                    "1" if i.next_run_at > i.created_at else "0",
                )
            )
            for i in items
        ]
        out: list[OutboxItem | None] = [None] * len(args)
        if args:
            keys = [self._stream, self._delayed, self._waiting, self._items, self._keys_hash]
            for n, fields in self._add(keys=keys, args=args):
                out[int(n) - 1] = _to_item(_pairs(fields))
        return out

    def lease(self, limit: int, now: float, lease_seconds: float) -> list[OutboxItem]:
        """Lease due items and items whose lease expired, counting an attempt each."""
        import redis

        token = uuid.uuid4().hex
        if now >= self._next_reap:
            self._next_reap = now + _REAP_EVERY
            self.reap_consumers()
        keys = [self._stream, self._delayed, self._leases, self._items, self._waiting]
        args: list[Any] = [repr(now), repr(now + lease_seconds), limit, self.consumer, token]
        try:
            rows = self._lease(keys=keys, args=args)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._create_group()  # the stream was deleted (FLUSHDB, manual cleanup)
            rows = self._lease(keys=keys, args=args)
        return [_to_item(_pairs(r)) for r in rows]

    def _create_group(self) -> None:
        import redis

        try:
            self.client.xgroup_create(self._stream, _GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def reap_consumers(self) -> list[str]:
        """Remove consumers idle for ``consumer_idle`` seconds with nothing pending.

        Returns:
            The names removed.
        """
        import redis

        idle_ms = self.consumer_idle * 1000
        try:
            consumers = self.client.xinfo_consumers(self._stream, _GROUP)
        except redis.ResponseError:  # no stream or group yet: nothing to reap
            return []
        removed = []
        for c in consumers:
            name = _text(c["name"])
            if name != self.consumer and int(c["pending"]) == 0 and int(c["idle"]) >= idle_ms:
                self.client.xgroup_delconsumer(self._stream, _GROUP, name)
                removed.append(name)
        return removed

    def renew(self, items: Iterable[OutboxItem], now: float, lease_seconds: float) -> None:
        """Push back the lease expiry of items this lease still holds."""
        args: list[Any] = [repr(now + lease_seconds)]
        for i in items:
            args += [i.item_id, i.lease_token or ""]
        if len(args) > 1:
            self._renew(keys=[self._leases, self._items], args=args)

    def _keys(self, fifth: str) -> list[str]:
        return [
            self._stream,
            self._delayed,
            self._leases,
            self._items,
            fifth,
            self._waiting,
            self._keys_hash,
        ]

    def complete(self, item: OutboxItem, now: float) -> bool:
        """Acknowledge and delete a delivered item; count it."""
        return bool(
            self._complete(
                keys=self._keys(self._done), args=[item.item_id, item.lease_token or "", now]
            )
        )

    def reschedule(
        self, item: OutboxItem, now: float, next_run_at: float, kind: str, reason: str | None
    ) -> bool:
        """Return an item to the delayed set until ``next_run_at``."""
        return bool(
            self._reschedule(
                keys=self._keys(self._dead),
                args=[
                    item.item_id,
                    item.lease_token or "",
                    repr(now),
                    repr(next_run_at),
                    kind,
                    reason or "",
                ],
            )
        )

    def bury(self, item: OutboxItem, now: float, kind: str, reason: str | None) -> bool:
        """Move an item to the dead set."""
        return bool(
            self._bury(
                keys=self._keys(self._dead),
                args=[item.item_id, item.lease_token or "", repr(now), kind, reason or ""],
            )
        )

    def release(self, item: OutboxItem, now: float, next_run_at: float | None = None) -> bool:
        """Give an item back unrun, its attempt uncounted (due at ``next_run_at`` if given)."""
        at = "" if next_run_at is None else repr(next_run_at)
        return bool(
            self._release(
                keys=self._keys(self._dead),
                args=[item.item_id, item.lease_token or "", repr(now), at],
            )
        )

    def requeue(self, item_ids: Sequence[str] | None, now: float) -> int:
        """Make dead items pending and due now."""
        if item_ids is not None and not item_ids:
            return 0
        keys = [self._dead, self._delayed, self._waiting, self._items, self._keys_hash]
        return int(self._requeue(keys=keys, args=[repr(now), *(item_ids or [])]))

    def purge(self, state: ItemState, older_than: float | None, now: float) -> int:
        """Delete dead items (delivered items are never kept, so purging them does nothing)."""
        if state not in (ItemState.DONE, ItemState.DEAD):
            raise ValueError(f"only done or dead items can be purged, not {state.value}")
        if state is ItemState.DONE:
            return 0
        cutoff = "+inf" if older_than is None else repr(now - older_than)
        return int(self._purge_dead(keys=[self._dead, self._items], args=[cutoff]))

    def stats(self) -> OutboxStats:
        """Count items per state (``done`` counts deliveries so far)."""
        pending, leased, dead, done, oldest = self._stats(
            keys=[self._stream, self._delayed, self._leases, self._dead, self._done, self._waiting]
        )
        return OutboxStats(
            pending=int(pending),
            leased=int(leased),
            dead=int(dead),
            done=int(done),
            oldest_pending_at=float(oldest) if oldest else None,
        )

    def _load(self, ids: Sequence[Any]) -> list[OutboxItem]:
        pipe = self.client.pipeline(transaction=False)
        names = [_text(i) for i in ids]
        for name in names:
            pipe.hgetall(self._items + name)
        out = []
        for name, raw in zip(names, pipe.execute(), strict=True):
            if raw:
                fields = {_text(k): _text(v) for k, v in raw.items()}
                fields["item_id"] = name
                out.append(_to_item(fields))
        return out

    def items(self, state: ItemState, limit: int) -> list[OutboxItem]:
        """Return up to ``limit`` items in one state (none for ``done``: they are deleted)."""
        c = self.client
        if state is ItemState.LEASED:
            return self._load(c.zrange(self._leases, 0, limit - 1))
        if state is ItemState.DEAD:
            return self._load(c.zrange(self._dead, 0, limit - 1))
        if state is ItemState.DONE:
            return []
        entries: Any = c.xrange(self._stream, count=limit) or []
        ready = [_pairs([x for kv in f.items() for x in kv])["id"] for _, f in entries]
        ids = ready + list(c.zrange(self._delayed, 0, limit - 1))
        found = [i for i in self._load(ids) if i.state is ItemState.PENDING]
        return sorted(found, key=lambda i: i.created_at)[:limit]

    def close(self) -> None:
        """Close the client if this backend made it."""
        if self._owns:
            self.client.close()

    def __repr__(self) -> str:
        return f"RedisBackend(name={self.name!r})"
