--[[
  Stores jobs that must wait in the waiting place of their downstream: the record keeps the payload,
  the job joins its flow (tenant, job name) in priority-then-arrival order, and a flow that was not
  waiting becomes eligible for the scheduler (which evaluates it and blocks it if it must wait).

  Input:
    KEYS[1] <G>ds:<ds>:inflight (zset)  declares the governance slot
    ARGV[1..12]  governance context (see intake)
    ARGV[13] downstream    ARGV[14] execution queue
    ARGV[15..] per job, 6 values: ingress id, tenant id, job name, cost, priority, payload (JSON of
               name, data and the producer's options)

  Output: number of jobs stored now (jobs with a record already are left alone)
]]
--- @include "governance"

local ctx = contextFromArgs()
local ds, queue = ARGV[13], ARGV[14]
local stored = 0
for i = CONTEXT_ARGS + 3, #ARGV, 6 do
  local id, tenant, name, cost, priority, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], tonumber(ARGV[i + 4]), ARGV[i + 5]
  local rec = ctx.G .. 'rec:' .. id
  if rcall('EXISTS', rec) == 0 then
    local seq = rcall('INCR', ctx.G .. 'seq') % 4294967296
    local score = priority * 4294967296 + seq
    local flow = flowOf(tenant, name)
    rcall('HSET', rec, 'st', 'waiting', 'ds', ds, 'q', queue, 't', tenant, 'n', name, 'enq', fmt(ctx.now),
      'cost', cost, 'pri', priority, 'p', payload)
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
  end
end
if stored > 0 then rcall('HINCRBY', dsKey(ctx, ds, 'stats'), 'queued', stored) end
return stored
