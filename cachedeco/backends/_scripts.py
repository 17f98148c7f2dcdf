"""Every Lua script cachedeco runs, in one place; redis-py loads each once (EVALSHA, NOSCRIPT).

Scripts touch only the keys they are given. On a single server an entry and its tag keys are
written by one script, atomically; on Redis Cluster the keys sit in different hash slots, so
the cluster backend runs the tag part and the entry part as two scripts (see cluster.py).
"""

from __future__ import annotations

from typing import Final

__all__ = ["CHECK_TAGS", "STORE", "STORE_ENTRY"]

#: Conditional or unconditional store of an entry with its tags.
#: KEYS[1] entry, KEYS[2..] tag keys.
#: ARGV[1] expected marker: "-" unconditional, "" missing, "?" unreadable, else a marker;
#: ARGV[2] header up to the tag tokens; ARGV[3] payload; ARGV[4] entry px; ARGV[5] tag px;
#: ARGV[6] token for missing tags; ARGV[7] "1" when tags are conditional; ARGV[8..] tokens
#: the fill read ("" for a missing tag key).
#: A missing tag that a fill saw missing may since have been created by another store (token
#: "c…": adopt it) but not by an invalidation (token "i…": abort).
STORE: Final = """
local expect = ARGV[1]
if expect ~= '-' then
  local cur = redis.call('GETRANGE', KEYS[1], 0, 19)
  if expect == '?' then
    local kind = string.sub(cur, 1, 4)
    if cur == '' or kind == 'cd1:' or kind == 'cdT:' then return 0 end
  elseif cur ~= expect then
    return 0
  end
end
local n = #KEYS - 1
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
local tag_px = tonumber(ARGV[5])
for i = 1, n do
  if toks[i] then
    redis.call('PEXPIRE', KEYS[i + 1], tag_px, 'GT')
  else
    redis.call('SET', KEYS[i + 1], ARGV[6], 'PX', tag_px)
    toks[i] = ARGV[6]
  end
end
redis.call('SET', KEYS[1], ARGV[2] .. table.concat(toks, ',') .. '\\n' .. ARGV[3], 'PX', ARGV[4])
return 1
"""

#: Cluster, step one: check (when conditional) and create the tag keys of ONE hash slot.
#: KEYS tag keys; ARGV[1] tag px; ARGV[2] new token; ARGV[3] "1" conditional; ARGV[4..] seen.
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
for i = 1, #KEYS do
  if toks[i] then
    redis.call('PEXPIRE', KEYS[i], ARGV[1], 'GT')
  else
    redis.call('SET', KEYS[i], ARGV[2], 'PX', ARGV[1])
    toks[i] = ARGV[2]
  end
end
return toks
"""

#: Cluster, step two: the entry part of STORE, with the tag tokens already settled.
#: KEYS[1] entry; ARGV[1] expected marker; ARGV[2] full header; ARGV[3] payload; ARGV[4] px.
STORE_ENTRY: Final = """
local expect = ARGV[1]
if expect ~= '-' then
  local cur = redis.call('GETRANGE', KEYS[1], 0, 19)
  if expect == '?' then
    local kind = string.sub(cur, 1, 4)
    if cur == '' or kind == 'cd1:' or kind == 'cdT:' then return 0 end
  elseif cur ~= expect then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[2] .. ARGV[3], 'PX', ARGV[4])
return 1
"""
