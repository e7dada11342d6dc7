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
    ARGV[17..] per job, 7 values: ingress id, tenant id, job name, cost, priority, payload (JSON of
               name, data and the producer's options), deadline (ms, '' = none)

  Output: one code per job: 'S' stored now, 'E' had a record already (left alone),
          'B' refused, the tenant's backlog is full (recorded as dead-lettered)
]]
--- @include "governance"

local ctx = contextFromArgs()
local ds, queue = ARGV[13], ARGV[14]
local maxWaiting, onFull = tonumber(ARGV[15]), ARGV[16]
local stored = 0
local out = {}
for i = CONTEXT_ARGS + 5, #ARGV, 7 do
  local id, tenant, name, cost, priority, payload, deadline =
    ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], tonumber(ARGV[i + 4]), ARGV[i + 5], ARGV[i + 6]
  local rec = ctx.G .. 'rec:' .. id
  if rcall('EXISTS', rec) == 1 then
    out[#out + 1] = 'E'
  elseif maxWaiting and onFull == 'reject' and (tonumber(rcall('HGET', dsKey(ctx, ds, 'wc'), tenant)) or 0) >= maxWaiting then
    recordDead(ctx, id, ds, tenant, 'tenant-backlog-full', 'TG_ERR_BACKLOG_FULL',
      'tenant ' .. tenant .. ' already has ' .. maxWaiting .. ' jobs waiting on ' .. ds)
    out[#out + 1] = 'B'
  else
    local seq = rcall('INCR', ctx.G .. 'seq') % 4294967296
    local score = priority * 4294967296 + seq
    local flow = flowOf(tenant, name)
    rcall('HSET', rec, 'st', 'waiting', 'ds', ds, 'q', queue, 't', tenant, 'n', name, 'enq', fmt(ctx.now),
      'cost', cost, 'pri', priority, 'p', payload)
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
return out
