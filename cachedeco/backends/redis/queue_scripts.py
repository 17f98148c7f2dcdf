"""The Lua scripts of the write-behind queue on Redis (``_sync/queues.py``): each queue
operation is one script, so one round trip.

One stream per @write_behind function, read through one consumer group; entries carry
r=<record> k=<entry key> m=<entry marker, "" for a tombstone>. The stream and its dead-letter
stream share the hash tag of the function's name ("prefix:~wb:{name}" and "…:dead"), so on
Redis Cluster WB_TAKE, WB_RENEW, WB_BURY, WB_REPLAY, WB_RELEASE and WB_ACK without entries
run unchanged. WB_PUSH (entry, tags and stream) and WB_ACK's restores touch other slots: the
cluster queue runs WB_ADD and the backend's own store instead, and WB_RESTORE per entry slot.
"""

from __future__ import annotations

from typing import Final

__all__ = ["WB_ACK", "WB_ADD", "WB_BURY", "WB_PUSH", "WB_RELEASE", "WB_RENEW", "WB_REPLAY",
           "WB_RESTORE", "WB_TAKE"]

#: Lua: settle the entry at ``key`` after its record's flush (``Restore``): while it holds
#: ``marker`` its header is rewritten in place (the payload untouched) with the marker
#: ``fresh``, the soft expiry ``soft`` (ms), the load time 0 (no longer held) and the TTL
#: ``px``; while another record holds it (load time -1), one not among ``older`` (the markers
#: of the key's records this flush superseded, comma-separated), it is left alone; anything
#: else becomes the tombstone ``tomb`` for ``px``. Returns 1 when it restored the entry.
_RESTORE_FN: Final = """
local function restore(key, marker, soft, px, fresh, tomb, older)
  local cur = redis.call('GET', key)
  if cur then
    local mark = string.sub(cur, 1, 20)
    if marker ~= '' and mark == marker then
      local tail = string.sub(cur, 22)
      local colon = string.find(tail, ':', 1, true)
      local after = colon and string.find(tail, ':', colon + 1, true)
      if after then
        redis.call('SET', key, fresh .. ':' .. soft .. ':0' .. string.sub(tail, after), 'PX', px)
        return 1
      end
    elseif string.find(cur, '^cd1:[0-9a-f]+:%d+:%-') and
        not string.find(',' .. older .. ',', ',' .. mark .. ',', 1, true) then
      return 0
    end
  end
  redis.call('SET', key, tomb, 'PX', px)
  return 0
end
"""

#: A Lua function for the scripts that end a consumer's hold: ``forget(consumer)`` removes
#: ``consumer`` from the group (KEYS[1] stream, ARGV[1] group) when it holds nothing.
_FORGET_FN: Final = """
local function forget(consumer)
  local held = redis.pcall('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, consumer)
  if type(held) == 'table' and held.err == nil and #held == 0 then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], consumer)
  end
end
"""

#: Store the record as the cache entry (unconditionally, as write-through does) and queue it.
#: KEYS[1] entry, KEYS[2..#KEYS-1] tag keys, KEYS[#KEYS] stream.
#: ARGV[1] "-" to store, else a tombstone marker to leave instead; ARGV[2] header up to the tag
#: tokens; ARGV[3] payload; ARGV[4] entry px; ARGV[5] tag px; ARGV[6] token for missing tags
#: (the i-th gets ARGV[6] .. '.' .. i);
#: ARGV[7] record; ARGV[8] marker. Returns the stream's length.
WB_PUSH: Final = """
local stream = KEYS[#KEYS]
if ARGV[1] == '-' then
  local toks = {}
  local tag_px = tonumber(ARGV[5])
  local need = math.max(tonumber(ARGV[4]), math.floor(tag_px / 2))
  for i = 2, #KEYS - 1 do
    local cur = redis.call('GET', KEYS[i])
    if cur then
      local left = redis.pcall('PTTL', KEYS[i])  -- extended rarely: see STORE
      if type(left) ~= 'number' or left < need then
        redis.call('PEXPIRE', KEYS[i], tag_px, 'GT')
      end
    else
      cur = ARGV[6] .. '.' .. (i - 1)
      redis.call('SET', KEYS[i], cur, 'PX', tag_px)
    end
    toks[i - 1] = cur
  end
  redis.call('SET', KEYS[1], ARGV[2] .. table.concat(toks, ',') .. '\\n' .. ARGV[3], 'PX', ARGV[4])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
end
redis.call('XADD', stream, '*', 'r', ARGV[7], 'k', KEYS[1], 'm', ARGV[8])
return redis.call('XLEN', stream)
"""

