--[[
  Opens and resolves alerts from one round of observations, atomically: whichever observers evaluate
  the same crossing, it opens one alert (src/core/alerts.ts `step` is the same rule, in TypeScript).
  Every open and resolve is appended to the alert event stream, from which one relay at a time writes
  it to Postgres (src/notify/relay.ts).

  Input:
    KEYS[1] <G>alerts:open  (hash)   alert key -> id of the event that opened it (a stream entry id)
    KEYS[2] <G>alerts:since (hash)   alert key -> since when a sustained condition has been hot (ms)
    KEYS[3] <G>alerts:ev    (stream) alert events: t opened|resolved, k key, a alert id, p payload JSON, at ms
    ARGV[1] now (ms)   ARGV[2] approximate length kept of the stream
    ARGV[3..] per observation, 5 values: key, hot ('1'/'0'), cool ('1'/'0'), sustain (ms), payload JSON

  Output: per event, 3 values: 'opened' | 'resolved', key, alert id
]]
local openKey, sinceKey, stream = KEYS[1], KEYS[2], KEYS[3]
local now, maxlen = ARGV[1], ARGV[2]
local out = {}

for i = 3, #ARGV, 5 do
  local key, hot, cool, sustain, payload = ARGV[i], ARGV[i + 1] == '1', ARGV[i + 2] == '1', tonumber(ARGV[i + 3]), ARGV[i + 4]
  local open = redis.call('HGET', openKey, key)
  if open then
    if cool then
      redis.call('HDEL', openKey, key)
      redis.call('HDEL', sinceKey, key)
      redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 't', 'resolved', 'k', key, 'a', open, 'p', payload, 'at', now)
      out[#out + 1] = 'resolved'
      out[#out + 1] = key
      out[#out + 1] = open
    end
  elseif not hot then
    redis.call('HDEL', sinceKey, key)
  else
    local due = true
    if sustain > 0 then
      local since = tonumber(redis.call('HGET', sinceKey, key))
      if not since then
        since = tonumber(now)
        redis.call('HSET', sinceKey, key, now)
      end
      due = tonumber(now) - since >= sustain
    end
    if due then
      redis.call('HDEL', sinceKey, key)
      local id = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 't', 'opened', 'k', key, 'a', '', 'p', payload, 'at', now)
      redis.call('HSET', openKey, key, id)
      out[#out + 1] = 'opened'
      out[#out + 1] = key
      out[#out + 1] = id
    end
  end
end
return out
