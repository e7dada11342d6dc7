--[[
  Shared by every governance script: number formatting, the clamps on stored definitions, the call
  context (prefix, clock, period windows, per-call caches) and small helpers. All keys live under one
  governance prefix G (one hash tag), given by the caller; a downstream d's keys are G .. 'ds:<d>:' ..
  suffix (dsKey). Each concern has an include of its own, which names the keys its functions read or
  write and includes what it needs (the loader inlines each include once per script):
    quota       which quota governs a job, its stored state, giving a slot back
    throttle    the throttles that apply to a tenant, a slow throttle's TAT
    evaluate    may a job start now under its quota and throttles (GCRA), and taking what it starts with
    breaker     a downstream's circuit breaker, as the scheduler sees it
    policy      the downstream's allocation policy: a tenant's weight, tier, reserve; admissible
    capacity    capacity in use, per downstream and per tenant: charge, refund
    schedule    the scheduler's queue of tenants (tiers, virtual times, aging)
    flows       the waiting place's flows: eligible, waiting for a time, parked
    counters    the counters kept for one drain call, admissions, wait samples, waiting counts
    records     a refusal (dead-letter) in a job's decision record
    waiting     storing jobs in the waiting place        instance  which instance of a job id a delivery is

  Keys under G: none of its own.
]]
--- @include "keys"
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

-- Reads the context arguments every governance script starts with: G, now, retention, 9 window values.
local function contextFromArgs()
  local ctx = newContext(ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6],
    tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9], tonumber(ARGV[10]), tonumber(ARGV[11]), ARGV[12])
  ctx.retention = tonumber(ARGV[3])
  return ctx
end
local CONTEXT_ARGS = 12

local function dsKey(ctx, ds, suffix)
  return ctx.G .. GF.downstream .. ds .. ':' .. suffix
end

local function split(s, sep)
  local out = {}
  if s == '' then return out end
  for part in string.gmatch(s, '([^' .. sep .. ']+)') do out[#out + 1] = part end
  return out
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
