--[[
  The gate's decision for a batch of new ingress jobs of one downstream: admit now (fast path),
  or send to the waiting place, or reject; idempotent per ingress job id.

  A job is admitted at once only if the downstream's breaker is closed, nothing of the downstream
  waits already (no eligible tenant, its own flow empty: admission order belongs to the scheduler
  then), the allocation policy has room for it, and its quota and throttles allow it; tokens, slots,
  capacity and period usage are taken in the same step. The record keeps the breaker generation the
  job was admitted in (its outcome only counts for that generation).

  Input:
    KEYS[1] <G>ds:<ds>:inflight (zset)  declares the governance slot
    ARGV[1..12]  governance context: G, now, retention (ms), hour start/end/iso, day start/end/iso,
                 month start/end/iso
    ARGV[13] downstream    ARGV[14] execution queue    ARGV[15] capacity
    ARGV[16] the definitions version the caller knows Postgres is at, or -1: do not check the mirror
    ARGV[17..] per job, 4 values: ingress id, tenant id, job name, cost

  Output: one code per job, in order
    'A'          admitted now: add it to the execution queue
    'R'          admitted by an earlier attempt: add again (idempotent)
    'F'          admitted earlier and finished: nothing to do
    'Q'          already in the waiting place: nothing to do
    'W'          must wait: store it with enqueue
    'X<message>' refused now (period quota with reject): dead-letter it
    'D<message>' refused by an earlier attempt: make sure its dead-letter job exists
    'U'          (every job) Redis has no mirror of the quota and throttle definitions, or one behind
                 ARGV[16] (Redis lost it): nothing is decided until the mirror is restored
]]
--- @include "governance"

local ctx = contextFromArgs()
local ds, queue, capacity = ARGV[13], ARGV[14], tonumber(ARGV[15])
local inflight = KEYS[1]
local FIRST = CONTEXT_ARGS + 5

-- A Redis that lost its governance state must not admit under missing quotas or throttles.
local known = tonumber(ARGV[16]) or -1
local mirrored = known >= 0 and rcall('GET', ctx.G .. 'mirror-version')
if known >= 0 and ((not mirrored) or tonumber(mirrored) < known) then
  local out = {}
  for _ = FIRST, #ARGV, 4 do out[#out + 1] = 'U' end
  return out
end
local p = policyOf(ctx, ds, capacity)
local b = breakerOf(ctx, ds)

-- Read once per batch and kept up to date here (this script is the only writer while it runs): whether
-- anything of the downstream waits at all, its capacity used, and each tenant's in-flight cost.
-- Writes of counters are summed and made once at the end; the outcome is the same as job by job.
local queued = not schedEmpty(ctx, ds)
local anyWaiting = (tonumber(rcall('GET', dsKey(ctx, ds, 'wtotal'))) or 0) > 0
local used = usedOf(ctx, ds)
local tin, tinAdd, tenantsAdded = {}, {}, {}
local zargs = {}

local out = {}
local admitted = 0
for i = FIRST, #ARGV, 4 do
  local id, tenant, name, cost = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local rec = ctx.G .. 'rec:' .. id
  local state = rcall('HGET', rec, 'st')
  local ti = tin[tenant]
  if state == 'admitted' then
    out[#out + 1] = 'R'
  elseif state == 'waiting' then
    out[#out + 1] = 'Q'
  elseif state == 'dead' then
    out[#out + 1] = 'D' .. (rcall('HGET', rec, 'msg') or '')
  elseif state then
    out[#out + 1] = 'F'
  elseif b.st ~= 'closed' or queued or (anyWaiting and rcall('EXISTS', dsKey(ctx, ds, 'f:' .. flowOf(tenant, name))) == 1) then
    out[#out + 1] = 'W'
  else
    if ti == nil then
      ti = tenantInflight(ctx, ds, tenant)
      tin[tenant] = ti
    end
    if admissible(p, tenantPolicy(ctx, ds, p, tenant), ti, cost, used, 0) ~= 'yes' then
      out[#out + 1] = 'W'
    else
      local v = evaluate(ctx, tenant, name, ds, cost)
      if v.k == 'admit' then
        take(ctx, v, cost)
        used = used + cost
        tin[tenant] = ti + cost
        if not tinAdd[tenant] then
          tinAdd[tenant] = 0
          tenantsAdded[#tenantsAdded + 1] = tenant
        end
        tinAdd[tenant] = tinAdd[tenant] + cost
        -- No expiry while admitted: the release needs the record (tenant, quota, cost), however long the job runs.
        rcall('HSET', rec, 'st', 'admitted', 'ds', ds, 'q', queue, 't', tenant, 'n', name, 'at', fmt(ctx.now),
          'qk', v.q.id, 'cost', cost, 'bg', b.gen)
        zargs[#zargs + 1] = fmt(ctx.now)
        zargs[#zargs + 1] = id
        admitted = admitted + 1
        out[#out + 1] = 'A'
      elseif v.k == 'wait' then
        out[#out + 1] = 'W'
      else
        recordDead(ctx, id, ds, tenant, 'quota-exceeded', 'TG_ERR_QUOTA_EXCEEDED', v.msg)
        out[#out + 1] = 'X' .. v.msg
      end
    end
  end
end
if admitted > 0 then
  for _, tenant in ipairs(tenantsAdded) do
    chargeCapacity(ctx, ds, tenant, tinAdd[tenant])
    countAdmission(ctx, ds, tenant, tinAdd[tenant])
  end
  rcall('ZADD', inflight, unpack(zargs))
  rcall('HINCRBY', dsKey(ctx, ds, 'stats'), 'admitted', admitted)
end
return out
