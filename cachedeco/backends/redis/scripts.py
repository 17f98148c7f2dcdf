"""Every Lua script cachedeco runs, in one place; redis-py loads each once (EVALSHA, NOSCRIPT).

Scripts touch only the keys they are given. On a single server an entry and its tag keys are
written by one script, atomically; on Redis Cluster the keys sit in different hash slots, so
the cluster backend runs the tag part and the entry part as two scripts (see cluster.py).
"""

from __future__ import annotations

from typing import Final

__all__ = ["CHECK_TAGS", "STORE", "STORE_ENTRY", "STORE_RELEASE"]

#: The Lua twin of cachedeco._entry._HEADER: what a readable entry starts with. A fill that
#: read an unreadable value (expected marker "?") overwrites it only while it is still
#: unreadable by this very definition, so a corrupt value always heals.
_READABLE: Final = (
    "local READABLE = '^cd1:" + "[0-9a-f]" * 16 + ":%d+:%d+:[^\\n]*\\n'\n"
)

#: The entry condition of a store (KEYS[1] the entry, ARGV[1] the expected marker: "-" none,
#: "" missing, "?" unreadable, else that marker), shared by STORE and STORE_ENTRY.
_EXPECT: Final = _READABLE + """
local expect = ARGV[1]
if expect == '?' then
  local cur = redis.call('GET', KEYS[1])
  local tomb = string.sub(cur or '', 1, 4) == 'cdT:' and
    not string.find(string.sub(cur, 1, 20), '[\\128-\\255]')
  if not cur or tomb or string.match(cur, READABLE) then
    return 0
  end
elseif expect ~= '-' then
  if redis.call('GETRANGE', KEYS[1], 0, 19) ~= expect then return 0 end
end
"""

#: The end of LEASE_RELEASE and STORE_RELEASE: only the token's owner releases (else 0); a
#: waiting mark deleted with the lease means callers block on the wake list: one element is
#: pushed, which ``BLMOVE wake wake RIGHT LEFT`` hands back, so every waiter wakes.
_RELEASE_TAIL: Final = """
if redis.call('GET', lease) ~= token then return 0 end
if redis.call('DEL', lease, mark) == 2 then
  redis.call('RPUSH', wake, '1')
  redis.call('PEXPIRE', wake, wake_px)
end
return 1
"""

#: Conditional or unconditional store of an entry with its tags.
#: KEYS[1] entry, KEYS[2..] tag keys.
#: ARGV[1] expected marker: "-" unconditional, "" missing, "?" unreadable, else a marker;
#: ARGV[2] header up to the tag tokens; ARGV[3] payload; ARGV[4] entry px; ARGV[5] tag px;
#: ARGV[6] token for missing tags (the i-th gets ARGV[6] .. '.' .. i, entry.tag_token);
#: ARGV[7] "1" when tags are conditional; ARGV[8..] tokens the fill read ("" for a missing
#: tag key).
#: A missing tag that a fill saw missing may since have been created by another store (token
#: "c…": adopt it) but not by an invalidation (token "i…": abort).
#: An existing tag key is extended only when less than the entry's px or half the tag px is
#: left: every extension is a change that near caches are told about (and drop the entries
#: carrying the tag for), so it must be rare, not once per store. (A user whose ACL lacks
#: PTTL gets the extension on every store, as before.) ARGV[5] may end in ":" and a flag per
#: tag: "0" skips that tag's PTTL (the caller knows it lives long enough: tag_lives.py).
#: Returns 0 when a condition failed, else {1, what each tag key has left in ms (-1: not
#: known)}.
_STORE_BODY: Final = _EXPECT + """local n = #KEYS - 1 - spare
local toks = {}
for i = 1, n do
  local cur = redis.call('GET', KEYS[i + 1])
  if ARGV[7] == '1' then
    local seen = ARGV[7 + i]
    if seen == '' then
      if cur and string.sub(cur, 1, 1) ~= 'c' then return 0 end
    elseif cur ~= seen then
      return 0
    end
  end
  toks[i] = cur
end
local px_text, checks = string.match(ARGV[5], '^(%d+):?([01]*)$')
local tag_px = tonumber(px_text)
local need = math.max(tonumber(ARGV[4]), math.floor(tag_px / 2))
local lefts = {1}
for i = 1, n do
  if not toks[i] then
    toks[i] = ARGV[6] .. '.' .. i
    redis.call('SET', KEYS[i + 1], toks[i], 'PX', tag_px)
    lefts[i + 1] = tag_px
  elseif string.sub(checks, i, i) == '0' then
    lefts[i + 1] = -1
  else
    local left = redis.pcall('PTTL', KEYS[i + 1])
    if type(left) ~= 'number' or left < need then
      redis.call('PEXPIRE', KEYS[i + 1], tag_px, 'GT')
      left = type(left) == 'number' and tag_px or -1
    end
    lefts[i + 1] = left
  end
end
redis.call('SET', KEYS[1], ARGV[2] .. table.concat(toks, ',') .. '\\n' .. ARGV[3], 'PX', ARGV[4])
return lefts
"""
STORE: Final = "local spare = 0\nlocal function store()\n" + _STORE_BODY + "end\nreturn store()\n"

