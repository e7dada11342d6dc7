--[[
  May a job start now under its quota and throttles (evaluate), and applying an admission (take;
  flushStates writes what cacheStates kept for the call). Mirrors src/core/quota.ts and
  src/core/gcra.ts operation for operation (the differential test keeps them equal).

  Keys under G:
    qs:<quota>:<tenant>      hash   quota state (quota.lua): read, and written by take / flushStates
    ths:<throttle>           string GCRA tat of a slow throttle (throttle.lua): read, and written likewise
    and, read through quota.lua and throttle.lua: qd:<tenant>, qd-default, th, th-t:<tenant>, th-any
]]
--- @include "base"
--- @include "quota"
--- @include "throttle"

local function rateOf(r, b)
  if not r then return nil end
  return r, (b or math.max(1, math.ceil(r)))
end

-- GCRA: returns true, newTat or false, retryAt.
local function gcra(tat, now, rate, burst, cost)
  local interval = 1000 / rate
  local base = math.max(tat, now)
  local nextTat = base + interval * cost
  local allowAt = base + interval * (cost - burst)
  if allowAt <= now then return true, instant(nextTat) end
  return false, instant(math.ceil(allowAt))
end

-- Keeps quota states and throttle TATs for the whole call (see quotaState); flushStates writes them.
local function cacheStates(ctx)
  ctx.states, ctx.dirty, ctx.dirtyKeys, ctx.thrTats, ctx.thrDirty = {}, {}, {}, {}, {}
end

-- A rate change converts the owed units of the old TAT to the new interval (see gcra.ts rescaleTat).
local function rescaleTat(tat, now, oldInterval, newInterval)
  if (not oldInterval) or oldInterval == newInterval or tat <= now then return tat end
  return now + ((tat - now) / oldInterval) * newInterval
end

local function usedIn(ctx, st, p)
  local window = ctx.W[p[1]][1]
  if st[p[3]] == window then return st[p[4]] end
  return 0
end

--[[
  May a job of `tenant` named `name` on `ds`, costing `cost`, start now?
  Returns a verdict table:
    { k = 'admit', q = quota, st = state, thr = { {id, tat}, ... } }
    { k = 'wait', r = reason, u = until-or-nil }
    { k = 'reject', msg = message }
]]
-- Why a job of `cost` can never be admitted under quota `q` (every start needs more than a limit
-- allows at once), or nil. A period total of 0 is a deliberate stop, not a misfit.
local function beyondQuota(q, cost)
  local head = 'cost ' .. cost .. ' is above the '
  local tail = ' of quota ' .. q.id .. ': it could never start'
  if q.c and cost > q.c then return head .. 'maxConcurrent of ' .. q.c .. tail end
  local rate, burst = rateOf(q.r, q.b)
  if rate and cost > burst then return head .. 'burst of ' .. burst .. tail end
  for _, p in ipairs(PERIODS) do
    local limit = q[p[2]]
    if limit and limit > 0 and cost > limit then return head .. p[1] .. ' total of ' .. limit .. tail end
  end
  return nil
end

