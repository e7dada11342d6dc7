--[[
  Which instance of an ingress job a delivery belongs to (src/redis/keys.ts, jobKey).

  BullMQ accepts an id again once the job that had it is gone, and the gate removes ingress jobs as
  soon as it has handled them: so a custom id may come back (added again by the same producer, by
  another tenant, after the first job ended) while governance still holds the first job's record, or
  its execution or dead-letter job still exists. The stamp (the ingress job's creation time) tells a
  new instance from a retried delivery of one governance already knows (its gate died mid-step).

  Keys under G:
    rec:<key>      hash  the decision record of the instance with that job key; field ts = its stamp
    ri:<base>      hash  tenant -> job key of that tenant's latest instance of the id, written when a
                         later instance is created (expires `retention` after it was last written)
]]
--- @include "base"

local function encodeJobId(id)
  return (string.gsub(id, '[%%:~]', { ['%'] = '%25', [':'] = '%3A', ['~'] = '%7E' }))
end

-- Record states of a job still in flight: admitted and unfinished, waiting, set aside by shedding.
local LIVE_STATES = { admitted = true, waiting = true, shed = true }

--[[
  Resolves the job key of a delivery of ingress job `id` created at `stamp` for `tenant`.
  taken: '1' the gate found an execution or dead-letter job under the first instance's key already
  (left by an earlier job whose record expired), so a new instance must not use that key; '0' it
  found none; '' it did not look (BullMQ's own numeric ids, which BullMQ never hands out twice).
  Returns key, kind: 'known' (governance has this instance's record: a repeated delivery), 'new', or
  'duplicate' (this tenant's earlier job with the same id is still in flight: BullMQ would not add
  it twice; the key returned is the new delivery's own, for its refusal).
]]
local function resolveInstance(G, retention, id, stamp, tenant, taken)
  local unchecked = taken == ''
  taken = taken == '1'
  local base = encodeJobId(id)
  local v = rcall('HMGET', G .. GF.record .. base, 'st', 'ts', 't')
  -- A record without a stamp was written before stamps existed: it is the same job.
  if v[1] and (v[2] == stamp or not v[2]) then return base, 'known' end
  local alias = base .. '~' .. stamp
  if rcall('EXISTS', G .. GF.record .. alias) == 1 then return alias, 'known' end
  local ri = G .. GF.instances .. base
  local mine = rcall('HGET', ri, tenant)
  local st
  if mine then st = rcall('HGET', G .. GF.record .. mine, 'st')
  elseif v[3] == tenant then st = v[1] end
  if st and LIVE_STATES[st] then return alias, 'duplicate' end
  if not v[1] and (unchecked or (not taken and rcall('EXISTS', ri) == 0)) then return base, 'new' end
  if v[1] and v[3] and rcall('HEXISTS', ri, v[3]) == 0 then rcall('HSET', ri, v[3], base) end
  rcall('HSET', ri, tenant, alias)
  rcall('PEXPIRE', ri, retention)
  return alias, 'new'
end
