--[[
  Records the gate's admission of a batch of routed jobs to one downstream, idempotently.

  Input:
    KEYS[1] inflight  (zset)  admitted, unfinished jobs: ingress id -> admission time (ms)
    KEYS[2] stats     (hash)  decision and outcome counters of the downstream

    ARGV[1] record key prefix  ('<prefix>:gov:{<downstream>}:rec:', same hash tag as KEYS)
    ARGV[2] now (ms)           time enters as an argument so fake clocks reach it
    ARGV[3] retention (ms)     how long a decision record lives
    ARGV[4] downstream name
    ARGV[5] exec queue name
    ARGV[6..] per job, 3 values: ingress id, tenant id, job name

  Output: one code per job, in order
    'A'  admitted now: add it to the execution queue
    'R'  admitted by an earlier attempt that may have died before (or after) its add:
         add it again; the add is idempotent (same job id, deduplication key)
    'F'  admitted earlier and already finished: do not add again
]]
local rcall = redis.call
local inflightKey = KEYS[1]
local statsKey = KEYS[2]
local recPrefix = ARGV[1]
local now = tonumber(ARGV[2])
local retention = tonumber(ARGV[3])
local downstream = ARGV[4]
local queue = ARGV[5]

local out = {}
local admitted = 0
local resumed = 0
for i = 6, #ARGV, 3 do
  local id = ARGV[i]
  local recKey = recPrefix .. id
  local state = rcall('HGET', recKey, 'st')
  if not state then
    rcall('HSET', recKey, 'st', 'admitted', 'ds', downstream, 'q', queue, 't', ARGV[i + 1], 'n', ARGV[i + 2],
      'at', now)
    rcall('PEXPIRE', recKey, retention)
    rcall('ZADD', inflightKey, now, id)
    admitted = admitted + 1
    out[#out + 1] = 'A'
  elseif state == 'admitted' then
    resumed = resumed + 1
    out[#out + 1] = 'R'
  else
    out[#out + 1] = 'F'
  end
end
if admitted > 0 then rcall('HINCRBY', statsKey, 'admitted', admitted) end
if resumed > 0 then rcall('HINCRBY', statsKey, 'resumed', resumed) end
return out