local function evaluate(ctx, tenant, name, ds, cost)
  local now = ctx.now
  local q = resolveQuota(ctx, tenant, name, ds)
  local misfit = beyondQuota(q, cost)
  if misfit then return { k = 'reject', q = q, code = 'TG_ERR_COST_OVER_QUOTA', reason = 'cost-over-quota', msg = misfit } end
  local active = {}
  for _, t in ipairs(tenantThrottles(ctx, tenant)) do
    local live = (not t.u) or t.u > now
    if live and ((not t.t) or t.t == tenant) and ((not t.jt) or string.find(name, t.jt)) then
      active[#active + 1] = t
    end
  end
  for _, t in ipairs(active) do
    if t.a == 'pause' then return { k = 'wait', r = 'throttled', u = t.u } end
  end
  if q.p == 1 then return { k = 'wait', r = 'paused', q = q } end

  local st = quotaState(ctx, q.id, tenant)
  local untilT, untilR = nil, 'rate'
  for _, p in ipairs(PERIODS) do
    local limit = q[p[2]]
    if limit and usedIn(ctx, st, p) + cost > limit then
      if q.rej == 1 then
        return { k = 'reject', q = q, code = 'TG_ERR_QUOTA_EXCEEDED', reason = 'quota-exceeded',
          msg = p[1] .. ' quota of ' .. limit .. ' used up (quota ' .. q.id .. '); the window resets at ' .. ctx.W[p[1]][3] }
      end
      local e = ctx.W[p[1]][2]
      if (not untilT) or e > untilT then untilT, untilR = e, 'period' end
    end
  end
  if q.c and st.inf + cost > q.c then return { k = 'wait', r = 'concurrency', q = q } end

  local thr = {}
  for _, t in ipairs(active) do
    local rate, burst = rateOf(t.r, t.b)
    -- A slow throttle whose burst is below the cost holds the job like a pause: until it ends.
    if rate and cost > burst then return { k = 'wait', r = 'throttled', u = t.u } end
    if rate then
      local ttat = throttleTat(ctx, t.id)
      local ok, v = gcra(ttat, now, rate, burst, cost)
      if ok then thr[#thr + 1] = { t.id, v }
      elseif (not untilT) or v > untilT then untilT, untilR = v, 'throttled' end
    end
  end
  local newTat = st.tat
  local rate, burst = rateOf(q.r, q.b)
  local interval = nil
  if rate then
    interval = 1000 / rate
    local ok, v = gcra(rescaleTat(st.tat, now, st.iv, interval), now, rate, burst, cost)
    if ok then newTat = v
    elseif (not untilT) or v > untilT then untilT, untilR = v, 'rate' end
  end
  if untilT then return { k = 'wait', r = untilR, u = untilT } end
  return { k = 'admit', q = q, st = st, tat = newTat, iv = interval, thr = thr }
end

-- Applies an 'admit' verdict: takes rate tokens, a concurrency slot and period usage together.
local function take(ctx, v, cost)
  local q, st = v.q, v.st
  local fields = { tat = fmt(v.tat), inf = st.inf + cost }
  if v.iv then fields.iv = fmt(v.iv) end
  local used = {}
  for _, p in ipairs(PERIODS) do
    if q[p[2]] then
      local window = ctx.W[p[1]][1]
      used[p] = usedIn(ctx, st, p) + cost
      fields[p[3]] = fmt(window)
      fields[p[4]] = used[p]
    end
  end
  if ctx.states then
    -- Kept for the call: later jobs of the same quota see this admission; written once at the end.
    st.tat, st.inf, st.iv = v.tat, st.inf + cost, v.iv or st.iv
    for p, n in pairs(used) do st[p[3]], st[p[4]] = ctx.W[p[1]][1], n end
    local d = ctx.dirty[st.key]
    if not d then
      d = {}
      ctx.dirty[st.key] = d
      ctx.dirtyKeys[#ctx.dirtyKeys + 1] = st.key
    end
    for f, x in pairs(fields) do d[f] = x end
    for _, t in ipairs(v.thr) do
      if not ctx.thrDirty[t[1]] then ctx.thrDirty[#ctx.thrDirty + 1] = t[1] end
      ctx.thrDirty[t[1]] = true
      ctx.thrTats[t[1]] = t[2]
    end
    return
  end
  local flat = {}
  for f, x in pairs(fields) do
    flat[#flat + 1] = f
    flat[#flat + 1] = x
  end
  rcall('HSET', st.key, unpack(flat))
  for _, t in ipairs(v.thr) do rcall('SET', ctx.G .. GF.throttleState .. t[1], fmt(t[2])) end
end

-- Writes the quota states and throttle TATs take() kept for the call (cacheStates).
local function flushStates(ctx)
  if not ctx.states then return end
  for _, key in ipairs(ctx.dirtyKeys) do
    local flat = {}
    for f, x in pairs(ctx.dirty[key]) do
      flat[#flat + 1] = f
      flat[#flat + 1] = x
    end
    rcall('HSET', key, unpack(flat))
  end
  for _, id in ipairs(ctx.thrDirty) do rcall('SET', ctx.G .. GF.throttleState .. id, fmt(ctx.thrTats[id])) end
  ctx.dirty, ctx.dirtyKeys, ctx.thrDirty = {}, {}, {}
end
