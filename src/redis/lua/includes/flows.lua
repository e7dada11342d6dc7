--[[
  The waiting place's flows. A flow is (tenant, job name) within a downstream: every job of a flow is
  governed alike, so the head job speaks for the whole flow and a blocked flow never blocks the
  tenant's other job types. A flow with waiting jobs is eligible (its tenant is queued by the
  scheduler, schedule.lua), waiting for a time (a timer) or parked until an event (a release, a
  resume, a removal).

  Keys under G:
    ds:<d>:f:<flow>          zset   a flow's waiting job ids -> priority * 2^32 + arrival
    ds:<d>:fl:<tenant>       set    the tenant's flows that have waiting jobs
    ds:<d>:fst               hash   flow -> 'e' eligible | 't|<reason>|<until>' timer | 'p|<reason>' parked
    ds:<d>:tf:<tenant>       zset   the tenant's eligible flows -> head job score
    ds:<d>:timers            zset   flows waiting for a time -> that time
    ds:<d>:pk:<tenant>       set    the tenant's flows parked until an event
    and, through schedule.lua: ds:<d>:sched:<tier>, tiers, stier, since, tvt, gvt (and what it reads)
]]
--- @include "base"
--- @include "policy"
--- @include "schedule"

local function flowOf(tenant, name)
  return tenant .. '/' .. name
end

local function splitFlow(flow)
  local i = string.find(flow, '/', 1, true)
  return string.sub(flow, 1, i - 1), string.sub(flow, i + 1)
end

-- Puts a flow that has waiting jobs into the eligible set, in its tenant's order and the scheduler's.
local function makeEligible(ctx, ds, flow)
  local tenant = splitFlow(flow)
  local head = rcall('ZRANGE', dsKey(ctx, ds, DF.flow .. flow), 0, 0, 'WITHSCORES')
  if #head == 0 then return false end
  rcall('ZREM', dsKey(ctx, ds, DK.timers), flow)
  rcall('SREM', dsKey(ctx, ds, DF.parkedFlows .. tenant), flow)
  rcall('HSET', dsKey(ctx, ds, DK.flowStates), flow, 'e')
  rcall('ZADD', dsKey(ctx, ds, DF.eligibleFlows .. tenant), head[2], flow)
  if not schedHas(ctx, ds, tenant) then
    schedPut(ctx, ds, policyOf(ctx, ds), tenant, tenantVt(ctx, ds, tenant))
  end
  return true
end

local function leaveSchedIfIdle(ctx, ds, tenant)
  if rcall('ZCARD', dsKey(ctx, ds, DF.eligibleFlows .. tenant)) == 0 then
    schedRemove(ctx, ds, tenant)
    setSince(ctx, ds, tenant, nil)
  end
end

-- Takes a flow out of the eligible set until `untilT` (a timer) or an event (parked).
local function blockFlow(ctx, ds, flow, reason, untilT)
  local tenant = splitFlow(flow)
  rcall('ZREM', dsKey(ctx, ds, DF.eligibleFlows .. tenant), flow)
  leaveSchedIfIdle(ctx, ds, tenant)
  if untilT then
    rcall('ZADD', dsKey(ctx, ds, DK.timers), fmt(untilT), flow)
    rcall('HSET', dsKey(ctx, ds, DK.flowStates), flow, 't|' .. reason .. '|' .. fmt(untilT))
  else
    rcall('SADD', dsKey(ctx, ds, DF.parkedFlows .. tenant), flow)
    rcall('HSET', dsKey(ctx, ds, DK.flowStates), flow, 'p|' .. reason)
  end
end

-- A tenant at its own limit of the policy: all its eligible flows wait for one of its jobs to end.
local function parkTenant(ctx, ds, tenant, reason)
  for _, flow in ipairs(rcall('ZRANGE', dsKey(ctx, ds, DF.eligibleFlows .. tenant), 0, -1)) do
    blockFlow(ctx, ds, flow, reason, nil)
  end
  leaveSchedIfIdle(ctx, ds, tenant)
end

-- After a flow's head left (admitted or refused): re-rank the flow, or forget it if empty.
local function afterHeadLeft(ctx, ds, flow)
  local tenant = splitFlow(flow)
  local f = dsKey(ctx, ds, DF.flow .. flow)
  local head = rcall('ZRANGE', f, 0, 0, 'WITHSCORES')
  local tf = dsKey(ctx, ds, DF.eligibleFlows .. tenant)
  if #head == 0 then
    rcall('ZREM', tf, flow)
    rcall('SREM', dsKey(ctx, ds, DF.tenantFlows .. tenant), flow)
    rcall('HDEL', dsKey(ctx, ds, DK.flowStates), flow)
    rcall('ZREM', dsKey(ctx, ds, DK.timers), flow)
    rcall('SREM', dsKey(ctx, ds, DF.parkedFlows .. tenant), flow)
  elseif rcall('ZSCORE', tf, flow) then
    -- Still eligible with jobs left: the tenant has an eligible flow, nothing to leave.
    rcall('ZADD', tf, head[2], flow)
    return
  end
  leaveSchedIfIdle(ctx, ds, tenant)
end

-- Makes every waiting flow of `tenant` on `ds` eligible again (after a release or a change).
-- onlyParked: wake only flows parked until an event (a release frees a slot; timers stay).
local function wakeTenant(ctx, ds, tenant, onlyParked)
  local flows
  if onlyParked then
    flows = rcall('SMEMBERS', dsKey(ctx, ds, DF.parkedFlows .. tenant))
  else
    flows = rcall('SMEMBERS', dsKey(ctx, ds, DF.tenantFlows .. tenant))
  end
  local n = 0
  for _, flow in ipairs(flows) do
    if rcall('HGET', dsKey(ctx, ds, DK.flowStates), flow) ~= 'e' and makeEligible(ctx, ds, flow) then n = n + 1 end
  end
  return n
end
