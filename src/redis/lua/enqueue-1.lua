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
--- @include "governance"

local ctx = contextFromArgs()
local ds, queue = ARGV[13], ARGV[14]
local maxWaiting, onFull = tonumber(ARGV[15]), ARGV[16]
local shedHigh, shedLow, shedAction, shedDelay = tonumber(ARGV[17]), tonumber(ARGV[18]), ARGV[19], tonumber(ARGV[20]) or 0
local dlLease = tonumber(ARGV[21]) or 30000
local stored = 0
local out = {}
for i = CONTEXT_ARGS + 10, #ARGV, 8 do
  local id, ts, tenant, name, cost, priority, payload, deadline =
    ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], tonumber(ARGV[i + 5]), ARGV[i + 6], ARGV[i + 7]
  local rec = ctx.G .. 'rec:' .. id
  if rcall('EXISTS', rec) == 1 then
    out[#out + 1] = 'E'
  elseif maxWaiting and onFull == 'reject' and (tonumber(rcall('HGET', dsKey(ctx, ds, 'wc'), tenant)) or 0) >= maxWaiting then
    recordDead(ctx, id, ds, tenant, 'tenant-backlog-full', 'TG_ERR_BACKLOG_FULL',
      'tenant ' .. tenant .. ' already has ' .. maxWaiting .. ' jobs waiting on ' .. ds)
    rcall('HSET', rec, 'ts', ts)
    out[#out + 1] = 'B'
  else
    local seq = rcall('INCR', ctx.G .. 'seq') % 4294967296
    local score = priority * 4294967296 + seq
    local flow = flowOf(tenant, name)
    rcall('HSET', rec, 'st', 'waiting', 'ds', ds, 'q', queue, 't', tenant, 'n', name, 'enq', fmt(ctx.now),
      'cost', cost, 'pri', priority, 'p', payload, 'sc', fmt(score), 'ts', ts)
    rcall('INCR', dsKey(ctx, ds, 'wtotal'))
    if shedHigh then rcall('ZADD', dsKey(ctx, ds, 'bypri'), fmt(score), id) end
    if deadline ~= '' then
      rcall('HSET', rec, 'dl', deadline)
      rcall('ZADD', dsKey(ctx, ds, 'deadlines'), deadline, id)
    end
    -- No expiry while waiting: a job may wait longer than records are kept (a monthly quota).
    local f = dsKey(ctx, ds, 'f:' .. flow)
    local wasEmpty = rcall('EXISTS', f) == 0
    rcall('ZADD', f, fmt(score), id)
    rcall('SADD', dsKey(ctx, ds, 'fl:' .. tenant), flow)
    rcall('HINCRBY', dsKey(ctx, ds, 'wc'), tenant, 1)
    if wasEmpty then
      makeEligible(ctx, ds, flow)
    elseif rcall('HGET', dsKey(ctx, ds, 'fst'), flow) == 'e' then
      -- A better-priority job may have become the head: keep the tenant's order right.
      local head = rcall('ZRANGE', f, 0, 0, 'WITHSCORES')
      rcall('ZADD', dsKey(ctx, ds, 'tf:' .. tenant), head[2], flow)
    end
    stored = stored + 1
    out[#out + 1] = 'S'
  end
end
if stored > 0 then rcall('HINCRBY', dsKey(ctx, ds, 'stats'), 'queued', stored) end

out[#out + 1] = '|'
if shedHigh then
  local flag = dsKey(ctx, ds, 'shedding')
  local total = tonumber(rcall('GET', dsKey(ctx, ds, 'wtotal'))) or 0
  if total > shedHigh then rcall('SET', flag, '1') end
  if shedLow and total < shedLow then rcall('DEL', flag) end
  if rcall('EXISTS', flag) == 1 then
    local p = policyOf(ctx, ds)
    local skip = 0
    local shed = 0
    while total > shedHigh and skip < 20 do
      local v = rcall('ZREVRANGE', dsKey(ctx, ds, 'bypri'), skip, skip)
      if #v == 0 then break end
      local id = v[1]
      local rec = ctx.G .. 'rec:' .. id
      local r = rcall('HMGET', rec, 't', 'n', 'p', 'pri')
      local tenant = r[1]
      if not tenant or tenantInflight(ctx, ds, tenant) < reserveOf(p, tenantPolicy(ctx, ds, p, tenant)) then
        skip = skip + 1 -- below its reserve: never shed
      else
        local flow = flowOf(tenant, r[2])
        rcall('ZREM', dsKey(ctx, ds, 'f:' .. flow), id)
        decWaiting(ctx, ds, tenant, id)
        rcall('ZREM', dsKey(ctx, ds, 'deadlines'), id)
        afterHeadLeft(ctx, ds, flow)
        if shedAction == 'delay' then
          rcall('HSET', rec, 'st', 'shed')
          rcall('ZADD', dsKey(ctx, ds, 'shed'), fmt(ctx.now + shedDelay), id)
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
    if shed > 0 then rcall('HINCRBY', dsKey(ctx, ds, 'stats'), 'shed', shed) end
  end
end
return out
