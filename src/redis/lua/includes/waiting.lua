--[[
  Storing jobs in the waiting place, a batch at a time.

  Per job: one record write (its payload, score, place in its flow); per flow: one ZADD of the batch's
  jobs, then one eligibility update (a flow that was empty becomes eligible; an eligible one is
  re-ranked by its head); per tenant: one waiting count update; the totals once. The end state is the
  one of storing the jobs one by one, in order (the arrival sequence is drawn in order).

  jobs: array of { id (job key), ts, tenant, name, cost, priority, payload, deadline ('' = none) }
  limits: { maxWaiting (number or nil), onFull ('reject' | 'keep'), byPriority (keep the shedding index) }
  Returns one code per job: 'S' stored, 'E' had a record already (left alone), 'B' refused, the
  tenant's backlog is full (recorded as dead-lettered).

  Keys under G:
    seq                      string arrival counter of waiting jobs
    rec:<id>                 hash   a job's decision record (and its payload while waiting)
    ds:<d>:wc                hash   tenant -> waiting jobs
    ds:<d>:wtotal            string waiting jobs, all tenants
    ds:<d>:bypri             zset   the shedding index: waiting job ids -> priority * 2^32 + arrival
    ds:<d>:deadlines         zset   waiting job ids with a deadline -> deadline
    ds:<d>:f:<flow>          zset   a flow's waiting job ids -> priority * 2^32 + arrival
    ds:<d>:fl:<tenant>       set    the tenant's flows that have waiting jobs
    ds:<d>:fst, tf:<tenant>         the flow's state and the tenant's eligible flows (flows.lua)
    ds:<d>:stats             hash   counters (queued)
    and, through flows.lua and records.lua, what makeEligible and recordDead write
]]
--- @include "base"
--- @include "records"
--- @include "flows"

local function storeWaiting(ctx, ds, jobs, limits)
  local codes = {}
  local waitingOf = {}
  local flows, flowOrder = {}, {}
  local byTenant, tenants = {}, {}
  local deadlineArgs, bypriArgs = {}, {}
  local stored = 0
  local seqKey = ctx.G .. GK.seq
  for k, j in ipairs(jobs) do
    local rec = ctx.G .. GF.record .. j.id
    if rcall('EXISTS', rec) == 1 then
      codes[k] = 'E'
    else
      local waiting = waitingOf[j.tenant]
      if waiting == nil and limits.maxWaiting then
        waiting = tonumber(rcall('HGET', dsKey(ctx, ds, DK.waitingCounts), j.tenant)) or 0
        waitingOf[j.tenant] = waiting
      end
      if limits.maxWaiting and limits.onFull == 'reject' and waiting >= limits.maxWaiting then
        recordDead(ctx, j.id, ds, j.tenant, 'tenant-backlog-full', 'TG_ERR_BACKLOG_FULL',
          'tenant ' .. j.tenant .. ' already has ' .. limits.maxWaiting .. ' jobs waiting on ' .. ds)
        rcall('HSET', rec, 'ts', j.ts)
        codes[k] = 'B'
      else
        if waiting then waitingOf[j.tenant] = waiting + 1 end
        local seq = rcall('INCR', seqKey) % 4294967296
        local score = j.priority * 4294967296 + seq
        local flow = flowOf(j.tenant, j.name)
        -- No expiry while waiting: a job may wait longer than records are kept (a monthly quota).
        rcall('HSET', rec, 'st', 'waiting', 'ds', ds, 't', j.tenant, 'n', j.name, 'enq', fmt(ctx.now),
          'cost', j.cost, 'pri', j.priority, 'p', j.payload, 'sc', fmt(score), 'ts', j.ts)
        if limits.byPriority then
          bypriArgs[#bypriArgs + 1] = fmt(score)
          bypriArgs[#bypriArgs + 1] = j.id
        end
        if j.deadline ~= '' then
          rcall('HSET', rec, 'dl', j.deadline)
          deadlineArgs[#deadlineArgs + 1] = j.deadline
          deadlineArgs[#deadlineArgs + 1] = j.id
        end
        local f = flows[flow]
        if not f then
          f = { tenant = j.tenant, args = {} }
          flows[flow] = f
          flowOrder[#flowOrder + 1] = flow
        end
        f.args[#f.args + 1] = fmt(score)
        f.args[#f.args + 1] = j.id
        if not byTenant[j.tenant] then
          byTenant[j.tenant] = 0
          tenants[#tenants + 1] = j.tenant
        end
        byTenant[j.tenant] = byTenant[j.tenant] + 1
        stored = stored + 1
        codes[k] = 'S'
      end
    end
  end
  if stored == 0 then return codes end
  rcall('INCRBY', dsKey(ctx, ds, DK.waitingTotal), stored)
  if #bypriArgs > 0 then rcall('ZADD', dsKey(ctx, ds, DK.byPriority), unpack(bypriArgs)) end
  if #deadlineArgs > 0 then rcall('ZADD', dsKey(ctx, ds, DK.deadlines), unpack(deadlineArgs)) end
  for _, tenant in ipairs(tenants) do rcall('HINCRBY', dsKey(ctx, ds, DK.waitingCounts), tenant, byTenant[tenant]) end
  for _, flow in ipairs(flowOrder) do
    local f = flows[flow]
    local key = dsKey(ctx, ds, DF.flow .. flow)
    local wasEmpty = rcall('EXISTS', key) == 0
    rcall('ZADD', key, unpack(f.args))
    rcall('SADD', dsKey(ctx, ds, DF.tenantFlows .. f.tenant), flow)
    if wasEmpty then
      makeEligible(ctx, ds, flow)
    elseif rcall('HGET', dsKey(ctx, ds, DK.flowStates), flow) == 'e' then
      -- A better-priority job may have become the head: keep the tenant's order right.
      local head = rcall('ZRANGE', key, 0, 0, 'WITHSCORES')
      rcall('ZADD', dsKey(ctx, ds, DF.eligibleFlows .. f.tenant), head[2], flow)
    end
  end
  rcall('HINCRBY', dsKey(ctx, ds, DK.stats), 'queued', stored)
  return codes
end
