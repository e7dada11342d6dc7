--[[
  Adds a batch of admitted jobs to one execution queue in one call, each exactly as BullMQ's
  addStandardJob-9.lua / addPrioritizedJob-9.lua add it (the same includes: the job hash, the
  'added' and 'waiting' events, the wait list or the prioritized set, the marker, the deduplication
  key), so a plain BullMQ worker cannot tell the two apart. Only what the gate's execution jobs use
  is covered: a custom id, no parent (a flow's child takes Queue.add), no delay. A job whose id exists
  is a duplicate ('duplicated' event, as BullMQ); one whose deduplication key holds is deduplicated.

  Input:
    KEYS[1] wait (list)   KEYS[2] paused (list)   KEYS[3] meta (hash)   KEYS[4] id (counter)
    KEYS[5] completed (zset)   KEYS[6] delayed (zset)   KEYS[7] active (list)   KEYS[8] events (stream)
    KEYS[9] marker (zset)   KEYS[10] prioritized (zset)   KEYS[11] pc (priority counter)
    ARGV[1] the queue's key prefix   ARGV[2] timestamp (ms)
    ARGV[3..] per job, 4 values: id, name, data (JSON), options (JSON, BullMQ's stored form)

  Output: per job, the id the add ended with (its own, or the job it was deduplicated against)
]]
local rcall = redis.call
--- @include "bullmq:addJobInTargetList"
--- @include "bullmq:addJobWithPriority"
--- @include "bullmq:deduplicateJob"
--- @include "bullmq:getOrSetMaxEvents"
--- @include "bullmq:handleDuplicatedJob"
--- @include "bullmq:isQueuePausedOrMaxed"
--- @include "bullmq:storeJob"

local waitKey, metaKey, completedKey, delayedKey = KEYS[1], KEYS[3], KEYS[5], KEYS[6]
local activeKey, eventsKey, markerKey, prioritizedKey, pcKey = KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11]
local prefix, timestamp = ARGV[1], tonumber(ARGV[2])

local n = (#ARGV - 2) / 4
if n < 1 then return {} end
-- BullMQ increments the counter on every add, custom id or not.
rcall("INCRBY", KEYS[4], n)
local maxEvents = getOrSetMaxEvents(metaKey)

local out = {}
for i = 3, #ARGV, 4 do
  local jobId, name, data = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local opts = cjson.decode(ARGV[i + 3])
  local jobIdKey = prefix .. jobId
  local result
  if rcall("EXISTS", jobIdKey) == 1 then
    result = handleDuplicatedJob(jobIdKey, jobId, nil, nil, nil, nil, completedKey, eventsKey, maxEvents, timestamp, nil)
  else
    local de = opts['de']
    local dedupKey = de and de['id'] and (prefix .. 'de:' .. de['id'])
    result = deduplicateJob(de, jobId, delayedKey, dedupKey, eventsKey, maxEvents, prefix, name, data, opts, nil, nil, nil, nil, timestamp)
    if not result then
      local _, priority = storeJob(eventsKey, jobIdKey, jobId, name, data, opts, timestamp, nil, nil, nil)
      local isPausedOrMaxed = isQueuePausedOrMaxed(metaKey, activeKey)
      if priority > 0 then
        addJobWithPriority(markerKey, prioritizedKey, priority, jobId, pcKey, isPausedOrMaxed)
      else
        addJobInTargetList(waitKey, markerKey, opts['lifo'] and 'RPUSH' or 'LPUSH', isPausedOrMaxed, jobId)
      end
      rcall("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "waiting", "jobId", jobId)
      result = jobId
    end
  end
  out[#out + 1] = tostring(result)
end
return out
