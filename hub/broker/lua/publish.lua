-- Publish a batch of messages atomically: for every target channel, append the
-- entry to its stream with the next contiguous offset as id, refresh TTLs, and
-- PUBLISH the entry (with epoch and offset) on the live channel. Live and
-- history therefore share ids and order.
--
-- KEYS: stream and meta key of every target, in order; then the idempotency key
--       when ARGV[5] (the request fingerprint) is not empty.
-- ARGV: maxlen, ttl, meta_ttl, idempotency_ttl, fingerprint, message count, then
--       per message: target count, event, data, and the live channel of each target.
-- Returns {'new', id...} or {'dup', stored answer}.
local maxlen, ttl, meta_ttl, idem_ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local fingerprint = ARGV[5]
local nkeys = #KEYS
local idem = nil
if fingerprint ~= '' then
  idem = KEYS[nkeys]
  nkeys = nkeys - 1
  local prior = redis.call('GET', idem)
  if prior then
    return {'dup', prior}
  end
end

-- Check every key's type first: an error after a write would leave a partial publish.
for i = 1, nkeys, 2 do
  local stream_type = redis.call('TYPE', KEYS[i])['ok']
  local meta_type = redis.call('TYPE', KEYS[i + 1])['ok']
  if (stream_type ~= 'none' and stream_type ~= 'stream') or (meta_type ~= 'none' and meta_type ~= 'hash') then
    return redis.error_reply('WRONGTYPE hub key ' .. KEYS[i] .. ' holds a value of another type')
  end
end

local ids = {}
local a = 7
local k = 1
for _ = 1, tonumber(ARGV[6]) do
  local targets, event, data = tonumber(ARGV[a]), ARGV[a + 1], ARGV[a + 2]
  a = a + 3
  for _ = 1, targets do
    local stream, meta, live = KEYS[k], KEYS[k + 1], ARGV[a]
    k = k + 2
    a = a + 1
    local epoch = redis.call('HGET', meta, 'epoch')
    if not epoch then
      -- A new channel (or one wiped or expired): a new epoch, offsets from 1.
      local now = redis.call('TIME')
      epoch = now[1] .. string.format('%06d', tonumber(now[2]))
      redis.call('DEL', stream)
      redis.call('HSET', meta, 'epoch', epoch)
    end
    local offset = redis.call('HINCRBY', meta, 'top', 1)
    local id = offset .. '-0'
    redis.call('XADD', stream, 'MAXLEN', '~', maxlen, id, 'e', event, 'd', data)
    redis.call('EXPIRE', stream, ttl)
    redis.call('EXPIRE', meta, meta_ttl)
    redis.call('PUBLISH', live, epoch .. '\n' .. offset .. '\n' .. event .. '\n' .. data)
    ids[#ids + 1] = id
  end
end

if idem then
  redis.call('SET', idem, fingerprint .. '\n' .. table.concat(ids, ','), 'EX', idem_ttl)
end
table.insert(ids, 1, 'new')
return ids