#: Take up to COUNT records for one consumer: first those already delivered to it and not
#: acknowledged (a take whose reply its caller never read, cancelled on its way: a process's
#: drains run one at a time, so no batch of its own is in flight), then those idle in a dead
#: consumer's pending list for ARGV[4] ms (XAUTOCLAIM from the cursor ARGV[5]), then
#: never-delivered ones, but only while no other consumer holds records: one batch in flight
#: per queue, so that the records of one key reach ``flush`` in the order they were queued
#: (two processes delivering two batches at once flushed a newer record before an older
#: one, and a plain upsert kept the older). Before the idle ones, it claims at once what the
#: consumers ARGV[6..] hold: the caller knows their processes gone (see
#: :mod:`cachedeco.backends.contracts.consumers`). The group is created (reading from the
#: start) the first time it is missing. KEYS[1] stream; ARGV[1] group; ARGV[2] consumer;
#: ARGV[3] count; ARGV[4] min idle ms; ARGV[5] cursor. Returns {length, next cursor, claimed
#: entries, new entries, the other consumers holding records (when new ones were looked
#: for)}.
WB_TAKE: Final = _FORGET_FN + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, '0-0', {}, {}, {}} end
local count = tonumber(ARGV[3])
local claimed = {}
local own = redis.pcall('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', count,
                        'STREAMS', KEYS[1], '0')
