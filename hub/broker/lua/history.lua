-- Read a channel's epoch, last offset and the entries after an offset, atomically,
-- with the anchor: the stamp of the entry at that offset, as this primary knows it.
-- A cursor whose stamp differs names an entry a failover lost (its offset reused).
-- KEYS: stream, meta.
-- ARGV: after ('' for epoch, top and the top's stamp only), count, after + 1 (the
--       caller adds: offsets may be past what a Lua number holds exactly).
-- Returns {epoch or '', top or '0', anchor or '' (not known), XRANGE reply}.
local meta = redis.call('HMGET', KEYS[2], 'epoch', 'top', 'stamp')
if not meta[1] then
  return {'', '0', '', {}}
end
local top = meta[2] or '0'
local after = ARGV[1]
if after == '' then
  return {meta[1], top, meta[3] or '', {}}
end
local count = tonumber(ARGV[2])
if after == '0' then
  return {meta[1], top, '', redis.call('XRANGE', KEYS[1], '1-0', '+', 'COUNT', count)}
end

local function field(entry, name)
  local values = entry[2]
  for i = 1, #values, 2 do
    if values[i] == name then
      return values[i + 1]
    end
  end
  return nil
end

-- From `after` inclusive: the entry there (if kept) tells its own stamp; else the
-- entry after it tells the stamp of the one before (`p`).
local entries = redis.call('XRANGE', KEYS[1], after .. '-0', '+', 'COUNT', count + 1)
local anchor = nil
local first = entries[1]
if first and first[1] == after .. '-0' then
  anchor = field(first, 't')
  table.remove(entries, 1)
else
  if first and first[1] == ARGV[3] .. '-0' then
    anchor = field(first, 'p')
  elseif not first and top == after then
    anchor = meta[3]  -- the stream expired before its metadata: the top's stamp is kept
  end
  if #entries > count then
    table.remove(entries)
  end
end
return {meta[1], top, anchor or '', entries}
