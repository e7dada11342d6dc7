--[[
  Allocation policy (mirrors src/core/policy.ts): a downstream's policy and capacity in force, a
  tenant's parameters in it (weight, tier, reserve, borrow limit, max share), admissible and the cost
  a policy could never admit.

  Keys under G:
    ds:<d>:pol               hash   k (kind), cap (configured capacity), dw / dt (default weight / tier), ag (aging, ms)
    ds:<d>:pol-t             hash   tenant -> cjson of its parameters: w, tier, r, bl, ms
    ds:<d>:cap               string adaptive capacity in force (overrides pol cap)
    and, read through breaker.lua (the capacity ramp after a breaker closed): ds:<d>:brk
]]
--- @include "base"
--- @include "breaker"

-- The policy of a downstream: kind, capacity (an adaptive capacity overrides it), defaults, aging.
local function policyOf(ctx, ds, fallbackCapacity)
  ctx.policies = ctx.policies or {}
  local p = ctx.policies[ds]
  if not p then
    local v = rcall('HMGET', dsKey(ctx, ds, DK.policy), 'k', 'cap', 'dw', 'dt', 'ag')
    p = {
      k = v[1] or 'proportional',
      cap = tonumber(v[2]) or tonumber(fallbackCapacity) or 0,
      dw = tonumber(v[3]) or 1,
      dt = tonumber(v[4]) or 1,
      ag = tonumber(v[5]),
      t = {},
    }
    -- ceil: the configured capacity; cap: what is in force now (adaptive capacity, the ramp).
    p.ceil = p.cap
    local adaptive = tonumber(rcall('GET', dsKey(ctx, ds, DK.adaptiveCapacity)))
    if adaptive then p.cap = adaptive end
    -- After a breaker closes, capacity ramps up so held jobs replay without a stampede.
    local b = breakerOf(ctx, ds)
    if b.st == 'closed' and b.closedAt and b.ramp > 0 and ctx.now - b.closedAt < b.ramp then
      p.cap = math.min(p.cap, math.max(b.probes, math.floor(p.cap * (ctx.now - b.closedAt) / b.ramp)))
    end
    ctx.policies[ds] = p
  end
  return p
end

-- A tenant's parameters in a policy: w weight, tier, r reserve, bl borrow limit, ms max share.
local function tenantPolicy(ctx, ds, p, tenant)
  local tp = p.t[tenant]
  if tp == nil then
    local raw = rcall('HGET', dsKey(ctx, ds, DK.policyTenants), tenant)
    tp = raw and cjson.decode(raw) or false
    p.t[tenant] = tp
  end
  return tp or {}
end

local function weightOf(p, tp)
  return math.max(tp.w or p.dw, MIN_WEIGHT)
end

local function reserveOf(p, tp)
  if p.k == 'reserved' then return tp.r or 0 end
  return 0
end

local AGED_TIER = -1

local function tierOf(ctx, p, tp, inflight, since)
  if p.k == 'priority' then
    if p.ag and ctx.now - since >= p.ag then return AGED_TIER end
    return tp.tier or p.dt
  end
  if p.k == 'reserved' then
    if inflight < reserveOf(p, tp) then return 0 end
    return 1
  end
  return 0
end

-- May the tenant start a job of `cost` now? 'yes' | 'capacity' (the downstream is full for everyone
-- waiting) | 'share' / 'borrow' (this tenant is at its own limit: park it until one of its jobs ends).
-- Capacity in force may be below the configured one (adaptive capacity, the ramp after a breaker
-- closed): a job that fits the configured capacity but not the one in force runs alone, once nothing
-- else is in flight, instead of waiting for a raise that needs completions to come. Without adaptive
-- capacity or a ramp cap == ceil, and this is src/core/policy.ts admissible, rule for rule.
local function fits(p, used, cost, extra)
  return used + cost + extra <= p.cap or (used == 0 and cost + extra <= p.ceil)
end

local function admissible(p, tp, inflight, cost, used, owed)
  if tp.ms then
    if inflight + cost > math.floor(tp.ms * p.cap) and not (inflight == 0 and cost <= math.floor(tp.ms * p.ceil)) then return 'share' end
  end
  if p.k == 'unlimited' then return 'yes' end
  if p.k == 'reserved' then
    local reserve = reserveOf(p, tp)
    if inflight + cost <= reserve then
      if fits(p, used, cost, 0) then return 'yes' end
      return 'capacity'
    end
    if tp.bl and math.max(0, inflight + cost - reserve) > tp.bl then return 'borrow' end
    if fits(p, used, cost, owed) then return 'yes' end
    return 'capacity'
  end
  if fits(p, used, cost, 0) then return 'yes' end
  return 'capacity'
end

-- Why a job of `cost` can never be admitted for this tenant under the policy (it needs more than the
-- configured capacity, the tenant's max share of it, or its reserve plus borrow limit), or nil.
-- Mirrors src/core/policy.ts costCeiling.
local function beyondPolicy(p, tp, ds, cost)
  local limit, what = nil, nil
  if p.k ~= 'unlimited' then limit, what = p.ceil, 'the capacity of ' .. ds end
  if tp.ms then
    local share = math.floor(tp.ms * p.ceil)
    if not limit or share < limit then limit, what = share, 'its max share of ' .. ds .. ' (' .. tostring(tp.ms) .. ' of ' .. p.ceil .. ')' end
  end
  if p.k == 'reserved' and tp.bl then
    local most = reserveOf(p, tp) + tp.bl
    if not limit or most < limit then limit, what = most, 'its reserve plus borrow limit on ' .. ds end
  end
  if limit and cost > limit then
    return 'cost ' .. cost .. ' is above ' .. what .. ', ' .. limit .. ' units: ' .. ds .. ' could never admit it'
  end
  return nil
end
