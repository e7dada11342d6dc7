--[[
  Operators' hands on held jobs (jobs waiting on a downstream whose breaker is not closed):
  'drain' refuses them (dead-letter, reason 'drained'); 'replay' admits them now despite the
  breaker, still within their quotas and the downstream's capacity. Both take at most `limit` jobs,
  of one tenant or of all, in each tenant's waiting order, and lease them like the scheduler does
  (the caller adds them where they go, then confirms).

  Input:
    KEYS[1] <G>ds:<ds>:inflight (zset)  declares the governance slot
    ARGV[1..12]  governance context (see intake)
    ARGV[13] downstream   ARGV[14] 'drain' | 'replay'   ARGV[15] limit   ARGV[16] tenant ('' = all)
    ARGV[17] lease (ms)   ARGV[18] actor (for the message)

  Output: { taken: id, payload, ..., '|', skipped count }
]]
--- @include "base"
--- @include "evaluate"
--- @include "breaker"
--- @include "policy"
--- @include "capacity"
--- @include "flows"
--- @include "counters"
--- @include "records"

local ctx = contextFromArgs()
cacheStates(ctx)
local ds, mode, limit, only, lease, actor = ARGV[13], ARGV[14], tonumber(ARGV[15]), ARGV[16], tonumber(ARGV[17]), ARGV[18]
local inflight = KEYS[1]
local now = ctx.now
local p = policyOf(ctx, ds)
local b = breakerOf(ctx, ds)

local out = {}
local taken, skipped, admitted = 0, 0, 0
local tenants
if only ~= '' then tenants = { only } else tenants = rcall('HKEYS', dsKey(ctx, ds, DK.waitingCounts)) end
for _, tenant in ipairs(tenants) do
  if taken >= limit then break end
  -- The tenant's waiting order: its flows by head, repeatedly taking the best head.
  local flows = rcall('SMEMBERS', dsKey(ctx, ds, DF.tenantFlows .. tenant))
  local blocked = {}
  while taken < limit do
    local bestFlow, bestId, bestScore = nil, nil, nil
    for _, flow in ipairs(flows) do
      if not blocked[flow] then
        local head = rcall('ZRANGE', dsKey(ctx, ds, DF.flow .. flow), 0, 0, 'WITHSCORES')
        if #head > 0 and (not bestScore or tonumber(head[2]) < bestScore) then
          bestFlow, bestId, bestScore = flow, head[1], tonumber(head[2])
        end
      end
    end
    if not bestFlow then break end
    local rec = ctx.G .. GF.record .. bestId
    local r = rcall('HMGET', rec, 'p', 'cost', 'n')
    local cost = tonumber(r[2]) or 1
    if mode == 'drain' then
      rcall('ZREM', dsKey(ctx, ds, DF.flow .. bestFlow), bestId)
      decWaiting(ctx, ds, tenant, bestId)
      rcall('ZREM', dsKey(ctx, ds, DK.deadlines), bestId)
      recordDead(ctx, bestId, ds, tenant, 'drained', 'TG_ERR_DRAINED', 'drained from the held jobs of ' .. ds .. ' by ' .. actor, now + lease)
      afterHeadLeft(ctx, ds, bestFlow)
      out[#out + 1] = bestId
      out[#out + 1] = r[1] or ''
      taken = taken + 1
    else
      local tp = tenantPolicy(ctx, ds, p, tenant)
      -- A job the policy could never admit is left for the scheduler to refuse once the breaker closes.
      local room = beyondPolicy(p, tp, ds, cost) and 'misfit' or admissible(p, tp, tenantInflight(ctx, ds, tenant), cost, usedOf(ctx, ds), 0)
      if room == 'capacity' then break end
      local v = (room == 'yes') and evaluate(ctx, tenant, r[3], ds, cost) or { k = 'wait' }
      if v.k == 'admit' then
        take(ctx, v, cost)
        chargeCapacity(ctx, ds, tenant, cost)
        countAdmission(ctx, ds, tenant, cost)
        rcall('ZREM', dsKey(ctx, ds, DF.flow .. bestFlow), bestId)
        decWaiting(ctx, ds, tenant, bestId)
        rcall('ZREM', dsKey(ctx, ds, DK.deadlines), bestId)
        rcall('HSET', rec, 'st', 'admitted', 'at', fmt(now), 'qk', v.q.id, 'bg', b.gen, 'replayed', actor)
        rcall('ZADD', inflight, fmt(now), bestId)
        rcall('ZADD', dsKey(ctx, ds, DK.promoting), fmt(now + lease), bestId)
        afterHeadLeft(ctx, ds, bestFlow)
        out[#out + 1] = bestId
        out[#out + 1] = r[1] or ''
        taken = taken + 1
        admitted = admitted + 1
      else
        -- Its quota or the policy holds this flow: leave it, try the tenant's other flows.
        blocked[bestFlow] = true
        skipped = skipped + 1
      end
    end
  end
end
flushStates(ctx)
if admitted > 0 then rcall('HINCRBY', dsKey(ctx, ds, DK.stats), 'admitted', admitted) end
out[#out + 1] = '|'
out[#out + 1] = skipped
return out
