--[[
  Stores jobs that must wait in the waiting place of their downstream: the record keeps the payload,
  the job joins its flow (tenant, job name) in priority-then-arrival order, and a flow that was not
  waiting becomes eligible for the scheduler (which evaluates it and blocks it if it must wait).

  Input:
    KEYS[1] <G>ds:<ds>:inflight (zset)  declares the governance slot
    ARGV[1..12]  governance context (see intake)
    ARGV[13] downstream    ARGV[14] execution queue
    ARGV[15] max waiting jobs per tenant on this downstream ('' = no limit)
    ARGV[16] past it: 'reject' (dead-letter tenant-backlog-full) or 'keep'
    ARGV[17] shedding: start above this many waiting jobs ('' = never)   ARGV[18] stop below this many
    ARGV[19] shedding action: 'dead-letter' or 'delay'   ARGV[20] delay (ms)
    ARGV[21] dead-letter lease (ms): a shed job's payload is kept until its dead-letter add is confirmed
    ARGV[22..] per job, 8 values: job key (intake's), stamp, tenant id, job name, cost, priority,
               payload (JSON of name, data and the producer's options), deadline (ms, '' = none)

  Load shedding: above the high mark the downstream sheds (until it is back below the low mark):
  while more than `high` jobs wait, the lowest-priority, newest waiting job is shed: dead-lettered
  ('shed'), or set aside for the delay and then put back. A tenant below its reserve is never shed.

  Output: { one code per job: 'S' stored now, 'E' had a record already (left alone),
            'B' refused, the tenant's backlog is full (recorded as dead-lettered);
            '|'; then per job shed to the dead-letter queue: id, payload, message }
]]
--- @include "base"
--- @include "policy"
--- @include "capacity"
--- @include "flows"
--- @include "counters"
--- @include "records"
--- @include "waiting"

local ctx = contextFromArgs()
local ds, queue = ARGV[13], ARGV[14]
local maxWaiting, onFull = tonumber(ARGV[15]), ARGV[16]
local shedHigh, shedLow, shedAction, shedDelay = tonumber(ARGV[17]), tonumber(ARGV[18]), ARGV[19], tonumber(ARGV[20]) or 0
local dlLease = tonumber(ARGV[21]) or 30000
local jobs = {}
for i = CONTEXT_ARGS + 10, #ARGV, 8 do
  jobs[#jobs + 1] = { id = ARGV[i], ts = ARGV[i + 1], tenant = ARGV[i + 2], name = ARGV[i + 3], cost = ARGV[i + 4],
    priority = tonumber(ARGV[i + 5]), payload = ARGV[i + 6], deadline = ARGV[i + 7] }
end
local out = storeWaiting(ctx, ds, jobs, { maxWaiting = maxWaiting, onFull = onFull, byPriority = shedHigh ~= nil })

out[#out + 1] = '|'
if shedHigh then
  local flag = dsKey(ctx, ds, DK.shedding)
  local total = tonumber(rcall('GET', dsKey(ctx, ds, DK.waitingTotal))) or 0
  if total > shedHigh then rcall('SET', flag, '1') end
  if shedLow and total < shedLow then rcall('DEL', flag) end
  if rcall('EXISTS', flag) == 1 then
    local p = policyOf(ctx, ds)
    local skip = 0
    local shed = 0
    while total > shedHigh and skip < 20 do
      local v = rcall('ZREVRANGE', dsKey(ctx, ds, DK.byPriority), skip, skip)
      if #v == 0 then break end
      local id = v[1]
      local rec = ctx.G .. GF.record .. id
      local r = rcall('HMGET', rec, 't', 'n', 'p', 'pri')
      local tenant = r[1]
      if not tenant or tenantInflight(ctx, ds, tenant) < reserveOf(p, tenantPolicy(ctx, ds, p, tenant)) then
        skip = skip + 1 -- below its reserve: never shed
      else
        local flow = flowOf(tenant, r[2])
        rcall('ZREM', dsKey(ctx, ds, DF.flow .. flow), id)
        decWaiting(ctx, ds, tenant, id)
        rcall('ZREM', dsKey(ctx, ds, DK.deadlines), id)
        afterHeadLeft(ctx, ds, flow)
        if shedAction == 'delay' then
          rcall('HSET', rec, 'st', 'shed')
          rcall('ZADD', dsKey(ctx, ds, DK.shed), fmt(ctx.now + shedDelay), id)
        else
          local msg = 'shed: ' .. ds .. ' had more than ' .. shedHigh .. ' jobs waiting, and this was among the lowest priorities (' .. (r[4] or '0') .. ')'
          recordDead(ctx, id, ds, tenant, 'shed', 'TG_ERR_SHED', msg, ctx.now + dlLease)
          out[#out + 1] = id
          out[#out + 1] = r[3] or ''
          out[#out + 1] = msg
        end
        total = total - 1
        shed = shed + 1
      end
    end
    if shed > 0 then rcall('HINCRBY', dsKey(ctx, ds, DK.stats), 'shed', shed) end
  end
end
return out
