--[[
  Claims up to `max` jobs from the ingress queue for one gate, in BullMQ's order, under a lease: the
  gate's whole intake reads these keys and nothing else of the queue (no moveToActive, lock or event
  per job). A gate that dies leaves its claims to expire; the next claim call (any gate) takes them
  back first. Relies on BullMQ's key layout (checked against the installed version at start:
  src/queues/bullmq-layout.ts).

  1. Expired claims (their gate died or stalled past the lease) are leased again and returned first.
  2. Unless ingress is paused: due delayed jobs move to wait or prioritized (BullMQ's own
     promoteDelayedJobs), then jobs are taken from wait (oldest first, LIFO jobs having been pushed
     to its head by BullMQ), then from prioritized (lowest priority number, then arrival): the order
     a BullMQ worker takes them in.
  3. If jobs remain, the marker is set again, so another gate blocked on it wakes up.

  Input:
    KEYS[1] wait (list)          KEYS[2] prioritized (zset)   KEYS[3] delayed (zset)
    KEYS[4] meta (hash)          KEYS[5] marker (zset)        KEYS[6] events (stream)
    KEYS[7] pc priority counter  KEYS[8] claims (zset: job id -> lease end, ms; tollgate's own key,
                                          in the ingress queue's hash tag)
    ARGV[1] the queue's key prefix ('<prefix>:<ingress>:')   ARGV[2] now (ms)
    ARGV[3] max jobs   ARGV[4] lease (ms)

  Output: { next delayed job's due time (ms) or -1, per job: id, its hash as a flat list (HGETALL) }
]]
local rcall = redis.call
--- @include "bullmq:promoteDelayedJobs"
--- @include "bullmq:addBaseMarkerIfNeeded"

local waitKey, prioritizedKey, delayedKey, metaKey, markerKey, eventsKey, pcKey, claimsKey =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local prefix, now, max, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local leaseEnd = now + lease

local out = { -1 }
local taken = 0
local leases, gone = {}, {}
local function take(id)
  local hash = rcall('HGETALL', prefix .. id)
  if #hash == 0 then
    -- Removed while waiting (Queue.remove, obliterate): nothing to claim.
    gone[#gone + 1] = id
    return
  end
  leases[#leases + 1] = leaseEnd
  leases[#leases + 1] = id
  out[#out + 1] = id
  out[#out + 1] = hash
  taken = taken + 1
end

for _, id in ipairs(rcall('ZRANGEBYSCORE', claimsKey, '-inf', now, 'LIMIT', 0, max)) do take(id) end

local paused = rcall('HEXISTS', metaKey, 'paused') == 1
if not paused and taken < max then
  promoteDelayedJobs(delayedKey, markerKey, waitKey, prioritizedKey, eventsKey, prefix, now, pcKey, false)
  local ids = rcall('RPOP', waitKey, max - taken)
  if ids then
    for _, id in ipairs(ids) do
      -- BullMQ v5 and older could leave markers ('0:...') in the wait list.
      if string.sub(id, 1, 2) ~= '0:' then take(id) end
    end
  end
  if taken < max then
    local prio = rcall('ZPOPMIN', prioritizedKey, max - taken)
    for i = 1, #prio, 2 do take(prio[i]) end
  end
  if rcall('LLEN', waitKey) > 0 or rcall('ZCARD', prioritizedKey) > 0 then addBaseMarkerIfNeeded(markerKey, false) end
end

-- The batch's leases in one write (max is bounded by gate.maxBatch, at most 1000).
if #leases > 0 then rcall('ZADD', claimsKey, unpack(leases)) end
if #gone > 0 then rcall('ZREM', claimsKey, unpack(gone)) end

local nextDelayed = rcall('ZRANGE', delayedKey, 0, 0, 'WITHSCORES')
if #nextDelayed > 0 then out[1] = math.floor(tonumber(nextDelayed[2]) / 0x1000) end
return out
