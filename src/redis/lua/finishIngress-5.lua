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
    ARGV[3..] per job, 2 values: id, return value (JSON, as the 'completed' event carries it)

  Output: jobs ended now
]]
local rcall = redis.call
--- @include "bullmq:removeDeduplicationKeyIfNeededOnFinalization"
--- @include "bullmq:removeJobKeys"
--- @include "bullmq:trimEvents"
--- @include "bullmq:destructureJobKey"
--- @include "bullmq:updateParentDepsIfNeeded"

local claimsKey, eventsKey, metaKey = KEYS[1], KEYS[2], KEYS[3]
local prefix, now = ARGV[1], ARGV[2]
trimEvents(metaKey, eventsKey)
local n = 0
for i = 3, #ARGV, 2 do
  local id, returnvalue = ARGV[i], ARGV[i + 1]
  if rcall('ZREM', claimsKey, id) == 1 then
    local jobKey = prefix .. id
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
        updateParentDepsIfNeeded(parentKey, parentQueueKey, dependencies, parentId, jobKey, returnvalue, now)
      end
    end
    removeJobKeys(jobKey)
    rcall('XADD', eventsKey, '*', 'event', 'completed', 'jobId', id, 'returnvalue', returnvalue, 'prev', 'active')
    n = n + 1
  end
end
if n > 0 and rcall('LLEN', KEYS[4]) == 0 and rcall('ZCARD', KEYS[5]) == 0 and rcall('ZCARD', claimsKey) == 0 then
  rcall('XADD', eventsKey, '*', 'event', 'drained')
end
return n
