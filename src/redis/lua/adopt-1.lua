--[[
  Rebuilds in-flight accounting for execution jobs that exist while their governance records do not
  (Redis lost the governance state, not the queues): each such job is recorded as admitted, counted
  in its downstream's in-flight set and holds a slot of the quota that governs it. Idempotent.

  Input:
    KEYS[1] any key of the governance slot
    ARGV[1..12]  governance context (see intake)
    ARGV[13..] per job, 6 values: ingress id, tenant id, job name, downstream, execution queue, cost

  Output: jobs adopted now
]]
--- @include "base"
--- @include "quota"
--- @include "breaker"
--- @include "capacity"

local ctx = contextFromArgs()
local n = 0
for i = CONTEXT_ARGS + 1, #ARGV, 6 do
  local id, tenant, name, ds, queue, cost = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], tonumber(ARGV[i + 5])
  local rec = ctx.G .. GF.record .. id
  if rcall('EXISTS', rec) == 0 then
    local q = resolveQuota(ctx, tenant, name, ds)
    rcall('HINCRBY', ctx.G .. GF.quotaState .. q.id .. ':' .. tenant, 'inf', cost)
    rcall('HSET', rec, 'st', 'admitted', 'ds', ds, 'q', queue, 't', tenant, 'n', name, 'at', fmt(ctx.now), 'qk', q.id,
      'cost', cost, 'adopted', 1, 'bg', breakerOf(ctx, ds).gen)
    rcall('ZADD', dsKey(ctx, ds, DK.inflight), fmt(ctx.now), id)
    chargeCapacity(ctx, ds, tenant, cost)
    n = n + 1
  end
end
return n
