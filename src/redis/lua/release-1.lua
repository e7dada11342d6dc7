--[[
  Releases admitted jobs that ended (or vanished), idempotently: each is counted once, its quota slot
  and capacity are given back, its cost is settled if the job reported one, and flows of its tenant
  parked for want of a slot become eligible again.

  A job still under a promotion lease (admitted from the waiting place, add not confirmed) is not
  released as 'vanished': its execution job may simply not exist yet, and lease recovery will add it.

  Settlement: a job admitted at cost c that reports an actual cost a (its return value's `cost`) is
  charged a - c more (or less) against its quota's period usage (in the windows still current) and
  rate (the TAT moves by (a - c) emission intervals). Capacity is given back at c, as it was held.

  Input:
    KEYS[1] <G>ds:<ds>:inflight (zset)  declares the governance slot
    ARGV[1..12]  governance context (see intake)
    ARGV[13] downstream   ARGV[14] every downstream of the slot, comma-separated
    ARGV[15] the schedulers' wake channel: the downstreams to look again at are published there, from
             the script (one round trip less between a slot coming back and its next admission), or ''
    ARGV[16..] per job, 4 values: ingress id, outcome ('completed' | 'failed' | 'vanished'), actual cost or '',
               when it ended (ms: the event's time) or ''

  Output: { per job 2 values: released (1/0), the breaker generation it was admitted in ('' unknown);
            then the downstreams whose scheduler should look again (comma-separated) }
    A downstream is named when a flow of it was woken, or when it is this job's downstream (capacity came
    back) and it has tenants waiting for it.
]]
--- @include "base"
--- @include "quota"
--- @include "capacity"
--- @include "schedule"
--- @include "flows"

local ctx = contextFromArgs()
local ds = ARGV[13]
local all = split(ARGV[14], ',')
local wakeChannel = ARGV[15]
local inflight = KEYS[1]
local stats = dsKey(ctx, ds, DK.stats)

-- Moves the quota's usage by `delta` cost units (settlement of a reported actual cost).
local function settle(qk, tenant, delta)
  local st = quotaState(ctx, qk, tenant)
  for _, p in ipairs(PERIODS) do
    if st[p[3]] == ctx.W[p[1]][1] then
      rcall('HSET', st.key, p[4], math.max(0, st[p[4]] + delta))
    end
  end
  if st.iv and st.tat > 0 then rcall('HSET', st.key, 'tat', fmt(st.tat + delta * st.iv)) end
end

-- Outcomes feed adaptive capacity, when the downstream has it: '<at>:<latency ms>:<failed 0/1>'.
local observe = rcall('EXISTS', dsKey(ctx, ds, DK.adaptiveOn)) == 1
local obsKey = dsKey(ctx, ds, DK.adaptiveObservations)

-- Gives back are summed per tenant (and per quota) and made once after the loop: the same end state as
-- job by job, with fewer calls. Nothing read in the loop depends on them.
local anyPromoting = rcall('EXISTS', dsKey(ctx, ds, DK.promoting)) == 1
local refund, refundTenants = {}, {}
local quotaBack, quotaKeys = {}, {}
local counts = {}

-- Which jobs are in flight: one lookup for the batch, one removal at the end (nothing read in the
-- loop depends on the removal).
local all_ids = {}
for i = CONTEXT_ARGS + 4, #ARGV, 4 do all_ids[#all_ids + 1] = ARGV[i] end
local inflightNow = {}
if #all_ids > 0 then
  local scores = rcall('ZMSCORE', inflight, unpack(all_ids))
  for k, id in ipairs(all_ids) do
    if scores[k] then inflightNow[id] = true end
  end
end
local leave = {}

-- Record fields only the waiting place needs: the payload, its score, priority and deadline.
local WAITING_ONLY = { p = true, sc = true, pri = true, dl = true }

local out = {}
local wake = {}
for i = CONTEXT_ARGS + 4, #ARGV, 4 do
  local id, outcome, actual, endedAt = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]) or ctx.now
  local rec = ctx.G .. GF.record .. id
  local v = rcall('HMGET', rec, 'st', 'qk', 't', 'cost', 'at', 'enq', 'bg')
  local leased = outcome == 'vanished' and anyPromoting and rcall('ZSCORE', dsKey(ctx, ds, DK.promoting), id)
  local wasInflight = 0
  if not leased and inflightNow[id] then
    wasInflight = 1
    inflightNow[id] = nil
    leave[#leave + 1] = id
  end
  if leased then
    out[#out + 1] = 0
    out[#out + 1] = v[7] or ''
  elseif v[1] == 'admitted' or ((not v[1]) and wasInflight == 1) then
    if v[1] then
      local cost = tonumber(v[4]) or 1
      rcall('HSET', rec, 'st', outcome, 'fin', fmt(ctx.now))
      -- Only a job that went through the waiting place has a payload or a promotion lease.
      if v[6] then
        -- Its record held a payload, so Redis keeps it as a hashtable (about 840 B) even once the payload
        -- is gone: written again without the waiting place's fields it is a listpack (about 200 B), for
        -- the retention that `GET /jobs/:id` shows it.
        local all = rcall('HGETALL', rec)
        local keep = {}
        for k = 1, #all, 2 do
          local f = all[k]
          if not WAITING_ONLY[f] then
            keep[#keep + 1] = f
            keep[#keep + 1] = all[k + 1]
          end
        end
        rcall('DEL', rec)
        rcall('HSET', rec, unpack(keep))
        if anyPromoting then rcall('ZREM', dsKey(ctx, ds, DK.promoting), id) end
      end
      rcall('PEXPIRE', rec, ctx.retention)
      if v[2] and v[3] then
        local qk = v[2] .. '\n' .. v[3]
        if not quotaBack[qk] then
          quotaBack[qk] = 0
          quotaKeys[#quotaKeys + 1] = { v[2], v[3], qk }
        end
        quotaBack[qk] = quotaBack[qk] + cost
        if actual and actual ~= cost then
          settle(v[2], v[3], actual - cost)
          rcall('HSET', rec, 'ac', actual)
        end
        wake[v[3]] = true
      end
      if v[3] then
        if not refund[v[3]] then
          refund[v[3]] = 0
          refundTenants[#refundTenants + 1] = v[3]
        end
        refund[v[3]] = refund[v[3]] + cost
      end
      if observe and outcome ~= 'vanished' and v[5] then
        local failed = 0
        if outcome == 'failed' then failed = 1 end
        rcall('LPUSH', obsKey, fmt(ctx.now) .. ':' .. math.max(0, math.floor(endedAt - tonumber(v[5]))) .. ':' .. failed)
        rcall('LTRIM', obsKey, 0, 1999)
      end
    end
    counts[outcome] = (counts[outcome] or 0) + 1
    out[#out + 1] = 1
    out[#out + 1] = v[7] or ''
  else
    out[#out + 1] = 0
    out[#out + 1] = v[7] or ''
  end
end
for i = 1, #leave, 5000 do rcall('ZREM', inflight, unpack(leave, i, math.min(i + 4999, #leave))) end
for _, q in ipairs(quotaKeys) do giveBack(ctx, q[1], q[2], quotaBack[q[3]]) end
for _, tenant in ipairs(refundTenants) do
  refundCapacity(ctx, ds, tenant, refund[tenant])
  retier(ctx, ds, tenant)
end
for outcome, n in pairs(counts) do rcall('HINCRBY', stats, outcome, n) end
local toWake = {}
for tenant in pairs(wake) do
  for _, d in ipairs(all) do
    if wakeTenant(ctx, d, tenant, true) > 0 then toWake[d] = true end
  end
end
if not schedEmpty(ctx, ds) then toWake[ds] = true end
local names = {}
for d in pairs(toWake) do names[#names + 1] = d end
local wakeList = table.concat(names, ',')
if wakeChannel ~= '' and wakeList ~= '' then rcall('PUBLISH', wakeChannel, wakeList) end
out[#out + 1] = wakeList
return out
