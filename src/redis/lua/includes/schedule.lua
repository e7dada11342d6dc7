--[[
  The scheduler's queue of tenants: one zset per tier (score = virtual time), plus the set of
  non-empty tiers, so the next tenant is two lookups away whatever the number of tenants. Virtual
  times (weighted fair queuing), aging (priority policy), re-tiering (reserved policy).

  Keys under G:
    ds:<d>:sched:<tier>      zset   tenants eligible in that tier -> virtual time
    ds:<d>:tiers             zset   non-empty tiers -> tier
    ds:<d>:stier             hash   tenant -> its tier now
    ds:<d>:since             zset   tenant -> when it became eligible or was last served (aging)
    ds:<d>:tvt               hash   tenant -> virtual time it reached
    ds:<d>:gvt               string virtual time of the last admission
    and, read through policy.lua and capacity.lua: ds:<d>:pol, pol-t, cap, brk, tin
]]
--- @include "base"
--- @include "policy"
--- @include "capacity"

-- When the tenant was last served or became eligible (nil: it is not queued).
local function sinceOf(ctx, ds, tenant)
  local c = ctx.counters
  if c and c.since[tenant] ~= nil then return c.since[tenant] or nil end
  local v = tonumber(rcall('ZSCORE', dsKey(ctx, ds, DK.since), tenant))
  if c then c.since[tenant] = v or false end
  return v
end