#: STORE, then the release of the load's lease (LEASE_RELEASE) in the same script, whether
#: the store landed or not: KEYS end with the lease, its wake list and its waiting mark, ARGV
#: with the holder's token and the wake list's px. Returns {1 when released (0: no longer
#: held), STORE's reply}.
STORE_RELEASE: Final = "local spare = 3\nlocal function store()\n" + _STORE_BODY + """end
local stored = store()
local function release()
  local lease, wake, mark = KEYS[#KEYS - 2], KEYS[#KEYS - 1], KEYS[#KEYS]
  local token, wake_px = ARGV[#ARGV - 1], ARGV[#ARGV]
""" + _RELEASE_TAIL + """end
return {release(), stored}
"""

#: Cluster, step one: check (when conditional) and create the tag keys of ONE hash slot.
#: KEYS tag keys; ARGV[1] "<tag px>:<least px left>" (see STORE); ARGV[2] new token (the
#: i-th missing tag gets ARGV[2] .. '.' .. i); ARGV[3] "1" conditional; ARGV[4..] seen.
#: Returns the tokens, or false when a condition fails.
CHECK_TAGS: Final = """
local toks = {}
for i = 1, #KEYS do
  local cur = redis.call('GET', KEYS[i])
  if ARGV[3] == '1' then
    local seen = ARGV[3 + i]
    if seen == '' then
      if cur and string.sub(cur, 1, 1) ~= 'c' then return false end
    elseif cur ~= seen then
      return false
    end
  end
  toks[i] = cur
end
local tag_px, need = string.match(ARGV[1], '^(%d+):(%d+)$')
for i = 1, #KEYS do
  if toks[i] then
    local left = redis.pcall('PTTL', KEYS[i])
    if type(left) ~= 'number' or left < tonumber(need) then
      redis.call('PEXPIRE', KEYS[i], tag_px, 'GT')
    end
  else
    toks[i] = ARGV[2] .. '.' .. i
    redis.call('SET', KEYS[i], toks[i], 'PX', tag_px)
  end
end
return toks
"""

#: Cluster, step two: the entry part of STORE, with the tag tokens already settled.
#: KEYS[1] entry; ARGV[1] expected marker; ARGV[2] full header; ARGV[3] payload; ARGV[4] px.
STORE_ENTRY: Final = _EXPECT + """redis.call('SET', KEYS[1], ARGV[2] .. ARGV[3], 'PX', ARGV[4])
return 1
"""

#: Leases (``lock=True`` and ``cachedeco.lock``): take one. KEYS[1] lease, KEYS[2] its wake
#: list, KEYS[3] its waiting mark; ARGV[1] token; ARGV[2] px. Returns nil when taken, else
#: the holder's remaining ms (-1: no TTL). A caller finding it held is about to block on the
#: wake list: the list is emptied (no waking for an older release) and the mark set, so the
#: release pushes (near-cached waiters learn of a release from the change stream).
#: With KEYS[4] (the entry the lease guards) and ARGV[3] (the marker a miss read there): -3,
#: lease not taken, when a value other than the one read has landed since (a holder stored
#: and released between that read and this call: no second load).
LEASE_ACQUIRE: Final = """
local left = redis.call('PTTL', KEYS[1])
if left ~= -2 then
  redis.call('DEL', KEYS[2])
  redis.call('SET', KEYS[3], '1', 'PX', math.max(left, 0) + tonumber(ARGV[2]))
  return left
end
if KEYS[4] then
  local head = redis.call('GETRANGE', KEYS[4], 0, 19)
  if string.sub(head, 1, 4) == 'cd1:' and head ~= ARGV[3] then return -3 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return nil
"""

#: Leases: release one. KEYS[1] lease, KEYS[2] wake list, KEYS[3] mark; ARGV[1] token, [2] px.
LEASE_RELEASE: Final = """
local lease, wake, mark, token, wake_px = KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2]
""" + _RELEASE_TAIL

