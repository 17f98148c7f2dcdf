"""Every Lua script cachedeco runs, in one place; redis-py loads each once (EVALSHA, NOSCRIPT).

Scripts touch only the keys they are given. The write-behind queue's are in
``queue_scripts.py``. On a single server an entry and its tag keys are
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
    "local READABLE = '^cd1:" + "[0-9a-f]" * 16 + ":%d+:%-?%d+:[^\\n]*\\n'\n"
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
#: tag key, "*" for one not checked: entry.ANY_TAG).
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
    elseif cur ~= seen and seen ~= '*' then
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
#: i-th missing tag gets ARGV[2] .. '.' .. i); ARGV[3] "1" conditional; ARGV[4..] seen
#: (as STORE's: "" missing, "*" not checked).
#: Returns the tokens, or false when a condition fails.
CHECK_TAGS: Final = """
local toks = {}
for i = 1, #KEYS do
  local cur = redis.call('GET', KEYS[i])
  if ARGV[3] == '1' then
    local seen = ARGV[3 + i]
    if seen == '' then
      if cur and string.sub(cur, 1, 1) ~= 'c' then return false end
    elseif cur ~= seen and seen ~= '*' then
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

#: The lease alone, token-checked (KEYS[1] the lease, ARGV[1] the token): for a Cluster slot
#: that moves between two nodes, where Redis refuses LEASE_RELEASE with TRYAGAIN while its
#: three keys are not all on one node (the wake list and the mark come and go). Waking the
#: waiters is left to their own wait running out (those on a change stream learn it at once).
LEASE_RELEASE_ALONE: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""

__all__ += ["LEASE_ACQUIRE", "LEASE_RELEASE", "LEASE_RELEASE_ALONE"]

#: Add counts to a hash, all of them or none (``backend.tally(key).add``). KEYS[1] the hash;
#: ARGV pairs of field and increment.
TALLY_ADD: Final = """
for i = 1, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
return #ARGV / 2
"""
__all__ += ["TALLY_ADD"]
