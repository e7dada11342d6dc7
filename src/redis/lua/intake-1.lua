--[[
  The gate's decision for a batch of new ingress jobs of one downstream: admit now (fast path),
  or send to the waiting place, or reject; idempotent per ingress job id.

  A job is admitted at once only if the downstream's breaker is closed, nothing of the downstream
  waits already (no eligible tenant, its own flow empty: admission order belongs to the scheduler
  then), the allocation policy has room for it, and its quota and throttles allow it; tokens, slots,
  capacity and period usage are taken in the same step. The record keeps the breaker generation the
  job was admitted in (its outcome only counts for that generation). A job the policy or its quota
  could never admit, whatever waits or runs, is refused at once (cost-over-capacity, cost-over-quota),
  and so is a duplicate of the same tenant's job with the same id still in flight (includes/instance.lua).

  Input:
    KEYS[1] <G>ds:<ds>:inflight (zset)  declares the governance slot
    ARGV[1..12]  governance context: G, now, retention (ms), hour start/end/iso, day start/end/iso,
                 month start/end/iso
    ARGV[13] downstream    ARGV[14] execution queue    ARGV[15] capacity
    ARGV[16] the definitions version the caller knows Postgres is at, or -1: do not check the mirror
    ARGV[17] max waiting jobs per tenant on this downstream ('' = no limit)   ARGV[18] past it: 'reject' | 'keep'
    ARGV[19..] per job, 9 values: ingress id, stamp (its creation time), '1' if an execution or
               dead-letter job already has the id of its first instance, '0' if none has, '' if not
               looked up (see includes/instance.lua), tenant id, job name, cost, priority, payload (as
               enqueue stores it; '' = not sent), deadline (ms, '' = none)
  A job that must wait and came with its payload is stored in the waiting place right here (as
  enqueue would: includes/waiting.lua), saving the gate a second call; one without waits for enqueue.

  Output: per job, in order, 3 values: code, job key (see includes/instance.lua), detail
    'A'          admitted now: add it to the execution queue
    'R'          admitted by an earlier attempt: add again (idempotent)
    'F'          admitted earlier and finished: nothing to do
    'Q'          already in the waiting place: nothing to do
    'W'          must wait: store it with enqueue, under its job key
    'S'          stored in the waiting place now (it came with its payload)
    'X'          refused now: dead-letter it; detail '<code>|<message>'
    'D'          refused by an earlier attempt: make sure its dead-letter job exists; detail as for 'X'
    'U'          (every job) Redis has no mirror of the quota and throttle definitions, or one behind
                 ARGV[16] (Redis lost it): nothing is decided until the mirror is restored
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
--- @include "instance"
--- @include "waiting"

local ctx = contextFromArgs()
local ds, queue, capacity = ARGV[13], ARGV[14], tonumber(ARGV[15])
local inflight = KEYS[1]
local FIRST = CONTEXT_ARGS + 7
local PER_JOB = 9
local limits = { maxWaiting = tonumber(ARGV[17]), onFull = ARGV[18] }

-- A Redis that lost its governance state must not admit under missing quotas or throttles.
local known = tonumber(ARGV[16]) or -1
local mirrored = known >= 0 and rcall('GET', ctx.G .. GK.mirrorVersion)
if known >= 0 and ((not mirrored) or tonumber(mirrored) < known) then
  local out = {}
  for _ = FIRST, #ARGV, PER_JOB do
    out[#out + 1] = 'U'
    out[#out + 1] = ''
    out[#out + 1] = ''
  end
  return out
end
local p = policyOf(ctx, ds, capacity)
cacheStates(ctx)
local b = breakerOf(ctx, ds)

-- Read once per batch and kept up to date here (this script is the only writer while it runs): whether
-- anything of the downstream waits at all, its capacity used, and each tenant's in-flight cost.
-- Writes of counters are summed and made once at the end; the outcome is the same as job by job.
local queued = not schedEmpty(ctx, ds)
local anyWaiting = (tonumber(rcall('GET', dsKey(ctx, ds, DK.waitingTotal))) or 0) > 0
local used = usedOf(ctx, ds)
local tin, tinAdd, tenantsAdded = {}, {}, {}
local zargs = {}

local out = {}
local admitted = 0
local function reply(code, key, detail)
  out[#out + 1] = code
  out[#out + 1] = key
  out[#out + 1] = detail or ''
end
-- Jobs that must wait and came with their payload: stored after the loop, their replies filled in then.
local toStore, storeAt = {}, {}
local waitedFlow = {}
local function wait(key, i, tenant, name, cost)
  waitedFlow[flowOf(tenant, name)] = true
  reply('W', key)
  if ARGV[i + 7] ~= '' then
    toStore[#toStore + 1] = { id = key, ts = ARGV[i + 1], tenant = tenant, name = name, cost = cost,
      priority = tonumber(ARGV[i + 6]) or 0, payload = ARGV[i + 7], deadline = ARGV[i + 8] }
    storeAt[#storeAt + 1] = #out - 2
  end
end
local function refuse(key, id, ts, tenant, code, reason, msg)
  recordDead(ctx, key, ds, tenant, reason, code, msg)
  rcall('HSET', ctx.G .. GF.record .. key, 'ts', ts)
  reply('X', key, code .. '|' .. msg)
end
for i = FIRST, #ARGV, PER_JOB do
  local id, ts, taken, tenant, name, cost = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], tonumber(ARGV[i + 5])
  local key, kind = resolveInstance(ctx.G, ctx.retention, id, ts, tenant, taken)
  local rec = ctx.G .. GF.record .. key
  local state = kind == 'known' and rcall('HGET', rec, 'st')
  local ti = tin[tenant]
  if state == 'admitted' then
    reply('R', key)
  elseif state == 'waiting' or state == 'shed' then
    reply('Q', key)
  elseif state == 'dead' then
    local r = rcall('HMGET', rec, 'code', 'msg')
    reply('D', key, (r[1] or 'TG_ERR_QUOTA_EXCEEDED') .. '|' .. (r[2] or ''))
  elseif state then
    reply('F', key)
  elseif kind == 'duplicate' then
    refuse(key, id, ts, tenant, 'TG_ERR_DUPLICATE_JOB_ID', 'duplicate-job-id',
      'job id ' .. id .. ' belongs to a job of tenant ' .. tenant .. ' still in flight; BullMQ adds a job id once, so this one is not run twice')
  else
    local tp = tenantPolicy(ctx, ds, p, tenant)
    local misfit = beyondPolicy(p, tp, ds, cost)
    if misfit then
      refuse(key, id, ts, tenant, 'TG_ERR_COST_OVER_CAPACITY', 'cost-over-capacity', misfit)
    elseif b.st ~= 'closed' or queued or waitedFlow[flowOf(tenant, name)]
      or (anyWaiting and rcall('EXISTS', dsKey(ctx, ds, DF.flow .. flowOf(tenant, name))) == 1) then
      wait(key, i, tenant, name, cost)
    else
      if ti == nil then
        ti = tenantInflight(ctx, ds, tenant)
        tin[tenant] = ti
      end
      local v = admissible(p, tp, ti, cost, used, 0) == 'yes' and evaluate(ctx, tenant, name, ds, cost) or { k = 'wait' }
      if v.k == 'reject' then
        refuse(key, id, ts, tenant, v.code, v.reason, v.msg)
      elseif v.k == 'wait' then
        wait(key, i, tenant, name, cost)
      else
        take(ctx, v, cost)
        used = used + cost
        tin[tenant] = ti + cost
        if not tinAdd[tenant] then
          tinAdd[tenant] = 0
          tenantsAdded[#tenantsAdded + 1] = tenant
        end
        tinAdd[tenant] = tinAdd[tenant] + cost
        -- No expiry while admitted: the release needs the record (tenant, quota, cost), however long the job runs.
        rcall('HSET', rec, 'st', 'admitted', 'ds', ds, 't', tenant, 'at', fmt(ctx.now), 'qk', v.q.id, 'cost', cost, 'bg', b.gen, 'ts', ts)
        zargs[#zargs + 1] = fmt(ctx.now)
        zargs[#zargs + 1] = key
        admitted = admitted + 1
        reply('A', key)
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
  rcall('HINCRBY', dsKey(ctx, ds, DK.stats), 'admitted', admitted)
end
flushStates(ctx)
if #toStore > 0 then
  local codes = storeWaiting(ctx, ds, toStore, limits)
  for k, code in ipairs(codes) do
    local at = storeAt[k]
    if code == 'S' then out[at] = 'S'
    elseif code == 'E' then out[at] = 'Q'
    else
      out[at] = 'X'
      out[at + 2] = 'TG_ERR_BACKLOG_FULL|tenant ' .. toStore[k].tenant .. ' already has ' .. limits.maxWaiting .. ' jobs waiting on ' .. ds
    end
  end
end
return out
