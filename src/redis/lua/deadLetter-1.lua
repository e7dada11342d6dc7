--[[
  Records that jobs were refused and sent to the dead-letter queue, idempotently: a job retried after
  its gate died is counted once.

  Input:
    KEYS[1] any key of the governance slot
    ARGV[1] G   ARGV[2] now (ms)   ARGV[3] retention (ms)   ARGV[4] downstream ('' when unrouted)
    ARGV[5..] per job, 5 values: ingress id, reason, code, message, tenant id ('' when unknown)

  Output: one code per job: 'N' recorded now, 'E' already recorded
]]
--- @include "governance"

local ctx = newContext(ARGV[1], tonumber(ARGV[2]))
ctx.retention = tonumber(ARGV[3])
local ds = ARGV[4]
local out = {}
for i = 5, #ARGV, 5 do
  if rcall('HGET', ctx.G .. 'rec:' .. ARGV[i], 'st') == 'dead' then
    out[#out + 1] = 'E'
  else
    recordDead(ctx, ARGV[i], ds, ARGV[i + 4], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3])
    out[#out + 1] = 'N'
  end
end
return out
