-- Publish entries to one or more channels atomically: for every channel, append
-- its entries to its stream with the next contiguous offsets as ids, refresh
-- TTLs, and publish each entry (with epoch, offset and stamp) on the channel's
-- live channel. Live and history therefore share ids and order. A Redis Cluster
-- runs one call per slot; one Redis, one call for a whole publish.
--
-- Every entry carries a stamp (`t`: microseconds of the writing primary's clock,
-- modulo 36^6) and the stamp of the entry before it (`p`); the channel's meta
-- hash keeps the last stamp. A failover that loses entries lets their offsets be
-- reused, but not their stamps: a cursor that names an offset and a stamp tells
-- an entry it saw from a new one with the same offset.
--
-- KEYS: per channel: stream, meta, then its idempotency record when ARGV[5]
--       (the request fingerprint) is not empty.
-- ARGV: maxlen, ttl, meta_ttl, idempotency_ttl, fingerprint, publish command
--       (PUBLISH or SPUBLISH), channel count, then per channel: its live channel,
--       entry count, and per entry: event, data.
-- Returns per channel two items: 'new', ids joined by ',' or 'dup', the stored
-- record (fingerprint, newline, ids); or {'conflict'} when a record was made for
-- another request (nothing is written then).
local maxlen, ttl, meta_ttl, idem_ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local fingerprint, publish = ARGV[5], ARGV[6]
local channels = tonumber(ARGV[7])
local step = fingerprint ~= '' and 3 or 2

-- Check every key first: an error after a write would leave a partial publish.
local prior = {}
for c = 1, channels do
  local k = (c - 1) * step + 1
  local stream_type = redis.call('TYPE', KEYS[k])['ok']
  local meta_type = redis.call('TYPE', KEYS[k + 1])['ok']
  if (stream_type ~= 'none' and stream_type ~= 'stream') or (meta_type ~= 'none' and meta_type ~= 'hash') then
    return redis.error_reply('WRONGTYPE hub key ' .. KEYS[k] .. ' holds a value of another type')
  end
  if step == 3 then
    local record = redis.call('GET', KEYS[k + 2])
    if record then
      if string.sub(record, 1, #fingerprint + 1) ~= fingerprint .. '\n' then
        return {'conflict'}
      end
      prior[c] = record
    end
  end
end

local now = redis.call('TIME')
local stamp = string.format('%d', (tonumber(now[1]) * 1000000 + tonumber(now[2])) % 2176782336)
local reply = {}
local a = 8
for c = 1, channels do
  local k = (c - 1) * step + 1
  local stream, meta, live, count = KEYS[k], KEYS[k + 1], ARGV[a], tonumber(ARGV[a + 1])
  a = a + 2
  if prior[c] then
    reply[#reply + 1] = 'dup'
    reply[#reply + 1] = prior[c]
    a = a + 2 * count
  else
    local state = redis.call('HMGET', meta, 'epoch', 'stamp')
    local epoch, previous = state[1], state[2] or '0'
    if not epoch then
      -- A new channel (or one wiped or expired): a new epoch, offsets from 1.
      epoch = now[1] .. string.format('%06d', tonumber(now[2]))
      previous = '0'
      redis.call('DEL', stream)
      redis.call('HSET', meta, 'epoch', epoch)
    end
    local ids = {}
    for _ = 1, count do
      local event, data = ARGV[a], ARGV[a + 1]
      a = a + 2
      local offset = redis.call('HINCRBY', meta, 'top', 1)
      local id = offset .. '-0'
      redis.call('XADD', stream, 'MAXLEN', '~', maxlen, id, 'e', event, 'd', data, 't', stamp, 'p', previous)
      redis.call(publish, live, epoch .. '\n' .. offset .. '\n' .. stamp .. '\n' .. event .. '\n' .. data)
      previous = stamp
      ids[#ids + 1] = id
    end
    redis.call('HSET', meta, 'stamp', stamp)
    redis.call('EXPIRE', stream, ttl)
    redis.call('EXPIRE', meta, meta_ttl)
    local joined = table.concat(ids, ',')
    if step == 3 then
      redis.call('SET', KEYS[k + 2], fingerprint .. '\n' .. joined, 'EX', idem_ttl)
    end
    reply[#reply + 1] = 'new'
    reply[#reply + 1] = joined
  end
end
return reply
