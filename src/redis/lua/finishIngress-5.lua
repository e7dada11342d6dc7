--[[
  Ends claimed ingress jobs the gate has handled (each was added where it goes: its execution queue,
  the waiting place, or dead-letter), as BullMQ ends a job completed with removeOnComplete: its
  deduplication key is released, a flow's parent learns its child completed, the job's keys are
  deleted, and a 'completed' event is written for QueueEvents and waitUntilFinished. A job no longer
  claimed (another gate took it back after the lease and finished it first) is left alone.

  Input:
    KEYS[1] claims (zset)   KEYS[2] events (stream)   KEYS[3] meta (hash)   KEYS[4] wait (list)
    KEYS[5] prioritized (zset)
  A flow's parent (in its own queue) is updated by BullMQ's own functions, through keys derived from
  the child's parentKey, as BullMQ's moveToFinished does.
    ARGV[1] the queue's key prefix   ARGV[2] now (ms)
    ARGV[3..] per job, 2 values: id, '1' if it is a flow's child or has a deduplication id ('' if not)
  The 'completed' event carries the return value null: the job's work is its execution job's.

  Output: jobs ended now
]]
local rcall = redis.call
--- @include "bullmq:removeDeduplicationKeyIfNeededOnFinalization"
--- @include "bullmq:trimEvents"
--- @include "bullmq:destructureJobKey"
--- @include "bullmq:updateParentDepsIfNeeded"

local claimsKey, eventsKey, metaKey = KEYS[1], KEYS[2], KEYS[3]
local prefix, now = ARGV[1], ARGV[2]
trimEvents(metaKey, eventsKey)

-- Still ours (not taken back and ended by another gate): one lookup and one removal for the batch.
local ids, flagged = {}, {}
for i = 3, #ARGV, 2 do
  ids[#ids + 1] = ARGV[i]
  flagged[ARGV[i]] = ARGV[i + 1] == '1'
end
if #ids == 0 then return 0 end
local scores = rcall('ZMSCORE', claimsKey, unpack(ids))
local mine = {}
for k, id in ipairs(ids) do
  if scores[k] then mine[#mine + 1] = id end
end
if #mine == 0 then return 0 end
rcall('ZREM', claimsKey, unpack(mine))

local doomed = {}
for _, id in ipairs(mine) do
  local jobKey = prefix .. id
  -- Only a flow's child, or a job added with a deduplication id, needs more than its keys deleted.
  if flagged[id] then
    local attrs = rcall('HMGET', jobKey, 'parentKey', 'parent', 'deid')
    removeDeduplicationKeyIfNeededOnFinalization(prefix, attrs[3], id)
    local parentKey = attrs[1] or ''
    if parentKey ~= '' then
      -- A flow's child: its parent's dependency is met, as when BullMQ completes it.
      local parentId = getJobIdFromKey(parentKey)
      local parentQueueKey = getJobKeyPrefix(parentKey, ':' .. parentId)
      if attrs[2] then
        local parent = cjson.decode(attrs[2])
        parentId, parentQueueKey = parent['id'], parent['queueKey']
      end
      local dependencies = parentKey .. ':dependencies'
      if rcall('SREM', dependencies, jobKey) == 1 then
        updateParentDepsIfNeeded(parentKey, parentQueueKey, dependencies, parentId, jobKey, 'null', now)
      end
    end
  end
  -- removeJobKeys' keys, for the whole batch in one call.
  for _, suffix in ipairs({ '', ':logs', ':dependencies', ':processed', ':failed', ':unsuccessful' }) do doomed[#doomed + 1] = jobKey .. suffix end
  rcall('XADD', eventsKey, '*', 'event', 'completed', 'jobId', id, 'returnvalue', 'null', 'prev', 'active')
end
for i = 1, #doomed, 6000 do rcall('DEL', unpack(doomed, i, math.min(i + 5999, #doomed))) end
if rcall('LLEN', KEYS[4]) == 0 and rcall('ZCARD', KEYS[5]) == 0 and rcall('ZCARD', claimsKey) == 0 then
  rcall('XADD', eventsKey, '*', 'event', 'drained')
end
return #mine
