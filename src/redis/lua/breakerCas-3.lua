--[[
  Writes a downstream's breaker state if nobody changed it since it was read (compare-and-set on a
  revision): the state machine runs in TypeScript (src/core/breaker.ts), its result lands here
  atomically. Transitions go to an outbox in the same step, so Postgres (written from the outbox)
  is never ahead of Redis.

  Input:
    KEYS[1] <G>ds:<ds>:brk, the breaker (hash): json, rev, and the fields the scheduler reads: st, gen, obs,
                                    probes, closedAt, ramp, openUntil
    KEYS[2] <G>brk-outbox (list)   KEYS[3] <G>brk-transitions (hash)
    ARGV[1] (unused)   ARGV[2] downstream   ARGV[3] the revision read ('0' when there was no state)
    ARGV[4] state JSON   ARGV[5] st   ARGV[6] gen   ARGV[7] observe-only ('1'/'0')
    ARGV[8] half-open probes   ARGV[9] closedAt ('' none)   ARGV[10] replay ramp (ms)   ARGV[11] openUntil ('' none)
    ARGV[12..] per transition, 3 values: JSON (for the outbox), from, to

  Output: 1 written, 0 the revision moved (read again and retry)
]]
local key, outbox, counts = KEYS[1], KEYS[2], KEYS[3]
local ds = ARGV[2]
if (redis.call('HGET', key, 'rev') or '0') ~= ARGV[3] then return 0 end
redis.call('HSET', key, 'json', ARGV[4], 'st', ARGV[5], 'gen', ARGV[6], 'obs', ARGV[7], 'probes', ARGV[8],
  'ramp', ARGV[10], 'rev', tonumber(ARGV[3]) + 1)
if ARGV[9] ~= '' then redis.call('HSET', key, 'closedAt', ARGV[9]) else redis.call('HDEL', key, 'closedAt') end
if ARGV[11] ~= '' then redis.call('HSET', key, 'openUntil', ARGV[11]) else redis.call('HDEL', key, 'openUntil') end
for i = 12, #ARGV, 3 do
  redis.call('LPUSH', outbox, ARGV[i])
  redis.call('HINCRBY', counts, ds .. '|' .. ARGV[i + 1] .. '|' .. ARGV[i + 2], 1)
end
return 1
