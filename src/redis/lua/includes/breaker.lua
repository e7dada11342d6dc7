--[[
  Circuit breaker, as the scheduler sees it (the state machine runs in src/core/breaker.ts; its state
  lands in Redis through breakerCas-3.lua).

  Keys under G:
    ds:<d>:brk               hash   breaker state: st, gen, obs (observe-only), probes, closedAt, ramp
    ds:<d>:probed:<gen>      string probes admitted in half-open generation gen (counted by admitWaiting-1.lua)
]]
--- @include "base"

-- st: 'closed' | 'open' | 'half-open' (observe-only breakers always read as closed), gen, probes allowed
-- in half-open, and when it last closed (held jobs replay under a capacity ramp from then).
local function breakerOf(ctx, ds)
  ctx.breakers = ctx.breakers or {}
  local b = ctx.breakers[ds]
  if not b then
    local v = rcall('HMGET', dsKey(ctx, ds, DK.breaker), 'st', 'gen', 'obs', 'probes', 'closedAt', 'ramp')
    b = { st = v[1] or 'closed', gen = tonumber(v[2]) or 1, obs = v[3] == '1', probes = tonumber(v[4]) or 0,
      closedAt = tonumber(v[5]), ramp = tonumber(v[6]) or 0 }
    if b.obs then b.st = 'closed' end
    ctx.breakers[ds] = b
  end
  return b
end

-- Probes still allowed in the breaker's current half-open generation.
local function probesLeft(ctx, ds, b)
  return b.probes - (tonumber(rcall('GET', dsKey(ctx, ds, DF.probed .. b.gen))) or 0)
end
