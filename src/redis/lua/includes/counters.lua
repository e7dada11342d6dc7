--[[
  The counters every admission and departure changes: admissions per tenant per minute, wait
  samples, waiting counts; and the cache of the scheduler's counters for one drain call
  (cacheCounters, flushCounters), which capacity.lua, schedule.lua and these functions use when set.

  Keys under G:
    ds:<d>:adm:<minute>      hash   tenant -> cost units admitted in that minute (kept 15 minutes)
    ds:<d>:waits:<tenant>    list   '<admitted at>:<waited>' wait samples, newest first (200 kept)
    ds:<d>:wc                hash   tenant -> waiting jobs
    ds:<d>:wtotal            string waiting jobs, all tenants
    ds:<d>:bypri             zset   the shedding index: waiting job ids -> priority * 2^32 + arrival
    ds:<d>:inflight          zset   admitted, unfinished job ids -> admission time (flushCounters)
    ds:<d>:promoting         zset   admitted from the waiting place, add not yet confirmed -> lease end (flushCounters)
    and, written by flushCounters: ds:<d>:used, tin (capacity.lua), tvt, gvt, since (schedule.lua)
]]
--- @include "base"

-- The scheduler's counters, kept for one drain call (cacheCounters; one downstream per call): the
-- counters it changes with every admission (capacity used and per tenant, waiting counts, virtual
-- times, when tenants were served, admissions, wait samples, in-flight and lease entries) are read
-- once, changed here, and written once by flushCounters. Other scripts read and write Redis directly.
local function cacheCounters(ctx)
  ctx.counters = { tin = {}, tinDelta = {}, tinTenants = {}, usedDelta = 0, wc = {}, wcTenants = {}, wtotal = 0,
    tvt = {}, tvtDirty = {}, since = {}, sinceDirty = {}, adm = {}, admTenants = {}, waits = {}, waitTenants = {},
    inflight = {}, promoting = {} }
end

-- Admissions per tenant per minute (cost units), for shares, fairness and estimates. Kept 15 minutes.
local function countAdmission(ctx, ds, tenant, cost)
  local c = ctx.counters
  if c then
    c.adm[tenant] = counterFor(c.adm, c.admTenants, tenant, 0) + cost
    return
  end
  local minute = ctx.now - (ctx.now % 60000)
  local key = dsKey(ctx, ds, DF.admissions .. fmt(minute))
  rcall('HINCRBY', key, tenant, cost)
  ctx.expired = ctx.expired or {}
  if not ctx.expired[key] then
    rcall('PEXPIRE', key, 900000)
    ctx.expired[key] = true
  end
end

-- A job left the waiting place after `waited` ms: sampled per tenant ('<admitted at>:<waited>') for
-- wait percentiles and the tenant's recent admission rate (estimated admission times).
local function sampleWait(ctx, ds, tenant, waited)
  local c = ctx.counters
  if c then
    local list = counterFor(c.waits, c.waitTenants, tenant, {})
    list[#list + 1] = fmt(ctx.now) .. ':' .. math.floor(waited)
    return
  end
  local key = dsKey(ctx, ds, DF.waitSamples .. tenant)
  rcall('LPUSH', key, fmt(ctx.now) .. ':' .. math.floor(waited))
  rcall('LTRIM', key, 0, 199)
end

-- One job left the waiting place of `tenant` on `ds` (and the shedding index, if it was in it).
local function decWaiting(ctx, ds, tenant, id)
  local c = ctx.counters
  if c then
    c.wc[tenant] = counterFor(c.wc, c.wcTenants, tenant, 0) - 1
    c.wtotal = c.wtotal - 1
    if id then rcall('ZREM', dsKey(ctx, ds, DK.byPriority), id) end
    return
  end
  local key = dsKey(ctx, ds, DK.waitingCounts)
  if rcall('HINCRBY', key, tenant, -1) <= 0 then rcall('HDEL', key, tenant) end
  if rcall('DECR', dsKey(ctx, ds, DK.waitingTotal)) < 0 then rcall('SET', dsKey(ctx, ds, DK.waitingTotal), 0) end
  if id then rcall('ZREM', dsKey(ctx, ds, DK.byPriority), id) end
end

-- Writes what cacheCounters kept for the call: each counter once, with the same end state as the
-- per-admission writes (wait samples pushed in admission order, so the newest is first).
local function flushCounters(ctx, ds)
  local c = ctx.counters
  if not c then return end
  ctx.counters = nil
  if c.usedDelta ~= 0 then rcall('INCRBY', dsKey(ctx, ds, DK.used), c.usedDelta) end
  for _, t in ipairs(c.tinTenants) do rcall('HINCRBY', dsKey(ctx, ds, DK.tenantInflight), t, c.tinDelta[t]) end
  for _, t in ipairs(c.wcTenants) do
    if rcall('HINCRBY', dsKey(ctx, ds, DK.waitingCounts), t, c.wc[t]) <= 0 then rcall('HDEL', dsKey(ctx, ds, DK.waitingCounts), t) end
  end
  if c.wtotal ~= 0 and rcall('INCRBY', dsKey(ctx, ds, DK.waitingTotal), c.wtotal) < 0 then rcall('SET', dsKey(ctx, ds, DK.waitingTotal), 0) end
  if c.gvtDirty then rcall('SET', dsKey(ctx, ds, DK.globalVt), fmt(c.gvt)) end
  for _, t in ipairs(c.tvtDirty) do rcall('HSET', dsKey(ctx, ds, DK.tenantVt), t, fmt(c.tvt[t])) end
  for _, t in ipairs(c.sinceDirty) do
    if c.since[t] then rcall('ZADD', dsKey(ctx, ds, DK.since), fmt(c.since[t]), t) else rcall('ZREM', dsKey(ctx, ds, DK.since), t) end
  end
  for _, t in ipairs(c.admTenants) do countAdmission(ctx, ds, t, c.adm[t]) end
  for _, t in ipairs(c.waitTenants) do
    local key = dsKey(ctx, ds, DF.waitSamples .. t)
    rcall('LPUSH', key, unpack(c.waits[t]))
    rcall('LTRIM', key, 0, 199)
  end
  if #c.inflight > 0 then rcall('ZADD', dsKey(ctx, ds, DK.inflight), unpack(c.inflight)) end
  if #c.promoting > 0 then rcall('ZADD', dsKey(ctx, ds, DK.promoting), unpack(c.promoting)) end
end
