--[[
  Shared governance logic: which quota governs a job, may it start now, and the waiting place.

  Mirrors src/core/quota.ts and src/core/gcra.ts operation for operation (the differential test
  keeps them equal). All keys live under one governance prefix G (one hash tag), given by the caller.

  Keys under G:
    qd:<tenant>              hash   quota id -> cjson definition of the tenant's quotas
    qd-default               string cjson definition of the default quota
    qs:<quota>:<tenant>      hash   quota state: tat, inf, hw/hn, dw/dn, mw/mn (window start, used)
    th                       hash   throttle id -> cjson definition
    th-t:<tenant>, th-any    set    throttle ids by tenant (th-any: throttles for every tenant)
    ths:<throttle>           string GCRA tat of a slow throttle
    rec:<id>                 hash   a job's decision record (and its payload while waiting)
    seq                      string arrival counter of waiting jobs
    ds:<d>:inflight          zset   admitted, unfinished job ids -> admission time
    ds:<d>:promoting         zset   admitted from the waiting place, add not yet confirmed -> lease end
    ds:<d>:stats             hash   counters
    ds:<d>:f:<flow>          zset   a flow's waiting job ids -> priority * 2^32 + arrival
    ds:<d>:fl:<tenant>       set    the tenant's flows that have waiting jobs
    ds:<d>:fst               hash   flow -> 'e' eligible | 't|<reason>|<until>' timer | 'p|<reason>' parked
    ds:<d>:tf:<tenant>       zset   the tenant's eligible flows -> head job score
    ds:<d>:sched             zset   tenants with an eligible flow -> virtual time (fair queuing)
    ds:<d>:tvt               hash   tenant -> virtual time it reached
    ds:<d>:gvt               string virtual time of the last admission
    ds:<d>:timers            zset   flows waiting for a time -> that time
    ds:<d>:pk:<tenant>       set    the tenant's flows parked until an event (release, resume, removal)
    ds:<d>:wc                hash   tenant -> waiting jobs
  A flow is (tenant, job name) within a downstream: every job of a flow is governed alike, so the head
  job speaks for the whole flow and a blocked flow never blocks the tenant's other job types.
]]
local rcall = redis.call

local function fmt(n)
  return string.format('%.17g', n)
end

-- The ranges the API and the config file enforce (src/contracts/limits.ts). Definitions stored before
-- those checks existed are clamped to them when read, so no computed instant is infinite or NaN and
-- no script stops part-way on a value Redis refuses.
local MIN_RATE = 1e-6
local MIN_WEIGHT = 1e-3
-- The latest instant a JavaScript Date can hold (ms): every computed time is clamped to it.
local MAX_INSTANT = 8.64e15

local function clampRate(d)
  if d.r and not (d.r >= MIN_RATE) then d.r = MIN_RATE end
  return d
end

local function instant(t)
  if t ~= t or t > MAX_INSTANT then return MAX_INSTANT end
  return t
end

-- Context shared by one script call: prefix, clock, period windows and per-call caches.
-- Windows: start, end (ms) and end as ISO text (for messages), per period.
local function newContext(G, now, hs, he, hiso, dws, dwe, diso, ms, me, miso)
  return {
    G = G,
    now = now,
    W = { hour = { hs, he, hiso }, day = { dws, dwe, diso }, month = { ms, me, miso } },
    quotas = {},
    throttles = {},
    default = nil,
  }
end

local function dsKey(ctx, ds, suffix)
  return ctx.G .. 'ds:' .. ds .. ':' .. suffix
end

local function defaultQuota(ctx)
  if not ctx.default then
    local raw = rcall('GET', ctx.G .. 'qd-default')
    ctx.default = raw and clampRate(cjson.decode(raw)) or { id = 'default', sp = -1, rej = 0, p = 0 }
  end
  return ctx.default
end

local function tenantQuotas(ctx, tenant)
  local list = ctx.quotas[tenant]
  if not list then
    list = {}
    local raw = rcall('HGETALL', ctx.G .. 'qd:' .. tenant)
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

