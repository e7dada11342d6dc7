--[[
  Records that jobs were refused and sent to the dead-letter queue, idempotently: a job retried
  after its gate died is counted once.

  Input:
    KEYS[1] stats (hash)  counters of the downstream (or of the unrouted tag '{~}')

    ARGV[1] record key prefix  ('<prefix>:gov:{<tag>}:rec:')
    ARGV[2] now (ms)
    ARGV[3] retention (ms)
    ARGV[4] downstream name ('' when unrouted)
    ARGV[5..] per job, 5 values: ingress id, reason, code, message, tenant id ('' when unknown)

  Output: one code per job: 'N' recorded now, 'E' already recorded
]]
local rcall = redis.call
local statsKey = KEYS[1]
local recPrefix = ARGV[1]
local now = ARGV[2]
local retention = tonumber(ARGV[3])
local downstream = ARGV[4]

local out = {}
for i = 5, #ARGV, 5 do
  local recKey = recPrefix .. ARGV[i]
  local state = rcall('HGET', recKey, 'st')
  if state == 'dead' then
    out[#out + 1] = 'E'
  else
    rcall('HSET', recKey, 'st', 'dead', 'reason', ARGV[i + 1], 'code', ARGV[i + 2], 'msg', ARGV[i + 3], 'at', now)
    if ARGV[i + 4] ~= '' then rcall('HSET', recKey, 't', ARGV[i + 4]) end
    if downstream ~= '' then rcall('HSET', recKey, 'ds', downstream) end
    rcall('PEXPIRE', recKey, retention)
    rcall('HINCRBY', statsKey, 'dead:' .. ARGV[i + 1], 1)
    out[#out + 1] = 'N'
  end
end
return out
