--[[
  Ends claimed ingress jobs the gate has handled (each was added where it goes: its execution queue,
  the waiting place, or dead-letter), as BullMQ ends a job completed with removeOnComplete: its
  deduplication key is released, the job's keys are deleted, and a 'completed' event is written for
  QueueEvents and waitUntilFinished. A flow's parent is not told: its child's work is the execution
  job's, which takes the ingress job's place among the parent's dependencies when it is added
  (detachChild-1.lua); a child that is dead-lettered instead keeps its parent waiting, as a failed child
  does in BullMQ. A job no longer claimed (another gate took it back after the lease and finished it
  first) is left alone.

  Input:
    KEYS[1] claims (zset)   KEYS[2] events (stream)   KEYS[3] meta (hash)   KEYS[4] wait (list)
    KEYS[5] prioritized (zset)   KEYS[6] held deduplication ids (hash: job key -> dedup id, '\n', id)
    ARGV[1] the queue's key prefix   ARGV[2] now (ms)
    ARGV[3..] per job, 2 values: id, and if it has a deduplication id: '1', or 'h:' and its job key if
             it is in flight (admitted or waiting): a simple-mode id (no TTL) then holds until the job's execution
             ends (releaseDedup-1.lua), as it would hold on a plain queue until the job finished;
             '' if it has none
  The 'completed' event carries the return value null: the job's work is its execution job's.

  Output: jobs ended now
]]
local rcall = redis.call
--- @include "bullmq:removeDeduplicationKeyIfNeededOnFinalization"
--- @include "bullmq:trimEvents"

local claimsKey, eventsKey, metaKey = KEYS[1], KEYS[2], KEYS[3]
local prefix, now = ARGV[1], ARGV[2]
trimEvents(metaKey, eventsKey)

-- Still ours (not taken back and ended by another gate): one lookup and one removal for the batch.
local ids, flags = {}, {}
for i = 3, #ARGV, 2 do
  ids[#ids + 1] = ARGV[i]
  flags[ARGV[i]] = ARGV[i + 1]
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
  -- Only a job added with a deduplication id needs more than its keys deleted.
  local flag = flags[id]
  local held = false
  if flag ~= '' then
    local deid = rcall('HGET', jobKey, 'deid')
    local dedupKey = deid and (prefix .. 'de:' .. deid)
    if string.sub(flag, 1, 2) == 'h:' and deid and rcall('PTTL', dedupKey) == -1 and rcall('GET', dedupKey) == id then
      -- BullMQ takes a simple-mode key whose job hash is gone for stale: the hash stays (marked, in no
      -- state of the queue) until the hold ends, as it would stay while the job ran on a plain queue.
      held = true
      rcall('HSET', KEYS[6], string.sub(flag, 3), deid .. '\n' .. id)
      rcall('HSET', jobKey, 'tgheld', '1')
    else
      removeDeduplicationKeyIfNeededOnFinalization(prefix, deid, id)
    end
  end
  -- removeJobKeys' keys, for the whole batch in one call.
  for _, suffix in ipairs({ '', ':logs', ':dependencies', ':processed', ':failed', ':unsuccessful' }) do
    if not (held and suffix == '') then doomed[#doomed + 1] = jobKey .. suffix end
  end
  rcall('XADD', eventsKey, '*', 'event', 'completed', 'jobId', id, 'returnvalue', 'null', 'prev', 'active')
end
for i = 1, #doomed, 6000 do rcall('DEL', unpack(doomed, i, math.min(i + 5999, #doomed))) end
if rcall('LLEN', KEYS[4]) == 0 and rcall('ZCARD', KEYS[5]) == 0 and rcall('ZCARD', claimsKey) == 0 then
  rcall('XADD', eventsKey, '*', 'event', 'drained')
end
return #mine
