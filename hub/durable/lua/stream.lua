-- One durable stream's state in Redis, changed atomically: every operation on a stream
-- is one call of this script on the stream's slot (its keys share a hash tag).
--
-- KEYS: meta (hash), data (a Redis Stream: one entry per stored message, its id the
--       message's end position), producers (hash: id -> "epoch:lastseq:updated_ms"),
--       live (the pub/sub channel that wakes waiting readers), forks (the set of the
--       names of the forks that read through this stream).
-- ARGV[1]: the operation, ARGV[2]: now in ms, then the operation's own.
--
-- Expiry is checked here (a sliding TTL from `touched`, or an absolute `exp`): an
-- expired stream is deleted, unless forks read through it: then it is kept `gone`. A
-- fork dropped so is reported to the caller (the reply ends with "\0unfork" and its
-- source), which tells the source in its own slot.
-- Redis's own key expiry is set a minute past the logical one, as a backstop, and only
-- while no fork needs the stream.
local meta, data, producers, live, forks = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local op, now = ARGV[1], tonumber(ARGV[2])
local PRODUCER_TTL = 7 * 24 * 3600 * 1000
local SLACK = 60000
local MAX_FORK_DEPTH = 32
local dropped_from = nil -- the source of a fork this call dropped as expired

local function fields()
  local flat = redis.call('HGETALL', meta)
  if #flat == 0 then return nil end
  local m = {}
  for i = 1, #flat, 2 do m[flat[i]] = flat[i + 1] end
  return m
end

-- a <= b, byte by byte (Lua's own comparison follows the server's locale).
local function bytes_le(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a <= #b
end

local function drop()
  redis.call('DEL', meta, data, producers, forks)
end

local function fork_count()
  return redis.call('SCARD', forks)
end

-- The stream, nil if there is none (expired ones are dropped or marked gone here).
local function current()
  local m = fields()
  if not m then return nil end
  if m.gone ~= '1' then
    local expired = (m.exp and now >= tonumber(m.exp))
      or (m.ttl and now >= tonumber(m.touched) + tonumber(m.ttl) * 1000)
    if expired then
      if fork_count() > 0 then
        redis.call('HSET', meta, 'gone', '1')
        m.gone = '1'
      else
        drop()
        if m.from then dropped_from = m.from end
        return nil
      end
    end
  end
  return m
end

local function backstop(m)
  if fork_count() > 0 or m.gone == '1' then
    for _, key in ipairs({meta, data, producers, forks}) do redis.call('PERSIST', key) end
    return
  end
  local at = nil
  if m.exp then at = tonumber(m.exp) + SLACK end
  if m.ttl then at = tonumber(m.touched) + tonumber(m.ttl) * 1000 + SLACK end
  for _, key in ipairs({meta, data, producers}) do
    if at then redis.call('PEXPIREAT', key, at) else redis.call('PERSIST', key) end
  end
end

local function touch(m)
  if m.ttl then
    m.touched = tostring(now)
    redis.call('HSET', meta, 'touched', m.touched)
  end
  backstop(m)
end

local function store(m, chunk)
  local tail = tonumber(m.tail) + 5 + #chunk
  redis.call('XADD', data, string.format('%d-0', tail), 'd', chunk)
  m.tail = tostring(tail)
  redis.call('HSET', meta, 'tail', m.tail)
end

local function summary(m, status)
  return {status, m.tail, m.closed or '0', m.ct, m.ttl or '', m.expstr or ''}
end

local function main()
if op == 'create' then
  -- ARGV: ct, ctn, ttl, exp_ms, expstr, closed, from, foff, fsub, start, depth, chunk...
  local m = current()
  local ct, ctn, ttl, exp, expstr, closed = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
  local from, foff, fsub = ARGV[9], ARGV[10], ARGV[11]
  if m then
    if m.gone == '1' then return {'gone', unpack(redis.call('SRANDMEMBER', forks, 100))} end
    local same = (ctn == '' or ctn == m.ctn) and ttl == (m.ttl or '') and expstr == (m.expstr or '')
      and closed == (m.closed or '0') and from == (m.from or '')
      and (foff == '' or foff == (m.foff or '')) and fsub == (m.fsub or '0')
    if not same then return {'conflict'} end
    return summary(m, 'exists')
  end
  m = {ct = ct, ctn = ctn, closed = closed, tail = ARGV[12], touched = tostring(now), fsub = fsub}
  redis.call('HSET', meta, 'ct', ct, 'ctn', ctn, 'closed', closed, 'tail', m.tail,
    'touched', m.touched, 'fsub', fsub, 'depth', ARGV[13])
  if ttl ~= '' then m.ttl = ttl redis.call('HSET', meta, 'ttl', ttl) end
  if exp ~= '' then m.exp = exp m.expstr = expstr redis.call('HSET', meta, 'exp', exp, 'expstr', expstr) end
  if from ~= '' then m.from = from m.foff = foff redis.call('HSET', meta, 'from', from, 'foff', foff) end
  for i = 14, #ARGV do store(m, ARGV[i]) end
  backstop(m)
  return summary(m, 'created')
end

if op == 'fork' then
  -- ARGV: the fork's name. It reads through this stream from now on.
  local m = current()
  if not m then return {'notfound'} end
  if m.gone == '1' then return {'gone'} end
  local depth = tonumber(m.depth or '0')
  if depth >= MAX_FORK_DEPTH then return {'toodeep'} end
  redis.call('SADD', forks, ARGV[3])
  backstop(m)
  local reply = summary(m, 'ok')
  reply[#reply + 1] = tostring(depth)
  return reply
end

if op == 'unfork' then
  -- ARGV: the fork's name. It no longer reads through this stream; a stream gone while
  -- it did is dropped with its last fork.
  local m = fields()
  if not m then return {'notfound'} end
  redis.call('SREM', forks, ARGV[3])
  if fork_count() == 0 and m.gone == '1' then
    drop()
    return {'dropped', m.from or ''}
  end
  backstop(m)
  return {'ok'}
end

local m = current()
if not m then return {'notfound'} end

if op == 'head' then
  if m.gone == '1' then return {'gone', unpack(redis.call('SRANDMEMBER', forks, 100))} end
  return summary(m, 'ok')
end

if op == 'read' then
  -- ARGV: after position ('' for the start), inherit ('1': a fork reads through this
  -- stream, gone or not, and renews nothing), up to position ('' for no limit), and at
  -- most how many messages.
  if m.gone == '1' and ARGV[4] ~= '1' then return {'gone'} end
  if ARGV[4] ~= '1' then touch(m) end
  local first = ARGV[3] == '' and '-' or '(' .. ARGV[3] .. '-0'
  local last = ARGV[5] == '' and '+' or ARGV[5] .. '-0'
  local reply = summary(m, 'ok')
  reply[#reply + 1] = m.from or ''
  reply[#reply + 1] = m.foff or ''
  local entries = {} -- COUNT 0 answers nil, not an empty array
  if tonumber(ARGV[6]) > 0 then entries = redis.call('XRANGE', data, first, last, 'COUNT', ARGV[6]) end
  for _, entry in ipairs(entries) do
    reply[#reply + 1] = entry[1]
    reply[#reply + 1] = entry[2][2]
  end
  return reply
end

if op == 'delete' then
  -- ARGV: the publish command (readers waiting on the stream wake and find it gone).
  if m.gone == '1' then return {'gone'} end
  redis.call(ARGV[3], live, '1\n' .. m.tail .. '\n0\nds\n')
  if fork_count() > 0 then
    redis.call('HSET', meta, 'gone', '1')
    m.gone = '1'
    backstop(m)
    return {'kept', unpack(redis.call('SRANDMEMBER', forks, 100))}
  end
  drop()
  return {'deleted', m.from or ''}
end

if op == 'append' then
  -- ARGV: ctn, seq, producer id, epoch, seq (all '' without), close, publish command,
  --       chunk...
  if m.gone == '1' then return {'gone'} end
  local ctn, seq, pid, pepoch, pseq, close = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
  if m.closed == '1' then
    if pid ~= '' and m.cby == pid .. '\n' .. pepoch .. '\n' .. pseq then
      return {'duplicate_closed', m.tail, pseq}
    end
    return {'closed', m.tail}
  end
  if #ARGV > 9 and ctn ~= m.ctn then return {'ctmismatch'} end
  if pid ~= '' then
    local state = redis.call('HGET', producers, pid)
    local epoch, last = nil, nil
    if state then
      local e, l, u = string.match(state, '^(%d+):(%d+):(%d+)$')
      if now - tonumber(u) <= PRODUCER_TTL then epoch, last = tonumber(e), tonumber(l) end
    end
    local e, s = tonumber(pepoch), tonumber(pseq)
    if not epoch then
      if s ~= 0 then return {'sequence_gap', m.tail, '0', pseq} end
    elseif e < epoch then
      return {'stale_epoch', m.tail, tostring(epoch)}
    elseif e > epoch then
      if s ~= 0 then return {'invalid_epoch_seq', m.tail} end
    elseif s <= last then
      return {'duplicate', m.tail, tostring(last)}
    elseif s ~= last + 1 then
      return {'sequence_gap', m.tail, tostring(last + 1), pseq}
    end
  end
  if seq ~= '' and m.lseq and bytes_le(seq, m.lseq) then return {'seqconflict'} end
  for i = 10, #ARGV do store(m, ARGV[i]) end
  if pid ~= '' then
    redis.call('HSET', producers, pid, pepoch .. ':' .. pseq .. ':' .. ARGV[2])
  end
  if seq ~= '' then redis.call('HSET', meta, 'lseq', seq) end
  if close == '1' then
    m.closed = '1'
    redis.call('HSET', meta, 'closed', '1')
    if pid ~= '' then redis.call('HSET', meta, 'cby', pid .. '\n' .. pepoch .. '\n' .. pseq) end
  end
  touch(m)
  redis.call(ARGV[9], live, '1\n' .. m.tail .. '\n0\nds\n')
  return {'ok', m.tail, m.closed}
end

return redis.error_reply('ERR unknown durable stream operation ' .. tostring(op))
end

local reply = main()
if dropped_from and type(reply) == 'table' and not reply.err then
  reply[#reply + 1] = '\0unfork'
  reply[#reply + 1] = dropped_from
end
return reply