local function tenantThrottles(ctx, tenant)
  local list = ctx.throttles[tenant]
  if ctx.anyThrottles == nil then ctx.anyThrottles = rcall('EXISTS', ctx.G .. 'th') == 1 end
  if not list and not ctx.anyThrottles then
    list = {}
    ctx.throttles[tenant] = list
  elseif not list then
    list = {}
    local ids = rcall('SUNION', ctx.G .. 'th-t:' .. tenant, ctx.G .. 'th-any')
    for _, id in ipairs(ids) do
      local raw = rcall('HGET', ctx.G .. 'th', id)
      if raw then list[#list + 1] = clampRate(cjson.decode(raw)) end
    end
    ctx.throttles[tenant] = list
  end
  return list
end

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

local PERIODS = { { 'hour', 'h', 'hw', 'hn' }, { 'day', 'd', 'dw', 'dn' }, { 'month', 'm', 'mw', 'mn' } }

-- A quota state as stored. In a script that admits several jobs (intake, drain) the states are kept
-- in ctx.states for the call: read once, changed in place by take(), written once by flushStates().
local function quotaState(ctx, qid, tenant)
  local key = ctx.G .. 'qs:' .. qid .. ':' .. tenant
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

-- A slow throttle's GCRA TAT (cached for the call like quota states).
local function throttleTat(ctx, id)
  if ctx.states and ctx.thrTats[id] then return ctx.thrTats[id] end
  local tat = tonumber(rcall('GET', ctx.G .. 'ths:' .. id)) or 0
  if ctx.states then ctx.thrTats[id] = tat end
  return tat
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
  for _, t in ipairs(v.thr) do rcall('SET', ctx.G .. 'ths:' .. t[1], fmt(t[2])) end
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
  for _, id in ipairs(ctx.thrDirty) do rcall('SET', ctx.G .. 'ths:' .. id, fmt(ctx.thrTats[id])) end
  ctx.dirty, ctx.dirtyKeys, ctx.thrDirty = {}, {}, {}
end

-- Returns a slot of quota `qid` for `tenant` (a job ended).
local function giveBack(ctx, qid, tenant, cost)
  local key = ctx.G .. 'qs:' .. qid .. ':' .. tenant
  local left = rcall('HINCRBY', key, 'inf', -cost)
  if left < 0 then rcall('HSET', key, 'inf', 0) end
end

------------------------------------------------------------------------------------------------
-- Circuit breaker, as the scheduler sees it (the state machine runs in src/core/breaker.ts)
------------------------------------------------------------------------------------------------

-- st: 'closed' | 'open' | 'half-open' (observe-only breakers always read as closed), gen, probes allowed
-- in half-open, and when it last closed (held jobs replay under a capacity ramp from then).
local function breakerOf(ctx, ds)
  ctx.breakers = ctx.breakers or {}
  local b = ctx.breakers[ds]
  if not b then
    local v = rcall('HMGET', dsKey(ctx, ds, 'brk'), 'st', 'gen', 'obs', 'probes', 'closedAt', 'ramp')
    b = { st = v[1] or 'closed', gen = tonumber(v[2]) or 1, obs = v[3] == '1', probes = tonumber(v[4]) or 0,
      closedAt = tonumber(v[5]), ramp = tonumber(v[6]) or 0 }
    if b.obs then b.st = 'closed' end
    ctx.breakers[ds] = b
  end
  return b
end

-- Probes still allowed in the breaker's current half-open generation.
local function probesLeft(ctx, ds, b)
  return b.probes - (tonumber(rcall('GET', dsKey(ctx, ds, 'probed:' .. b.gen))) or 0)
end

------------------------------------------------------------------------------------------------
-- Allocation policy (mirrors src/core/policy.ts)
------------------------------------------------------------------------------------------------

-- The policy of a downstream: kind, capacity (an adaptive capacity overrides it), defaults, aging.
local function policyOf(ctx, ds, fallbackCapacity)
  ctx.policies = ctx.policies or {}
  local p = ctx.policies[ds]
  if not p then
    local v = rcall('HMGET', dsKey(ctx, ds, 'pol'), 'k', 'cap', 'dw', 'dt', 'ag')
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
    local adaptive = tonumber(rcall('GET', dsKey(ctx, ds, 'cap')))
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
    local raw = rcall('HGET', dsKey(ctx, ds, 'pol-t'), tenant)
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

-- The scheduler's counters, kept for one drain call (cacheCounters; one downstream per call): the
-- counters it changes with every admission (capacity used and per tenant, waiting counts, virtual
-- times, when tenants were served, admissions, wait samples, in-flight and lease entries) are read
-- once, changed here, and written once by flushCounters. Other scripts read and write Redis directly.
local function cacheCounters(ctx)
  ctx.counters = { tin = {}, tinDelta = {}, tinTenants = {}, usedDelta = 0, wc = {}, wcTenants = {}, wtotal = 0,
    tvt = {}, tvtDirty = {}, since = {}, sinceDirty = {}, adm = {}, admTenants = {}, waits = {}, waitTenants = {},
    inflight = {}, promoting = {} }
end

-- The cached counter `map[tenant]`, created as `init` on first use and `tenant` listed in `order` (the
-- order flushCounters writes them in).
local function counterFor(map, order, tenant, init)
  local v = map[tenant]
  if v == nil then
    v = init
    map[tenant] = v
    order[#order + 1] = tenant
  end
  return v
end

local function tenantInflight(ctx, ds, tenant)
  local c = ctx.counters
  if not c then return tonumber(rcall('HGET', dsKey(ctx, ds, 'tin'), tenant)) or 0 end
  local v = c.tin[tenant]
  if v == nil then
    v = tonumber(rcall('HGET', dsKey(ctx, ds, 'tin'), tenant)) or 0
    c.tin[tenant] = v
  end
  return v
end

local function usedOf(ctx, ds)
  local c = ctx.counters
  if not c then return tonumber(rcall('GET', dsKey(ctx, ds, 'used'))) or 0 end
  if c.used == nil then c.used = tonumber(rcall('GET', dsKey(ctx, ds, 'used'))) or 0 end
  return c.used
end

-- When the tenant was last served or became eligible (nil: it is not queued).
local function sinceOf(ctx, ds, tenant)
  local c = ctx.counters
  if c and c.since[tenant] ~= nil then return c.since[tenant] or nil end
  local v = tonumber(rcall('ZSCORE', dsKey(ctx, ds, 'since'), tenant))
  if c then c.since[tenant] = v or false end
  return v
end

local function setSince(ctx, ds, tenant, at)
  local c = ctx.counters
  if not c then
    if at then rcall('ZADD', dsKey(ctx, ds, 'since'), fmt(at), tenant) else rcall('ZREM', dsKey(ctx, ds, 'since'), tenant) end
    return
  end
  if c.sinceDirty[tenant] == nil then c.sinceDirty[#c.sinceDirty + 1] = tenant end
  c.sinceDirty[tenant] = true
  c.since[tenant] = at or false
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

-- Takes a job's cost from the downstream's capacity and the tenant's share of it.
local function chargeCapacity(ctx, ds, tenant, cost)
  local c = ctx.counters
  if not c then
    rcall('INCRBY', dsKey(ctx, ds, 'used'), cost)
    rcall('HINCRBY', dsKey(ctx, ds, 'tin'), tenant, cost)
    return
  end
  c.used = usedOf(ctx, ds) + cost
  c.tin[tenant] = tenantInflight(ctx, ds, tenant) + cost
  c.usedDelta = c.usedDelta + cost
  c.tinDelta[tenant] = counterFor(c.tinDelta, c.tinTenants, tenant, 0) + cost
end

local function refundCapacity(ctx, ds, tenant, cost)
  if rcall('DECRBY', dsKey(ctx, ds, 'used'), cost) < 0 then rcall('SET', dsKey(ctx, ds, 'used'), 0) end
  if rcall('HINCRBY', dsKey(ctx, ds, 'tin'), tenant, -cost) <= 0 then rcall('HDEL', dsKey(ctx, ds, 'tin'), tenant) end
end

------------------------------------------------------------------------------------------------
-- The scheduler's queue of tenants: one zset per tier (score = virtual time), plus the set of
-- non-empty tiers, so the next tenant is two lookups away whatever the number of tenants.
--   ds:<d>:sched:<tier>  zset  tenants eligible in that tier -> virtual time
--   ds:<d>:tiers         zset  non-empty tiers -> tier
--   ds:<d>:stier         hash  tenant -> its tier now
--   ds:<d>:since         zset  tenant -> when it became eligible or was last served (aging)
------------------------------------------------------------------------------------------------

local function schedHas(ctx, ds, tenant)
  return rcall('HEXISTS', dsKey(ctx, ds, 'stier'), tenant) == 1
end

local function schedRemove(ctx, ds, tenant)
  local tier = rcall('HGET', dsKey(ctx, ds, 'stier'), tenant)
  if not tier then return nil end
  local key = dsKey(ctx, ds, 'sched:' .. tier)
  local vt = rcall('ZSCORE', key, tenant)
  rcall('ZREM', key, tenant)
  if rcall('ZCARD', key) == 0 then rcall('ZREM', dsKey(ctx, ds, 'tiers'), tier) end
  rcall('HDEL', dsKey(ctx, ds, 'stier'), tenant)
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
  rcall('ZADD', dsKey(ctx, ds, 'sched:' .. tier), fmt(vt), tenant)
  rcall('ZADD', dsKey(ctx, ds, 'tiers'), tier, tier)
  rcall('HSET', dsKey(ctx, ds, 'stier'), tenant, tier)
end

-- A queued tenant that was just served: queued again at `vt`, in one write when its tier stays.
local function schedMove(ctx, ds, p, tenant, vt)
  local tier = rcall('HGET', dsKey(ctx, ds, 'stier'), tenant)
  local since = sinceOf(ctx, ds, tenant) or ctx.now
  if tier and tonumber(tier) == tierOf(ctx, p, tenantPolicy(ctx, ds, p, tenant), tenantInflight(ctx, ds, tenant), since) then
    rcall('ZADD', dsKey(ctx, ds, 'sched:' .. tier), fmt(vt), tenant)
  else
    schedPut(ctx, ds, p, tenant, vt)
  end
end

-- The tenant to serve next: lowest tier, then lowest virtual time, then tenant id.
local function schedTop(ctx, ds)
  local tiers = rcall('ZRANGE', dsKey(ctx, ds, 'tiers'), 0, 0)
  if #tiers == 0 then return nil end
  local top = rcall('ZRANGE', dsKey(ctx, ds, 'sched:' .. tiers[1]), 0, 0, 'WITHSCORES')
  if #top == 0 then
    rcall('ZREM', dsKey(ctx, ds, 'tiers'), tiers[1])
    return schedTop(ctx, ds)
  end
  return top[1], tonumber(top[2])
end

local function schedEmpty(ctx, ds)
  return rcall('ZCARD', dsKey(ctx, ds, 'tiers')) == 0
end

-- Reserve still owed to waiting tenants other than `except` (tenants below their reserve sit in tier 0).
local function owedReserve(ctx, ds, p, except)
  if p.k ~= 'reserved' then return 0 end
  local owed = 0
  for _, t in ipairs(rcall('ZRANGE', dsKey(ctx, ds, 'sched:0'), 0, -1)) do
    if t ~= except then
      owed = owed + math.max(0, reserveOf(p, tenantPolicy(ctx, ds, p, t)) - tenantInflight(ctx, ds, t))
    end
  end
  return owed
end

-- priority policy: tenants eligible for `ag` ms without service move ahead of every tier.
local function promoteAged(ctx, ds, p)
  if p.k ~= 'priority' or not p.ag then return end
  for _, t in ipairs(rcall('ZRANGEBYSCORE', dsKey(ctx, ds, 'since'), '-inf', fmt(ctx.now - p.ag))) do
    if rcall('HGET', dsKey(ctx, ds, 'stier'), t) ~= tostring(AGED_TIER) then
      local vt = schedRemove(ctx, ds, t)
      if vt then schedPut(ctx, ds, p, t, vt) end
    end
  end
end

------------------------------------------------------------------------------------------------
-- The waiting place
------------------------------------------------------------------------------------------------

local function flowOf(tenant, name)
  return tenant .. '/' .. name
end

local function splitFlow(flow)
  local i = string.find(flow, '/', 1, true)
  return string.sub(flow, 1, i - 1), string.sub(flow, i + 1)
end

local function gvtOf(ctx, ds)
  local c = ctx.counters
  if c and c.gvt ~= nil then return c.gvt end
  local v = tonumber(rcall('GET', dsKey(ctx, ds, 'gvt'))) or 0
  if c then c.gvt = v end
  return v
end

local function tvtOf(ctx, ds, tenant)
  local c = ctx.counters
  if c and c.tvt[tenant] ~= nil then return c.tvt[tenant] end
  local v = tonumber(rcall('HGET', dsKey(ctx, ds, 'tvt'), tenant)) or 0
  if c then c.tvt[tenant] = v end
  return v
end

local function tenantVt(ctx, ds, tenant)
  return math.max(gvtOf(ctx, ds), tvtOf(ctx, ds, tenant))
end

-- Puts a flow that has waiting jobs into the eligible set, in its tenant's order and the scheduler's.
local function makeEligible(ctx, ds, flow)
  local tenant = splitFlow(flow)
  local head = rcall('ZRANGE', dsKey(ctx, ds, 'f:' .. flow), 0, 0, 'WITHSCORES')
  if #head == 0 then return false end
  rcall('ZREM', dsKey(ctx, ds, 'timers'), flow)
  rcall('SREM', dsKey(ctx, ds, 'pk:' .. tenant), flow)
  rcall('HSET', dsKey(ctx, ds, 'fst'), flow, 'e')
  rcall('ZADD', dsKey(ctx, ds, 'tf:' .. tenant), head[2], flow)
  if not schedHas(ctx, ds, tenant) then
    schedPut(ctx, ds, policyOf(ctx, ds), tenant, tenantVt(ctx, ds, tenant))
  end
  return true
end

local function leaveSchedIfIdle(ctx, ds, tenant)
  if rcall('ZCARD', dsKey(ctx, ds, 'tf:' .. tenant)) == 0 then
    schedRemove(ctx, ds, tenant)
    setSince(ctx, ds, tenant, nil)
  end
end

-- Takes a flow out of the eligible set until `untilT` (a timer) or an event (parked).
local function blockFlow(ctx, ds, flow, reason, untilT)
  local tenant = splitFlow(flow)
  rcall('ZREM', dsKey(ctx, ds, 'tf:' .. tenant), flow)
  leaveSchedIfIdle(ctx, ds, tenant)
  if untilT then
    rcall('ZADD', dsKey(ctx, ds, 'timers'), fmt(untilT), flow)
    rcall('HSET', dsKey(ctx, ds, 'fst'), flow, 't|' .. reason .. '|' .. fmt(untilT))
  else
    rcall('SADD', dsKey(ctx, ds, 'pk:' .. tenant), flow)
    rcall('HSET', dsKey(ctx, ds, 'fst'), flow, 'p|' .. reason)
  end
end

-- A tenant at its own limit of the policy: all its eligible flows wait for one of its jobs to end.
local function parkTenant(ctx, ds, tenant, reason)
  for _, flow in ipairs(rcall('ZRANGE', dsKey(ctx, ds, 'tf:' .. tenant), 0, -1)) do
    blockFlow(ctx, ds, flow, reason, nil)
  end
  leaveSchedIfIdle(ctx, ds, tenant)
end

-- After a flow's head left (admitted or refused): re-rank the flow, or forget it if empty.
local function afterHeadLeft(ctx, ds, flow)
  local tenant = splitFlow(flow)
  local f = dsKey(ctx, ds, 'f:' .. flow)
  local head = rcall('ZRANGE', f, 0, 0, 'WITHSCORES')
  local tf = dsKey(ctx, ds, 'tf:' .. tenant)
  if #head == 0 then
    rcall('ZREM', tf, flow)
    rcall('SREM', dsKey(ctx, ds, 'fl:' .. tenant), flow)
    rcall('HDEL', dsKey(ctx, ds, 'fst'), flow)
    rcall('ZREM', dsKey(ctx, ds, 'timers'), flow)
    rcall('SREM', dsKey(ctx, ds, 'pk:' .. tenant), flow)
  elseif rcall('ZSCORE', tf, flow) then
    -- Still eligible with jobs left: the tenant has an eligible flow, nothing to leave.
    rcall('ZADD', tf, head[2], flow)
    return
  end
  leaveSchedIfIdle(ctx, ds, tenant)
end

-- Makes every waiting flow of `tenant` on `ds` eligible again (after a release or a change).
-- onlyParked: wake only flows parked until an event (a release frees a slot; timers stay).
local function wakeTenant(ctx, ds, tenant, onlyParked)
  local flows
  if onlyParked then
    flows = rcall('SMEMBERS', dsKey(ctx, ds, 'pk:' .. tenant))
  else
    flows = rcall('SMEMBERS', dsKey(ctx, ds, 'fl:' .. tenant))
  end
  local n = 0
  for _, flow in ipairs(flows) do
    if rcall('HGET', dsKey(ctx, ds, 'fst'), flow) ~= 'e' and makeEligible(ctx, ds, flow) then n = n + 1 end
  end
  return n
end

-- Re-tiers a queued tenant whose in-flight count changed (reserved: below or above its reserve).
local function retier(ctx, ds, tenant)
  local p = policyOf(ctx, ds)
  if p.k ~= 'reserved' then return end
  local vt = schedRemove(ctx, ds, tenant)
  if vt then schedPut(ctx, ds, p, tenant, vt) end
end

local function split(s, sep)
  local out = {}
  if s == '' then return out end
  for part in string.gmatch(s, '([^' .. sep .. ']+)') do out[#out + 1] = part end
  return out
end

-- Admissions per tenant per minute (cost units), for shares, fairness and estimates. Kept 15 minutes.
local function countAdmission(ctx, ds, tenant, cost)
  local c = ctx.counters
  if c then
    c.adm[tenant] = counterFor(c.adm, c.admTenants, tenant, 0) + cost
    return
  end
  local minute = ctx.now - (ctx.now % 60000)
  local key = dsKey(ctx, ds, 'adm:' .. fmt(minute))
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
  local key = dsKey(ctx, ds, 'waits:' .. tenant)
  rcall('LPUSH', key, fmt(ctx.now) .. ':' .. math.floor(waited))
  rcall('LTRIM', key, 0, 199)
end

-- One job left the waiting place of `tenant` on `ds` (and the shedding index, if it was in it).
local function decWaiting(ctx, ds, tenant, id)
  local c = ctx.counters
  if c then
    c.wc[tenant] = counterFor(c.wc, c.wcTenants, tenant, 0) - 1
    c.wtotal = c.wtotal - 1
    if id then rcall('ZREM', dsKey(ctx, ds, 'bypri'), id) end
    return
  end
  local key = dsKey(ctx, ds, 'wc')
  if rcall('HINCRBY', key, tenant, -1) <= 0 then rcall('HDEL', key, tenant) end
  if rcall('DECR', dsKey(ctx, ds, 'wtotal')) < 0 then rcall('SET', dsKey(ctx, ds, 'wtotal'), 0) end
  if id then rcall('ZREM', dsKey(ctx, ds, 'bypri'), id) end
end

-- Writes what cacheCounters kept for the call: each counter once, with the same end state as the
-- per-admission writes (wait samples pushed in admission order, so the newest is first).
local function flushCounters(ctx, ds)
  local c = ctx.counters
  if not c then return end
  ctx.counters = nil
  if c.usedDelta ~= 0 then rcall('INCRBY', dsKey(ctx, ds, 'used'), c.usedDelta) end
  for _, t in ipairs(c.tinTenants) do rcall('HINCRBY', dsKey(ctx, ds, 'tin'), t, c.tinDelta[t]) end
  for _, t in ipairs(c.wcTenants) do
    if rcall('HINCRBY', dsKey(ctx, ds, 'wc'), t, c.wc[t]) <= 0 then rcall('HDEL', dsKey(ctx, ds, 'wc'), t) end
  end
  if c.wtotal ~= 0 and rcall('INCRBY', dsKey(ctx, ds, 'wtotal'), c.wtotal) < 0 then rcall('SET', dsKey(ctx, ds, 'wtotal'), 0) end
  if c.gvtDirty then rcall('SET', dsKey(ctx, ds, 'gvt'), fmt(c.gvt)) end
  for _, t in ipairs(c.tvtDirty) do rcall('HSET', dsKey(ctx, ds, 'tvt'), t, fmt(c.tvt[t])) end
  for _, t in ipairs(c.sinceDirty) do
    if c.since[t] then rcall('ZADD', dsKey(ctx, ds, 'since'), fmt(c.since[t]), t) else rcall('ZREM', dsKey(ctx, ds, 'since'), t) end
  end
  for _, t in ipairs(c.admTenants) do countAdmission(ctx, ds, t, c.adm[t]) end
  for _, t in ipairs(c.waitTenants) do
    local key = dsKey(ctx, ds, 'waits:' .. t)
    rcall('LPUSH', key, unpack(c.waits[t]))
    rcall('LTRIM', key, 0, 199)
  end
  if #c.inflight > 0 then rcall('ZADD', dsKey(ctx, ds, 'inflight'), unpack(c.inflight)) end
  if #c.promoting > 0 then rcall('ZADD', dsKey(ctx, ds, 'promoting'), unpack(c.promoting)) end
end

-- The served tenant's new virtual time, and the global one (kept for the call when counters are).
local function setVirtualTimes(ctx, ds, tenant, tvt, gvt)
  local c = ctx.counters
  if not c then
    rcall('HSET', dsKey(ctx, ds, 'tvt'), tenant, fmt(tvt))
    rcall('SET', dsKey(ctx, ds, 'gvt'), fmt(gvt))
    return
  end
  if not c.tvtDirty[tenant] then c.tvtDirty[#c.tvtDirty + 1] = tenant end
  c.tvtDirty[tenant] = true
  c.tvt[tenant] = tvt
  c.gvt, c.gvtDirty = gvt, true
end

-- Reads the context arguments every governance script starts with: G, now, retention, 9 window values.
local function contextFromArgs()
  local ctx = newContext(ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6],
    tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9], tonumber(ARGV[10]), tonumber(ARGV[11]), ARGV[12])
  ctx.retention = tonumber(ARGV[3])
  return ctx
end
local CONTEXT_ARGS = 12

-- Records a refusal (dead-letter) in the job's record and the counters, once. A job refused from the
-- waiting place has no ingress job left to retry its dead-letter add, so it gets a lease like a
-- promotion (`leaseUntil`): the payload stays until the add is confirmed (confirm-1.lua), and an
-- expired lease returns it from the next drain.
local function recordDead(ctx, id, ds, tenant, reason, code, msg, leaseUntil)
  local rec = ctx.G .. 'rec:' .. id
  rcall('HSET', rec, 'st', 'dead', 'reason', reason, 'code', code, 'msg', msg, 'at', fmt(ctx.now))
  if tenant and tenant ~= '' then rcall('HSET', rec, 't', tenant) end
  if ds and ds ~= '' then rcall('HSET', rec, 'ds', ds) end
  if leaseUntil then
    rcall('ZADD', dsKey(ctx, ds, 'dlpending'), fmt(leaseUntil), id)
  else
    rcall('HDEL', rec, 'p')
  end
  rcall('PEXPIRE', rec, ctx.retention)
  local stats = (ds and ds ~= '') and dsKey(ctx, ds, 'stats') or (ctx.G .. 'unrouted:stats')
  rcall('HINCRBY', stats, 'dead:' .. reason, 1)
end
