--[[
  The scheduler of one downstream: admits waiting jobs while capacity is free, fairest first.

  1. Leases of admitted jobs whose execution add was never confirmed (their gate died) have expired:
     they are leased again and returned for a (idempotent) add.
  2. Flows whose timer is due become eligible.
  3. While the policy allows: the next tenant in the policy's order (tier, then virtual time: weighted
     fair queuing, each admission advances the tenant's time by cost / weight) offers its best
     eligible flow. A head job the policy could never admit (its cost is above the capacity, the
     tenant's max share or reserve plus borrow limit, say after a policy change) is refused at once,
     so it never holds up the others. If the downstream is full for it, the drain stops; if the
     tenant is at its own limit (max share, borrow limit), it is parked until one of its jobs ends.
     Otherwise the flow's head job is evaluated against its quota and throttles. Admitted: taken,
     leased, returned. Must wait: the flow is blocked until a time (timer) or an event (parked).
     Refused (a period total with reject, a cost its quota could never admit): dead-lettered.

  Input:
    KEYS[1] <G>ds:<ds>:inflight (zset)  declares the governance slot
    ARGV[1..12]  governance context (see intake)
    ARGV[13] downstream   ARGV[14] capacity   ARGV[15] max admissions   ARGV[16] lease (ms)
    ARGV[17] max evaluations (bounds the script's run time)
    ARGV[18] shedding stops below this many waiting jobs ('' = no shedding)

  Output: { nextWake (ms, -1 none), more (0/1), admitted: id, payload, ..., '|', refused: id, payload, message, code, ... }
]]
--- @include "base"
--- @include "evaluate"
--- @include "breaker"
--- @include "policy"
--- @include "capacity"
--- @include "schedule"
--- @include "flows"
--- @include "counters"
--- @include "records"

local ctx = contextFromArgs()
cacheStates(ctx)
cacheCounters(ctx)
-- The shedding index exists only where load shedding is configured.
local shedIndex = ARGV[18] ~= ''
local ds, capacity, maxAdmit, lease, maxEval =
  ARGV[13], tonumber(ARGV[14]), tonumber(ARGV[15]), tonumber(ARGV[16]), tonumber(ARGV[17])
local inflight = KEYS[1]
local promoting = dsKey(ctx, ds, DK.promoting)
local timers = dsKey(ctx, ds, DK.timers)
local now = ctx.now

local admitted, refused = {}, {}
local nAdmitted, fresh = 0, 0

-- 1. Expired promotion leases.
for _, id in ipairs(rcall('ZRANGEBYSCORE', promoting, '-inf', fmt(now), 'LIMIT', 0, maxAdmit)) do
  local rec = ctx.G .. GF.record .. id
  local v = rcall('HMGET', rec, 'st', 'p')
  if v[1] == 'admitted' and v[2] then
    rcall('ZADD', promoting, fmt(now + lease), id)
    admitted[#admitted + 1] = id
    admitted[#admitted + 1] = v[2]
    nAdmitted = nAdmitted + 1
  else
    rcall('ZREM', promoting, id)
  end
end

-- 1b. Refusals whose dead-letter add was never confirmed (their scheduler died): returned again.
local dlpending = dsKey(ctx, ds, DK.deadLetterPending)
for _, id in ipairs(rcall('ZRANGEBYSCORE', dlpending, '-inf', fmt(now), 'LIMIT', 0, maxAdmit)) do
  local r = rcall('HMGET', ctx.G .. GF.record .. id, 'st', 'p', 'msg', 'code')
  if r[1] == 'dead' and r[2] then
    rcall('ZADD', dlpending, fmt(now + lease), id)
    refused[#refused + 1] = id
    refused[#refused + 1] = r[2]
    refused[#refused + 1] = r[3] or ''
    refused[#refused + 1] = r[4] or 'TG_ERR_QUOTA_EXCEEDED'
  else
    rcall('ZREM', dlpending, id)
  end
end

-- 2. Deadlines: a job still waiting past its deadline is refused ('expired'), never run late.
local deadlines = dsKey(ctx, ds, DK.deadlines)
for _, id in ipairs(rcall('ZRANGEBYSCORE', deadlines, '-inf', fmt(now), 'LIMIT', 0, maxEval)) do
  rcall('ZREM', deadlines, id)
  local rec = ctx.G .. GF.record .. id
  local r = rcall('HMGET', rec, 'st', 't', 'n', 'p', 'dl')
  if r[1] == 'waiting' then
    local flow = flowOf(r[2], r[3])
    rcall('ZREM', dsKey(ctx, ds, DF.flow .. flow), id)
    decWaiting(ctx, ds, r[2], id)
    local msg = 'still waiting at its deadline ' .. r[5] .. ' (ms since the epoch); not run late'
    recordDead(ctx, id, ds, r[2], 'expired', 'TG_ERR_EXPIRED', msg, now + lease)
    afterHeadLeft(ctx, ds, flow)
    refused[#refused + 1] = id
    refused[#refused + 1] = r[4] or ''
    refused[#refused + 1] = msg
    refused[#refused + 1] = 'TG_ERR_EXPIRED'
  end
end

-- 2b. Jobs set aside by load shedding ('delay') whose delay is over go back to their flow.
local shedSet = dsKey(ctx, ds, DK.shed)
for _, id in ipairs(rcall('ZRANGEBYSCORE', shedSet, '-inf', fmt(now), 'LIMIT', 0, maxEval)) do
  rcall('ZREM', shedSet, id)
  local rec = ctx.G .. GF.record .. id
  local r = rcall('HMGET', rec, 'st', 't', 'n', 'sc', 'dl')
  if r[1] == 'shed' then
    local flow = flowOf(r[2], r[3])
    rcall('HSET', rec, 'st', 'waiting')
    rcall('ZADD', dsKey(ctx, ds, DF.flow .. flow), r[4], id)
    rcall('SADD', dsKey(ctx, ds, DF.tenantFlows .. r[2]), flow)
    rcall('HINCRBY', dsKey(ctx, ds, DK.waitingCounts), r[2], 1)
    rcall('INCR', dsKey(ctx, ds, DK.waitingTotal))
    if ARGV[18] ~= '' then rcall('ZADD', dsKey(ctx, ds, DK.byPriority), r[4], id) end
    if r[5] then rcall('ZADD', deadlines, r[5], id) end
    if rcall('HGET', dsKey(ctx, ds, DK.flowStates), flow) ~= 'e' then makeEligible(ctx, ds, flow)
    else
      local head = rcall('ZRANGE', dsKey(ctx, ds, DF.flow .. flow), 0, 0, 'WITHSCORES')
      rcall('ZADD', dsKey(ctx, ds, DF.eligibleFlows .. r[2]), head[2], flow)
    end
  end
end

-- 3. Due timers.
for _, flow in ipairs(rcall('ZRANGEBYSCORE', timers, '-inf', fmt(now), 'LIMIT', 0, maxEval)) do
  makeEligible(ctx, ds, flow)
end

-- 4. Admission, in the order of the downstream's allocation policy, if its breaker lets anything
-- through: nothing while open (the waiting jobs are held), at most its probes while half-open.
local p = policyOf(ctx, ds, capacity)
promoteAged(ctx, ds, p)
local b = breakerOf(ctx, ds)
local budget = maxAdmit
if b.st == 'open' then budget = 0
elseif b.st == 'half-open' then budget = math.min(maxAdmit, math.max(0, probesLeft(ctx, ds, b))) end
local evaluations, more = 0, 0
local stats = dsKey(ctx, ds, DK.stats)

-- Takes a refused head job out of its flow; its dead-letter add is leased like a promotion.
local function refuseHead(id, f, flow, tenant, payload, reason, code, msg)
  rcall('ZREM', f, id)
  decWaiting(ctx, ds, tenant, shedIndex and id or nil)
  recordDead(ctx, id, ds, tenant, reason, code, msg, now + lease)
  rcall('ZREM', deadlines, id)
  afterHeadLeft(ctx, ds, flow)
  refused[#refused + 1] = id
  refused[#refused + 1] = payload or ''
  refused[#refused + 1] = msg
  refused[#refused + 1] = code
end

while fresh < budget and nAdmitted < maxAdmit do
  if evaluations >= maxEval then more = 1 break end
  local tenant, vt = schedTop(ctx, ds)
  if not tenant then break end
  local ftop = rcall('ZRANGE', dsKey(ctx, ds, DF.eligibleFlows .. tenant), 0, 0)
  if #ftop == 0 then
    leaveSchedIfIdle(ctx, ds, tenant)
  else
    local flow = ftop[1]
    local f = dsKey(ctx, ds, DF.flow .. flow)
    local jobs = rcall('ZRANGE', f, 0, 0)
    if #jobs == 0 then
      afterHeadLeft(ctx, ds, flow)
    else
      local id = jobs[1]
      local rec = ctx.G .. GF.record .. id
      local _, name = splitFlow(flow)
      local r = rcall('HMGET', rec, 'cost', 'p', 'enq', 'dl')
      local cost = tonumber(r[1]) or 1
      local tp = tenantPolicy(ctx, ds, p, tenant)
      local misfit = beyondPolicy(p, tp, ds, cost)
      local inflightT = tenantInflight(ctx, ds, tenant)
      local room = misfit and 'misfit' or admissible(p, tp, inflightT, cost, usedOf(ctx, ds), owedReserve(ctx, ds, p, tenant))
      if room == 'capacity' then break end
      evaluations = evaluations + 1
      if misfit then
        refuseHead(id, f, flow, tenant, r[2], 'cost-over-capacity', 'TG_ERR_COST_OVER_CAPACITY', misfit)
      elseif room ~= 'yes' then
        parkTenant(ctx, ds, tenant, room)
      else
        local v = evaluate(ctx, tenant, name, ds, cost)
        if v.k == 'admit' then
          take(ctx, v, cost)
          chargeCapacity(ctx, ds, tenant, cost)
          rcall('ZREM', f, id)
          decWaiting(ctx, ds, tenant, shedIndex and id or nil)
          if b.st == 'half-open' then
            rcall('INCR', dsKey(ctx, ds, DF.probed .. b.gen))
            rcall('PEXPIRE', dsKey(ctx, ds, DF.probed .. b.gen), 86400000)
            rcall('HSET', rec, 'st', 'admitted', 'at', fmt(now), 'qk', v.q.id, 'bg', b.gen, 'probe', 1)
          else
            rcall('HSET', rec, 'st', 'admitted', 'at', fmt(now), 'qk', v.q.id, 'bg', b.gen)
          end
          if r[4] then rcall('ZREM', deadlines, id) end
          countAdmission(ctx, ds, tenant, cost)
          sampleWait(ctx, ds, tenant, now - (tonumber(r[3]) or now))
          local c = ctx.counters
          c.inflight[#c.inflight + 1] = fmt(now)
          c.inflight[#c.inflight + 1] = id
          c.promoting[#c.promoting + 1] = fmt(now + lease)
          c.promoting[#c.promoting + 1] = id
          local newVt = vt + cost / weightOf(p, tp)
          setVirtualTimes(ctx, ds, tenant, newVt, vt)
          setSince(ctx, ds, tenant, now)
          afterHeadLeft(ctx, ds, flow)
          if schedHas(ctx, ds, tenant) then schedMove(ctx, ds, p, tenant, newVt) end
          admitted[#admitted + 1] = id
          admitted[#admitted + 1] = r[2] or ''
          nAdmitted = nAdmitted + 1
          fresh = fresh + 1
        elseif v.k == 'wait' then
          blockFlow(ctx, ds, flow, v.r, v.u)
        else
          refuseHead(id, f, flow, tenant, r[2], v.reason, v.code, v.msg)
        end
      end
    end
  end
end
if fresh > 0 then rcall('HINCRBY', stats, 'admitted', fresh) end
flushCounters(ctx, ds)
if nAdmitted >= maxAdmit then more = 1 end

-- Shedding stops once the waiting place is back below the low mark.
if ARGV[18] ~= '' and (tonumber(rcall('GET', dsKey(ctx, ds, DK.waitingTotal))) or 0) < tonumber(ARGV[18]) then
  rcall('DEL', dsKey(ctx, ds, DK.shedding))
end

flushStates(ctx)
local nextWake = -1
local t = rcall('ZRANGE', timers, 0, 0, 'WITHSCORES')
if #t > 0 then nextWake = tonumber(t[2]) end
for _, key in ipairs({ promoting, deadlines, shedSet, dlpending }) do
  local first = rcall('ZRANGE', key, 0, 0, 'WITHSCORES')
  if #first > 0 and (nextWake < 0 or tonumber(first[2]) < nextWake) then nextWake = tonumber(first[2]) end
end

local out = { nextWake, more }
for _, x in ipairs(admitted) do out[#out + 1] = x end
out[#out + 1] = '|'
for _, x in ipairs(refused) do out[#out + 1] = x end
return out