local function setSince(ctx, ds, tenant, at)
  local c = ctx.counters
  if not c then
    if at then rcall('ZADD', dsKey(ctx, ds, DK.since), fmt(at), tenant) else rcall('ZREM', dsKey(ctx, ds, DK.since), tenant) end
    return
  end
  if c.sinceDirty[tenant] == nil then c.sinceDirty[#c.sinceDirty + 1] = tenant end
  c.sinceDirty[tenant] = true
  c.since[tenant] = at or false
end

local function schedHas(ctx, ds, tenant)
  return rcall('HEXISTS', dsKey(ctx, ds, DK.tenantTiers), tenant) == 1
end

local function schedRemove(ctx, ds, tenant)
  local tier = rcall('HGET', dsKey(ctx, ds, DK.tenantTiers), tenant)
  if not tier then return nil end
  local key = dsKey(ctx, ds, DF.schedule .. tier)
  local vt = rcall('ZSCORE', key, tenant)
  rcall('ZREM', key, tenant)
  if rcall('ZCARD', key) == 0 then rcall('ZREM', dsKey(ctx, ds, DK.tiers), tier) end
  rcall('HDEL', dsKey(ctx, ds, DK.tenantTiers), tenant)
  return tonumber(vt)
end

-- Queues (or re-queues) a tenant at virtual time `vt`, in the tier its state gives it.
local function schedPut(ctx, ds, p, tenant, vt)
  schedRemove(ctx, ds, tenant)
  local since = sinceOf(ctx, ds, tenant)
  if not since then
    since = ctx.now
    setSince(ctx, ds, tenant, since)
  end
  local tier = tierOf(ctx, p, tenantPolicy(ctx, ds, p, tenant), tenantInflight(ctx, ds, tenant), since)
  rcall('ZADD', dsKey(ctx, ds, DF.schedule .. tier), fmt(vt), tenant)
  rcall('ZADD', dsKey(ctx, ds, DK.tiers), tier, tier)
  rcall('HSET', dsKey(ctx, ds, DK.tenantTiers), tenant, tier)
end

-- A queued tenant that was just served: queued again at `vt`, in one write when its tier stays.
local function schedMove(ctx, ds, p, tenant, vt)
  local tier = rcall('HGET', dsKey(ctx, ds, DK.tenantTiers), tenant)
  local since = sinceOf(ctx, ds, tenant) or ctx.now
  if tier and tonumber(tier) == tierOf(ctx, p, tenantPolicy(ctx, ds, p, tenant), tenantInflight(ctx, ds, tenant), since) then
    rcall('ZADD', dsKey(ctx, ds, DF.schedule .. tier), fmt(vt), tenant)
  else
    schedPut(ctx, ds, p, tenant, vt)
  end
end

-- The tenant to serve next: lowest tier, then lowest virtual time, then tenant id.
local function schedTop(ctx, ds)
  local tiers = rcall('ZRANGE', dsKey(ctx, ds, DK.tiers), 0, 0)
  if #tiers == 0 then return nil end
  local top = rcall('ZRANGE', dsKey(ctx, ds, DF.schedule .. tiers[1]), 0, 0, 'WITHSCORES')
  if #top == 0 then
    rcall('ZREM', dsKey(ctx, ds, DK.tiers), tiers[1])
    return schedTop(ctx, ds)
  end
  return top[1], tonumber(top[2])
end

local function schedEmpty(ctx, ds)
  return rcall('ZCARD', dsKey(ctx, ds, DK.tiers)) == 0
end

-- Reserve still owed to waiting tenants other than `except` (tenants below their reserve sit in tier 0).
local function owedReserve(ctx, ds, p, except)
  if p.k ~= 'reserved' then return 0 end
  local owed = 0
  for _, t in ipairs(rcall('ZRANGE', dsKey(ctx, ds, DF.schedule .. '0'), 0, -1)) do
    if t ~= except then
      owed = owed + math.max(0, reserveOf(p, tenantPolicy(ctx, ds, p, t)) - tenantInflight(ctx, ds, t))
    end
  end
  return owed
end

-- priority policy: tenants eligible for `ag` ms without service move ahead of every tier.
local function promoteAged(ctx, ds, p)
  if p.k ~= 'priority' or not p.ag then return end
  for _, t in ipairs(rcall('ZRANGEBYSCORE', dsKey(ctx, ds, DK.since), '-inf', fmt(ctx.now - p.ag))) do
    if rcall('HGET', dsKey(ctx, ds, DK.tenantTiers), t) ~= tostring(AGED_TIER) then
      local vt = schedRemove(ctx, ds, t)
      if vt then schedPut(ctx, ds, p, t, vt) end
    end
  end
end

-- Re-tiers a queued tenant whose in-flight count changed (reserved: below or above its reserve).
local function retier(ctx, ds, tenant)
  local p = policyOf(ctx, ds)
  if p.k ~= 'reserved' then return end
  local vt = schedRemove(ctx, ds, tenant)
  if vt then schedPut(ctx, ds, p, tenant, vt) end
end

local function gvtOf(ctx, ds)
  local c = ctx.counters
  if c and c.gvt ~= nil then return c.gvt end
  local v = tonumber(rcall('GET', dsKey(ctx, ds, DK.globalVt))) or 0
  if c then c.gvt = v end
  return v
end

local function tvtOf(ctx, ds, tenant)
  local c = ctx.counters
  if c and c.tvt[tenant] ~= nil then return c.tvt[tenant] end
  local v = tonumber(rcall('HGET', dsKey(ctx, ds, DK.tenantVt), tenant)) or 0
  if c then c.tvt[tenant] = v end
  return v
end

local function tenantVt(ctx, ds, tenant)
  return math.max(gvtOf(ctx, ds), tvtOf(ctx, ds, tenant))
end

-- The served tenant's new virtual time, and the global one (kept for the call when counters are).
local function setVirtualTimes(ctx, ds, tenant, tvt, gvt)
  local c = ctx.counters
  if not c then
    rcall('HSET', dsKey(ctx, ds, DK.tenantVt), tenant, fmt(tvt))
    rcall('SET', dsKey(ctx, ds, DK.globalVt), fmt(gvt))
    return
  end
  if not c.tvtDirty[tenant] then c.tvtDirty[#c.tvtDirty + 1] = tenant end
  c.tvtDirty[tenant] = true
  c.tvt[tenant] = tvt
  c.gvt, c.gvtDirty = gvt, true
end
