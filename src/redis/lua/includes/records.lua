--[[
  A job's decision record, refused: the dead-letter record and its counters.

  Keys under G:
    rec:<id>                 hash   a job's decision record (and its payload while waiting)
    unrouted:stats           hash   counters of jobs refused before routing (dead:<reason>)
    ds:<d>:stats             hash   counters (dead:<reason>)
    ds:<d>:dlpending         zset   refused from the waiting place, dead-letter add not yet confirmed -> lease end
]]
--- @include "base"

-- Records a refusal (dead-letter) in the job's record and the counters, once. A job refused from the
-- waiting place has no ingress job left to retry its dead-letter add, so it gets a lease like a
-- promotion (`leaseUntil`): the payload stays until the add is confirmed (confirm-1.lua), and an
-- expired lease returns it from the next drain.
local function recordDead(ctx, id, ds, tenant, reason, code, msg, leaseUntil)
  local rec = ctx.G .. GF.record .. id
  rcall('HSET', rec, 'st', 'dead', 'reason', reason, 'code', code, 'msg', msg, 'at', fmt(ctx.now))
  if tenant and tenant ~= '' then rcall('HSET', rec, 't', tenant) end
  if ds and ds ~= '' then rcall('HSET', rec, 'ds', ds) end
  if leaseUntil then
    rcall('ZADD', dsKey(ctx, ds, DK.deadLetterPending), fmt(leaseUntil), id)
  else
    rcall('HDEL', rec, 'p')
  end
  rcall('PEXPIRE', rec, ctx.retention)
  local stats = (ds and ds ~= '') and dsKey(ctx, ds, DK.stats) or (ctx.G .. GK.unroutedStats)
  rcall('HINCRBY', stats, 'dead:' .. reason, 1)
end
