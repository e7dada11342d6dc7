--[[
  Which quota governs a job and the quota state as stored (the admission decision itself is in
  evaluate.lua). Mirrors src/core/quota.ts operation for operation (the differential test keeps them
  equal).

  Keys under G:
    qd:<tenant>              hash   quota id -> cjson definition of the tenant's quotas
    qd-default               string cjson definition of the default quota
    qs:<quota>:<tenant>      hash   quota state: tat, iv (emission interval tat was computed at), inf (in
                                    flight), hw/hn, dw/dn, mw/mn (window start, used, per period)
]]
--- @include "base"

local function defaultQuota(ctx)
  if not ctx.default then
    local raw = rcall('GET', ctx.G .. GK.quotaDefault)
    ctx.default = raw and clampRate(cjson.decode(raw)) or { id = 'default', sp = -1, rej = 0, p = 0 }
  end
  return ctx.default
end

local function tenantQuotas(ctx, tenant)
  local list = ctx.quotas[tenant]
  if not list then
    list = {}
    local raw = rcall('HGETALL', ctx.G .. GF.quotaDefs .. tenant)
    for i = 2, #raw, 2 do list[#list + 1] = clampRate(cjson.decode(raw[i])) end
    ctx.quotas[tenant] = list
  end
  return list
end

local function idNumber(id)
  return tonumber(string.sub(id, 2)) or 0
end

-- The most specific matching quota (see src/core/quota.ts for the rule).
local function resolveQuota(ctx, tenant, name, ds)
  local best, bestSpec = nil, nil
  for _, d in ipairs(tenantQuotas(ctx, tenant)) do
    local ok = true
    if d.ds and d.ds ~= ds then ok = false end
    if ok and d.jt and not string.find(name, d.jt) then ok = false end
    if ok then
      if (not best) or d.sp > bestSpec or (d.sp == bestSpec and idNumber(d.id) < idNumber(best.id)) then
        best, bestSpec = d, d.sp
      end
    end
  end
  return best or defaultQuota(ctx)
end

local PERIODS = { { 'hour', 'h', 'hw', 'hn' }, { 'day', 'd', 'dw', 'dn' }, { 'month', 'm', 'mw', 'mn' } }

-- A quota state as stored. In a script that admits several jobs (intake, drain) the states are kept
-- in ctx.states for the call: read once, changed in place by take(), written once by flushStates().
local function quotaState(ctx, qid, tenant)
  local key = ctx.G .. GF.quotaState .. qid .. ':' .. tenant
  local cached = ctx.states and ctx.states[key]
  if cached then return cached end
  local v = rcall('HMGET', key, 'tat', 'inf', 'hw', 'hn', 'dw', 'dn', 'mw', 'mn', 'iv')
  local st = {
    key = key,
    tat = tonumber(v[1]) or 0,
    inf = tonumber(v[2]) or 0,
    hw = tonumber(v[3]), hn = tonumber(v[4]) or 0,
    dw = tonumber(v[5]), dn = tonumber(v[6]) or 0,
    mw = tonumber(v[7]), mn = tonumber(v[8]) or 0,
    iv = tonumber(v[9]),
  }
  if ctx.states then ctx.states[key] = st end
  return st
end

-- Returns a slot of quota `qid` for `tenant` (a job ended).
local function giveBack(ctx, qid, tenant, cost)
  local key = ctx.G .. GF.quotaState .. qid .. ':' .. tenant
  local left = rcall('HINCRBY', key, 'inf', -cost)
  if left < 0 then rcall('HSET', key, 'inf', 0) end
end
