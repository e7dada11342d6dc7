--[[
  Creates the observer's consumer group on an execution queue's event stream if it is missing,
  from id 0 (no event already in the stream is skipped) and with a known read counter, so that
  detectGap can later tell trimmed-unread events from trimmed-read ones.

  Input:
    KEYS[1] events stream (stream)
    ARGV[1] group name

  Output: 1 created, 0 existed
]]
local key = KEYS[1]
local group = ARGV[1]
if redis.call('EXISTS', key) == 0 then
  redis.call('XGROUP', 'CREATE', key, group, '0', 'MKSTREAM', 'ENTRIESREAD', 0)
  return 1
end
for _, raw in ipairs(redis.call('XINFO', 'GROUPS', key)) do
  for i = 1, #raw, 2 do
    if raw[i] == 'name' and raw[i + 1] == group then return 0 end
  end
end
local info = redis.call('XINFO', 'STREAM', key)
local added, length = 0, 0
for i = 1, #info, 2 do
  if info[i] == 'entries-added' then added = info[i + 1] end
  if info[i] == 'length' then length = info[i + 1] end
end
-- Entries trimmed before the group existed were never ours to read.
redis.call('XGROUP', 'CREATE', key, group, '0', 'ENTRIESREAD', added - length)
return 1
