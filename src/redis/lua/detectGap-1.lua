--[[
  Detects events an observer group never read because the stream was trimmed past them (the
  observer was down longer than the stream keeps), and resets the group's read counter so the same
  gap is reported once. Atomic, so readers advancing meanwhile cannot skew the arithmetic.

  XTRIM does not move 'max-deleted-entry-id', so the gap is computed from counters instead:
  unread = entries-added - entries-read; if the trim reached past the last delivered id, every
  entry left in the stream is unread, and whatever unread entries are not in it were lost.

  Input:
    KEYS[1] events stream (stream)
    ARGV[1] group name

  Output: { lost, lastDeliveredId, firstEntryId }   lost = -1 when the group does not exist;
          firstEntryId '' when the stream is empty (the lost events were between the two ids)
]]
local key = KEYS[1]
local group = ARGV[1]

local function pairs2map(flat)
  local m = {}
  for i = 1, #flat, 2 do m[flat[i]] = flat[i + 1] end
  return m
end

local function idLess(a, b)
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end

if redis.call('EXISTS', key) == 0 then return { -1, '' } end
local stream = pairs2map(redis.call('XINFO', 'STREAM', key))
local g
for _, raw in ipairs(redis.call('XINFO', 'GROUPS', key)) do
  local m = pairs2map(raw)
  if m['name'] == group then g = m end
end
if not g then return { -1, '' } end

local length = tonumber(stream['length'])
local added = tonumber(stream['entries-added'])
local last = g['last-delivered-id']
local first = stream['first-entry']
local firstId = first and first[1] or nil
-- Unread entries still in the stream, when the trim reached past the last delivered id.
local trimmedPast = (firstId == nil) or idLess(last, firstId)
local read = g['entries-read']

if not read then
  -- Unknown counter (group created on a stream with history): start counting from here.
  if trimmedPast then
    redis.call('XGROUP', 'SETID', key, group, last, 'ENTRIESREAD', added - length)
  end
  return { 0, last, firstId or '' }
end

local lost = 0
if trimmedPast then
  lost = (added - tonumber(read)) - length
  if lost > 0 then
    redis.call('XGROUP', 'SETID', key, group, last, 'ENTRIESREAD', added - length)
  else
    lost = 0
  end
end
return { lost, last, firstId or '' }
