-- Read a channel's epoch, last offset and the entries after an offset, atomically.
-- KEYS: stream, meta. ARGV: after ('' for epoch and top only), count.
-- Returns {epoch or '', top or '0', XRANGE reply}.
local meta = redis.call('HMGET', KEYS[2], 'epoch', 'top')
if not meta[1] then
  return {'', '0', {}}
end
local entries = {}
if ARGV[1] ~= '' then
  entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1] .. '-0', '+', 'COUNT', ARGV[2])
end
return {meta[1], meta[2] or '0', entries}