__all__ += ["LEASE_ACQUIRE", "LEASE_RELEASE"]

# --- write-behind queue (cachedeco/backends/queues.py) ---------------------------------------
# One stream per @write_behind function, read through one consumer group; entries carry
# r=<record> k=<entry key> m=<entry marker, "" for a tombstone>. The stream and its dead-letter
# stream share the hash tag of the function's name ("prefix:~wb:{name}" and "…:dead"), so on
# Redis Cluster WB_TAKE, WB_RENEW, WB_BURY, WB_REPLAY, WB_RELEASE and WB_ACK without entries
# run unchanged. WB_PUSH (entry, tags and stream) and WB_ACK's restores touch other slots: the
# cluster queue runs WB_ADD and the backend's own store instead, and WB_RESTORE per entry slot.

__all__ += ["WB_ACK", "WB_ADD", "WB_BURY", "WB_PUSH", "WB_RELEASE", "WB_RENEW", "WB_REPLAY",
            "WB_RESTORE", "WB_TAKE"]

#: Lua: give the entry at ``key`` the soft expiry ``soft`` (ms) and the TTL ``px`` when it
#: still holds ``marker`` (the header is rewritten in place; the payload is untouched).
_RESTORE_FN: Final = """
local function restore(key, marker, soft, px)
  local cur = redis.call('GET', key)
  if cur and string.sub(cur, 1, 20) == marker then
    local tail = string.sub(cur, 22)
    local colon = string.find(tail, ':', 1, true)
    if colon then
      redis.call('SET', key, string.sub(cur, 1, 21) .. soft .. string.sub(tail, colon), 'PX', px)
      return 1
    end
  end
  return 0
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

#: Take up to COUNT records for one consumer: first those idle in a dead consumer's pending
#: list for ARGV[4] ms (XAUTOCLAIM from the cursor ARGV[5]), then never-delivered ones. The
#: group is created (reading from the start) the first time it is missing.
#: KEYS[1] stream; ARGV[1] group; ARGV[2] consumer; ARGV[3] count; ARGV[4] min idle ms;
#: ARGV[5] cursor. Returns {length, next cursor, claimed entries, new entries}.
WB_TAKE: Final = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, '0-0', {}, {}} end
local count = tonumber(ARGV[3])
local claim = {'XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[4], ARGV[5], 'COUNT', count}
local auto = redis.pcall(unpack(claim))
if auto.err then
  redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0')
  auto = redis.call(unpack(claim))
end
local claimed = auto[2]
local fresh = {}
if #claimed < count then
  local got = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', count - #claimed,
                         'STREAMS', KEYS[1], '>')
  if got then fresh = got[1][2] end
end
return {redis.call('XLEN', KEYS[1]), auto[1], claimed, fresh}
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

#: Acknowledge and delete delivered records, then give each flushed entry whose marker is
#: unchanged its normal soft expiry and TTL back. KEYS[1] stream, KEYS[2..] entries;
#: ARGV[1] group; ARGV[2] n; ARGV[3..n+2] ids; then per entry: marker, soft ms, px.
#: Returns the stream's length.
WB_ACK: Final = _RESTORE_FN + """
local n = tonumber(ARGV[2])
if n > 0 then
  local ids = {}
  for i = 1, n do ids[i] = ARGV[i + 2] end
  redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
  redis.call('XDEL', KEYS[1], unpack(ids))
end
for j = 2, #KEYS do
  local at = n + 3 * (j - 2) + 3
  restore(KEYS[j], ARGV[at], ARGV[at + 1], ARGV[at + 2])
end
return redis.call('XLEN', KEYS[1])
"""

#: Redis Cluster: the restore part of WB_ACK for the entries of ONE hash slot.
#: KEYS entries; per entry three ARGV: marker, soft ms, px. Returns how many were restored.
WB_RESTORE: Final = _RESTORE_FN + """
local done = 0
for j = 1, #KEYS do
  done = done + restore(KEYS[j], ARGV[3 * j - 2], ARGV[3 * j - 1], ARGV[3 * j])
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
WB_RELEASE: Final = """
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
local held = redis.pcall('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if type(held) == 'table' and held.err == nil and #held == 0 then
  redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return #claim - 5
"""

#: Add counts to a hash, all of them or none (``backend.tally(key).add``). KEYS[1] the hash;
#: ARGV pairs of field and increment.
TALLY_ADD: Final = """
for i = 1, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
return #ARGV / 2
"""
__all__ += ["TALLY_ADD"]