if own and not own.err and own[1] then
  for _, entry in ipairs(own[1][2]) do
    if entry[2] then
      claimed[#claimed + 1] = entry
    else  -- deleted meanwhile: nothing to deliver, and it must not come back
      redis.call('XACK', KEYS[1], ARGV[1], entry[1])
    end
  end
end
for i = 6, #ARGV do
  local want = count - #claimed
  if want <= 0 then break end
  local held = redis.pcall('XPENDING', KEYS[1], ARGV[1], '-', '+', want, ARGV[i])
  if type(held) == 'table' and held.err == nil and #held > 0 then
    local claim = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0}
    for _, p in ipairs(held) do claim[#claim + 1] = p[1] end
    for _, entry in ipairs(redis.call(unpack(claim))) do
      if entry[2] then claimed[#claimed + 1] = entry end
    end
  end
  forget(ARGV[i])
end
local cursor = ARGV[5]
if #claimed < count then
  local claim = {'XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[4], cursor, 'COUNT',
                 count - #claimed}
  local auto = redis.pcall(unpack(claim))
  if auto.err then
    redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0')
    auto = redis.call(unpack(claim))
  end
  cursor = auto[1]
  for _, entry in ipairs(auto[2]) do claimed[#claimed + 1] = entry end
end
local fresh = {}
local holders = {}
if #claimed < count then
  for _, c in ipairs(redis.call('XPENDING', KEYS[1], ARGV[1])[4] or {}) do
    if c[1] ~= ARGV[2] and tonumber(c[2]) > 0 then holders[#holders + 1] = c[1] end
  end
  if #holders == 0 then
    local got = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', count - #claimed,
                           'STREAMS', KEYS[1], '>')
    if got then fresh = got[1][2] end
  end
end
return {redis.call('XLEN', KEYS[1]), cursor, claimed, fresh, holders}
"""

#: Keep a lease: of the ids ARGV[3..], those still pending for consumer ARGV[2] get their idle
#: time reset (XCLAIM JUSTID, which leaves the delivery count alone). KEYS[1] stream;
#: ARGV[1] group. Returns the ids still ours.
WB_RENEW: Final = """
local mine = {}
local claim = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    mine[#mine + 1] = ARGV[i]
    claim[#claim + 1] = ARGV[i]
  end
end
if #mine > 0 then
  claim[#claim + 1] = 'JUSTID'
  redis.call(unpack(claim))
end
return mine
"""

#: Acknowledge and delete delivered records, then settle each flushed entry (see restore).
#: KEYS[1] stream, KEYS[2..] entries; ARGV[1] group; ARGV[2] n; ARGV[3..n+2] ids; then per
#: entry: marker, soft ms, px, fresh marker, tombstone, older markers. Returns the stream's
#: length.
WB_ACK: Final = _RESTORE_FN + """
local n = tonumber(ARGV[2])
if n > 0 then
  local ids = {}
  for i = 1, n do ids[i] = ARGV[i + 2] end
  redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
  redis.call('XDEL', KEYS[1], unpack(ids))
end
for j = 2, #KEYS do
  local at = n + 6 * (j - 2) + 3
  restore(KEYS[j], unpack(ARGV, at, at + 5))
end
return redis.call('XLEN', KEYS[1])
"""

#: Redis Cluster: the restore part of WB_ACK for the entries of ONE hash slot.
#: KEYS entries; per entry six ARGV as in WB_ACK. Returns how many were restored.
WB_RESTORE: Final = _RESTORE_FN + """
local done = 0
for j = 1, #KEYS do
  done = done + restore(KEYS[j], unpack(ARGV, 6 * j - 5, 6 * j))
end
return done
"""

#: Redis Cluster: queue a record without touching its entry (the backend stores that, in
#: other slots). KEYS[1] stream; ARGV[1] record; ARGV[2] entry key; ARGV[3] marker ("" for a
#: tombstone). Returns the stream's length.
WB_ADD: Final = """
redis.call('XADD', KEYS[1], '*', 'r', ARGV[1], 'k', ARGV[2], 'm', ARGV[3])
return redis.call('XLEN', KEYS[1])
"""

#: Move records to the dead-letter stream with e=<error> o=<old id> t=<ms>, then ack and
#: delete them. KEYS[1] stream, KEYS[2] dead letters; ARGV[1] group; ARGV[2] error;
#: ARGV[3] now ms; ARGV[4..] ids. Returns the stream's length.
WB_BURY: Final = """
for i = 4, #ARGV do
  local found = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
  if found[1] then
    local f = found[1][2]
    f[#f + 1] = 'e'
    f[#f + 1] = ARGV[2]
    f[#f + 1] = 'o'
    f[#f + 1] = ARGV[i]
    f[#f + 1] = 't'
    f[#f + 1] = ARGV[3]
    redis.call('XADD', KEYS[2], '*', unpack(f))
  end
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  redis.call('XDEL', KEYS[1], ARGV[i])
end
return redis.call('XLEN', KEYS[1])
"""

#: Queue up to ARGV[1] dead letters again (their r, k, m fields), oldest first.
#: KEYS[1] dead letters, KEYS[2] stream. Returns how many moved.
WB_REPLAY: Final = """
local dead = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[1])
for _, e in ipairs(dead) do
  local f = e[2]
  local keep = {}
  for i = 1, #f, 2 do
    if f[i] == 'r' or f[i] == 'k' or f[i] == 'm' then
      keep[#keep + 1] = f[i]
      keep[#keep + 1] = f[i + 1]
    end
  end
  redis.call('XADD', KEYS[2], '*', unpack(keep))
  redis.call('XDEL', KEYS[1], e[1])
end
return #dead
"""

#: Give records back (an interrupted delivery): those of ids ARGV[4..] still pending for
#: consumer ARGV[2] are marked idle for ARGV[3] ms, so the next take claims them at once; a
#: consumer left with nothing pending is removed from the group. KEYS[1] stream; ARGV[1] group.
WB_RELEASE: Final = _FORGET_FN + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local claim = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0}
for i = 4, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then claim[#claim + 1] = ARGV[i] end
end
if #claim > 5 then
  claim[#claim + 1] = 'IDLE'
  claim[#claim + 1] = ARGV[3]
  claim[#claim + 1] = 'JUSTID'
  redis.call(unpack(claim))
end
forget(ARGV[2])
return #claim - 5
"""
