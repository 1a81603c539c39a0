-- The relay's chat state in Redis: one script, one operation per call (ARGV[1]).
--
-- Redis runs a script atomically, so every operation below (pairing two waiting participants,
-- leaving a room and telling the others, reaping a participant of a dead node) is seen whole or
-- not at all by every relay node. Keys are computed here rather than passed in KEYS: this needs
-- a single Redis (or a primary with replicas), not Redis Cluster.
--
-- Layout, under the prefix P (every key but the presence set and counters carries a TTL):
--   P p:<who>      hash    name, topic, place (idle|waiting|room), qt (queue), room (ref),
--                          last/read/pushed (event seqs), missed, partners (JSON list)
--   P in:<who>     stream  the inbox: entry id "<seq>-0", fields ts, room, body (event JSON)
--   P bl:<who>     zset    blocked participants, scored by when the block expires (ms)
--   P q:<qt>       list    a random queue, oldest first; qt is "" or "t:<topic>"
--   P room:<ref>   hash    kind, topic, members (JSON [{k,n,j}]), last_msg; ref "r:<id>"|"p:<id>"
--   P tr:<ref>     list    the room transcript (JSON entries)
--   P presence     zset    participants, scored by their last heartbeat (ms, Redis clock)
--   P rooms, P queues  sets  open rooms and non-empty queues (for counts)
--   P stats        hash    messages_relayed, events_dropped
-- Moderation (see moderation.rs):
--   P rep:<id>     string  a report (JSON), expiring after the retention
--   P reports      zset    report ids, scored by when they were filed (ms)
--   P rp:<who>     zset    who reported <who>, scored by when (ms), for the cooldown
--   P cd:<who>     string  present while <who> is held out of matching (expires)
--   P cooldowns    zset    participants held out of matching, scored by when that ends (ms)
--   P bn:<id>      string  a ban (JSON), expiring with the ban
--   P ban:<pseudo>, P banaddr:<address>  string  the id of the ban on a pseudonym, an address
--   P bans         set     ban ids (pruned when their record has expired)
--   P pn:<pseudo>  string  the participant key of a pseudonym (for kicks and address bans)
-- Every new event is announced on the channel "P events" as "<who>\n<seq>"; "<who>\nend" when a
-- participant ends.

local OP = ARGV[1]
local P = ARGV[2]
local TTL = tonumber(ARGV[3])
local INBOX_CAP = tonumber(ARGV[4])
local ROOM_CAP = tonumber(ARGV[5])
local BLOCK_TTL_MS = tonumber(ARGV[6])
local MAX_BLOCKS = tonumber(ARGV[7])
local TRANSCRIPT_CAP = tonumber(ARGV[8])
local DEFAULT_NAME = ARGV[9]
local A = 10 -- the first argument of the operation

-- The Redis server's clock, so that every node agrees on presence and block expiry.
local clock = redis.call('TIME')
local NOW = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

-- Numbers go to Redis as integer strings (Lua numbers are doubles).
local function s(n) return string.format('%d', n) end
local function num(v) return tonumber(v) or 0 end

local function pk(k) return P .. 'p:' .. k end
local function inbox(k) return P .. 'in:' .. k end
local function blocks(k) return P .. 'bl:' .. k end
local function roomk(ref) return P .. 'room:' .. ref end
local function trk(ref) return P .. 'tr:' .. ref end
local function qk(qt) return P .. 'q:' .. qt end
local function refid(ref) return string.sub(ref, 3) end
local function exists(k) return redis.call('EXISTS', pk(k)) == 1 end
local function in_cooldown(k) return redis.call('EXISTS', P .. 'cd:' .. k) == 1 end
local function hget(k, f) return redis.call('HGET', pk(k), f) end

-- Creates the participant if unknown (with a presence entry, so that it is reaped if its node
-- dies before the first heartbeat).
local function ensure(k)
  if not exists(k) then
    redis.call('DEL', inbox(k))
    redis.call('HSET', pk(k), 'name', DEFAULT_NAME, 'place', 'idle', 'last', '0', 'read', '0',
      'pushed', '0', 'missed', '0')
    redis.call('ZADD', P .. 'presence', 'NX', s(NOW), k)
  end
  redis.call('EXPIRE', pk(k), s(TTL))
end

-- Appends an event to `to`'s inbox and announces it. A full inbox drops its oldest event,
-- counted as missed when it was unread.
local function deliver(to, room_id, body)
  if not exists(to) then return end
  local seq = redis.call('HINCRBY', pk(to), 'last', 1)
  local ib = inbox(to)
  local read = num(hget(to, 'read'))
  while redis.call('XLEN', ib) >= INBOX_CAP do
    local oldest = redis.call('XRANGE', ib, '-', '+', 'COUNT', 1)[1]
    redis.call('XDEL', ib, oldest[1])
    local oseq = tonumber(string.match(oldest[1], '^(%d+)'))
    if oseq > read then
      read = oseq
      redis.call('HSET', pk(to), 'read', s(oseq))
      redis.call('HINCRBY', pk(to), 'missed', 1)
      redis.call('HINCRBY', P .. 'stats', 'events_dropped', 1)
    end
  end
  redis.call('XADD', ib, s(seq) .. '-0', 'ts', s(NOW), 'room', room_id, 'body', cjson.encode(body))
  redis.call('EXPIRE', ib, s(TTL))
  redis.call('PUBLISH', P .. 'events', to .. '\n' .. s(seq))
end

local function is_blocked(a, b)
  local score = redis.call('ZSCORE', blocks(a), b)
  return score and tonumber(score) > NOW
end

local function add_block(a, b)
  local bk = blocks(a)
  redis.call('ZREMRANGEBYSCORE', bk, '-inf', s(NOW))
  redis.call('ZADD', bk, s(NOW + BLOCK_TTL_MS), b)
  local n = redis.call('ZCARD', bk)
  if n > MAX_BLOCKS then redis.call('ZPOPMIN', bk, s(n - MAX_BLOCKS)) end
  redis.call('PEXPIRE', bk, s(BLOCK_TTL_MS))
end

local function room_get(ref)
  local r = redis.call('HMGET', roomk(ref), 'kind', 'topic', 'members', 'last_msg')
  if not r[1] then return nil end
  return { kind = r[1], topic = r[2] or nil, members = cjson.decode(r[3]), last_msg = num(r[4]) }
end

local function room_put(ref, room)
  local rk = roomk(ref)
  redis.call('HSET', rk, 'kind', room.kind, 'members', cjson.encode(room.members),
    'last_msg', s(room.last_msg))
  if room.topic then redis.call('HSET', rk, 'topic', room.topic) end
  redis.call('EXPIRE', rk, s(TTL))
  redis.call('SADD', P .. 'rooms', ref)
end

local function set_place(k, place, field, value)
  redis.call('HDEL', pk(k), 'qt', 'room')
  redis.call('HSET', pk(k), 'place', place)
  if field then redis.call('HSET', pk(k), field, value) end
end

-- `name`, or `name (2)`, `name (3)`, ... so that members of one room are told apart.
local function unique_name(name, taken)
  local set = {}
  for _, n in ipairs(taken) do set[n] = true end
  if not set[name] then return name end
  local i = 2
  while set[name .. ' (' .. i .. ')'] do i = i + 1 end
  return name .. ' (' .. i .. ')'
end

-- Refuses a new chat while the participant is in one: an error string, or nil.
local function ensure_idle(who)
  local place = hget(who, 'place')
  if place == 'waiting' then return 'already_waiting' end
  if place == 'room' then return 'already_in_room\n' .. refid(hget(who, 'room') or 'r:') end
  return nil
end

-- Takes `who` out of its queue or room, telling the room's others `reason`.
-- Returns what was left ('nothing'|'queue'|'room'), the room id ('' for none), the others.
local function vacate(who, reason)
  local place = hget(who, 'place')
  if not place or place == 'idle' then return 'nothing', '', {} end
  if place == 'waiting' then
    local qt = hget(who, 'qt') or ''
    redis.call('LREM', qk(qt), 0, who)
    if redis.call('LLEN', qk(qt)) == 0 then redis.call('SREM', P .. 'queues', qt) end
    set_place(who, 'idle')
    return 'queue', '', {}
  end
  local ref = hget(who, 'room')
  set_place(who, 'idle')
  if not ref then return 'room', '', {} end
  local room = room_get(ref)
  if not room then return 'room', refid(ref), {} end
  local leaver_name = ''
  local kept, others = {}, {}
  for _, m in ipairs(room.members) do
    if m.k == who then
      leaver_name = m.n
    else
      table.insert(kept, m)
      table.insert(others, m.k)
    end
  end
  -- A random match is a conversation between two: it ends when either side goes. A private
  -- room stays open for whoever is still in it.
  local closed = room.kind == 'random' or #others == 0
  if closed then
    redis.call('DEL', roomk(ref), trk(ref))
    redis.call('SREM', P .. 'rooms', ref)
    for _, o in ipairs(others) do
      if exists(o) then
        set_place(o, 'idle')
        redis.call('HSET', pk(o), 'partners', cjson.encode({ who }), 'last_room', ref)
      end
    end
  else
    room.members = kept
    redis.call('HSET', roomk(ref), 'members', cjson.encode(kept))
  end
  redis.call('HSET', pk(who), 'partners', cjson.encode(others), 'last_room', ref)
  for _, o in ipairs(others) do
    deliver(o, refid(ref), { type = 'partner.disconnected', partner_name = leaver_name,
      reason = reason, room_closed = closed })
  end
  return 'room', refid(ref), others
end

-- Pairs `who` with the longest-waiting compatible participant of queue `qt`, or queues it.
local function enter_queue(who, qt, topic, room_id)
  local q = qk(qt)
  local partner = nil
  for _, c in ipairs(redis.call('LRANGE', q, 0, -1)) do
    if c ~= who then
      if not exists(c) then
        redis.call('LREM', q, 0, c) -- expired without leaving: forget it
      elseif not in_cooldown(c) and not is_blocked(who, c) and not is_blocked(c, who) then
        partner = c
        break
      end
    end
  end
  if not partner then
    redis.call('RPUSH', q, who)
    redis.call('EXPIRE', q, s(TTL))
    redis.call('SADD', P .. 'queues', qt)
    set_place(who, 'waiting', 'qt', qt)
    return
  end
  redis.call('LREM', q, 0, partner)
  if redis.call('LLEN', q) == 0 then redis.call('SREM', P .. 'queues', qt) end
  local pname = hget(partner, 'name') or DEFAULT_NAME
  local myname = unique_name(hget(who, 'name') or DEFAULT_NAME, { pname })
  local ref = 'r:' .. room_id
  room_put(ref, { kind = 'random', topic = topic, last_msg = 0,
    members = { { k = partner, n = pname, j = 0 }, { k = who, n = myname, j = 0 } } })
  set_place(partner, 'room', 'room', ref)
  set_place(who, 'room', 'room', ref)
  deliver(partner, room_id, { type = 'chatroom.found', room_kind = 'random', members = { myname },
    topic = topic })
  deliver(who, room_id, { type = 'chatroom.found', room_kind = 'random', members = { pname },
    topic = topic })
end

-- Ends `who`: leaves its room or queue (the others hear `reason`), forgets its state.
local function finish(who, reason)
  if exists(who) then vacate(who, reason) end
  redis.call('DEL', pk(who), inbox(who))
  redis.call('ZREM', P .. 'presence', who)
  if string.sub(who, 1, 2) ~= 'i:' then
    -- A session-keyed participant can never come back, so its blocks are moot.
    for _, other in ipairs(redis.call('ZRANGE', blocks(who), 0, -1)) do
      redis.call('ZREM', blocks(other), who)
    end
    redis.call('DEL', blocks(who))
  end
  redis.call('PUBLISH', P .. 'events', who .. '\nend')
end

-- Events after `after`, at most `max`, flattened: seq, ts, room, body, seq, ...
local function events_after(who, after, max)
  local out = {}
  local entries = redis.call('XRANGE', inbox(who), '(' .. s(after) .. '-0', '+', 'COUNT', s(max))
  for _, e in ipairs(entries) do
    local f = {}
    for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end
    table.insert(out, string.match(e[1], '^(%d+)'))
    table.insert(out, f.ts or '0')
    table.insert(out, f.room or '')
    table.insert(out, f.body or '{}')
  end
  return out
end

local function status(who)
  local st = { state = 'idle', display_name = DEFAULT_NAME, unread = 0 }
  if not exists(who) then return cjson.encode(st) end
  local h = redis.call('HMGET', pk(who), 'name', 'place', 'qt', 'room', 'last', 'read')
  st.display_name = h[1] or DEFAULT_NAME
  local unread = num(h[5]) - num(h[6])
  local len = redis.call('XLEN', inbox(who))
  if unread > len then unread = len end
  if unread < 0 then unread = 0 end
  st.unread = unread
  if h[2] == 'waiting' then
    st.state = 'waiting'
    local qt = h[3] or ''
    if qt ~= '' then st.topic = string.sub(qt, 3) end
    local pos = redis.call('LPOS', qk(qt), who)
    if pos then st.position = pos + 1 end
  elseif h[2] == 'room' and h[4] then
    st.state = 'in_room'
    st.room_id = refid(h[4])
    local room = room_get(h[4])
    if room then
      st.room_kind = room.kind
      st.topic = room.topic
      local others = {}
      for _, m in ipairs(room.members) do
        if m.k == who then st.display_name = m.n else table.insert(others, m.n) end
      end
      -- Left out when empty: cjson would write an empty table as an object.
      if #others > 0 then st.members = others end
      if #others == 1 then st.partner_name = others[1] end
    end
  end
  return cjson.encode(st)
end

-- Forgets reports past their retention (their records expire by themselves).
local function prune_reports(retention_ms)
  redis.call('ZREMRANGEBYSCORE', P .. 'reports', '-inf', '(' .. s(NOW - retention_ms))
end

-- The ids of the bans in force, forgetting those whose record expired.
local function live_bans()
  local ids = {}
  for _, id in ipairs(redis.call('SMEMBERS', P .. 'bans')) do
    if redis.call('EXISTS', P .. 'bn:' .. id) == 1 then
      table.insert(ids, id)
    else
      redis.call('SREM', P .. 'bans', id)
    end
  end
  return ids
end

local function remove_ban(id)
  local json = redis.call('GET', P .. 'bn:' .. id)
  if not json then return false end
  local ban = cjson.decode(json)
  if redis.call('GET', P .. 'ban:' .. ban.participant) == id then
    redis.call('DEL', P .. 'ban:' .. ban.participant)
  end
  if ban.address and redis.call('GET', P .. 'banaddr:' .. ban.address) == id then
    redis.call('DEL', P .. 'banaddr:' .. ban.address)
  end
  redis.call('DEL', P .. 'bn:' .. id)
  redis.call('SREM', P .. 'bans', id)
  return true
end

-- SET with an expiry in ms, or none ('').
local function set_for(key, value, ms)
  if ms == '' then redis.call('SET', key, value) else redis.call('SET', key, value, 'PX', ms) end
end

local who = ARGV[A]

if OP == 'status' then
  return status(who)

elseif OP == 'enter_queue' then
  local name, topic, room_id = ARGV[A + 1], ARGV[A + 2], ARGV[A + 3]
  ensure(who)
  local refused = ensure_idle(who)
  if refused then return refused end
  redis.call('HSET', pk(who), 'name', name)
  local qt = ''
  if topic ~= '' then
    redis.call('HSET', pk(who), 'topic', topic)
    qt = 't:' .. topic
  else
    redis.call('HDEL', pk(who), 'topic')
  end
  enter_queue(who, qt, topic ~= '' and topic or nil, room_id)
  return 'ok'

elseif OP == 'join_room' then
  local name, room_id = ARGV[A + 1], ARGV[A + 2]
  ensure(who)
  local refused = ensure_idle(who)
  if refused then return refused end
  local ref = 'p:' .. room_id
  local room = room_get(ref) or { kind = 'private', members = {}, last_msg = 0 }
  if #room.members >= ROOM_CAP then return 'room_full' end
  local taken = {}
  for _, m in ipairs(room.members) do table.insert(taken, m.n) end
  local myname = unique_name(name, taken)
  table.insert(room.members, { k = who, n = myname, j = room.last_msg })
  room_put(ref, room)
  redis.call('HSET', pk(who), 'name', name)
  set_place(who, 'room', 'room', ref)
  if #room.members >= 2 then
    for _, m in ipairs(room.members) do
      local others = {}
      for _, o in ipairs(room.members) do
        if o.k ~= m.k then table.insert(others, o.n) end
      end
      local body = { type = 'chatroom.found', room_kind = 'private', members = others }
      if m.k ~= who then body.joined = myname end
      deliver(m.k, room_id, body)
    end
  end
  return 'ok'

elseif OP == 'next_chat' then
  local room_id = ARGV[A + 1]
  ensure(who)
  if hget(who, 'place') == 'waiting' then return 'ok' end -- already looking for someone new
  vacate(who, 'left')
  local topic = hget(who, 'topic')
  enter_queue(who, topic and ('t:' .. topic) or '', topic or nil, room_id)
  return 'ok'

elseif OP == 'send' then
  local text = ARGV[A + 1]
  local ref = hget(who, 'room')
  if hget(who, 'place') ~= 'room' or not ref then return { 'not_in_room' } end
  local room = room_get(ref)
  if not room then return { 'room_closed' } end
  local from, others = '', {}
  for _, m in ipairs(room.members) do
    if m.k == who then from = m.n else table.insert(others, m.k) end
  end
  if #others == 0 then return { 'no_partner' } end
  local mseq = redis.call('HINCRBY', roomk(ref), 'last_msg', 1)
  redis.call('RPUSH', trk(ref), cjson.encode({ s = mseq, t = NOW, f = who, n = from, x = text }))
  redis.call('LTRIM', trk(ref), s(-TRANSCRIPT_CAP), '-1')
  redis.call('EXPIRE', trk(ref), s(TTL))
  redis.call('EXPIRE', roomk(ref), s(TTL))
  for _, o in ipairs(others) do
    deliver(o, refid(ref), { type = 'message.received', from = from, text = text,
      message_seq = mseq })
  end
  redis.call('HINCRBY', P .. 'stats', 'messages_relayed', 1)
  return { 'ok', refid(ref), s(mseq), s(#others) }

elseif OP == 'leave' then
  local block = ARGV[A + 1] == '1'
  if not exists(who) then return { 'nothing', '', '0' } end
  local left, room_id, others = vacate(who, 'left')
  local blocked = 0
  if block then
    -- Also block a stranger who already left (the usual case: an insult, then gone).
    local targets = others
    if #targets == 0 then
      local last = hget(who, 'partners')
      targets = last and cjson.decode(last) or {}
    end
    for _, o in ipairs(targets) do
      add_block(who, o)
      add_block(o, who)
      blocked = blocked + 1
    end
  end
  return { left, room_id, s(blocked) }

elseif OP == 'read' then
  local max = tonumber(ARGV[A + 1])
  if not exists(who) then return { '0', '0' } end
  local read = num(hget(who, 'read'))
  local events = events_after(who, read, max)
  if #events > 0 then read = tonumber(events[#events - 3]) end
  redis.call('HSET', pk(who), 'read', s(read))
  local missed = num(hget(who, 'missed'))
  redis.call('HSET', pk(who), 'missed', '0')
  local more = num(hget(who, 'last')) > read and '1' or '0'
  local out = { s(missed), more }
  for _, v in ipairs(events) do table.insert(out, v) end
  return out

elseif OP == 'events_after' then
  return events_after(who, tonumber(ARGV[A + 1]), tonumber(ARGV[A + 2]))

elseif OP == 'set_cursor' then
  if exists(who) then
    local seq = math.min(tonumber(ARGV[A + 1]), num(hget(who, 'last')))
    redis.call('HSET', pk(who), 'read', s(seq))
  end
  return 'ok'

elseif OP == 'read_through' then
  if exists(who) then
    local seq = math.min(tonumber(ARGV[A + 1]), num(hget(who, 'last')))
    if seq > num(hget(who, 'read')) then redis.call('HSET', pk(who), 'read', s(seq)) end
  end
  return 'ok'

elseif OP == 'mark_pushed' then
  if exists(who) then
    local seq = math.min(tonumber(ARGV[A + 1]), num(hget(who, 'last')))
    if seq > num(hget(who, 'pushed')) then redis.call('HSET', pk(who), 'pushed', s(seq)) end
  end
  return 'ok'

elseif OP == 'resume_point' then
  if not exists(who) then return '0' end
  -- A session takes the participant over: that vouches for it at once, before this node's
  -- next heartbeat (a participant back just before its grace ran out must not be reaped).
  redis.call('ZADD', P .. 'presence', s(NOW), who)
  local claimed = tonumber(ARGV[A + 1])
  -- A claim above the newest event comes from an earlier life of this participant (state
  -- lost with a memory-only relay): resume where the pushes went instead.
  if claimed and claimed <= num(hget(who, 'last')) then return s(claimed) end
  return s(num(hget(who, 'pushed')))

elseif OP == 'transcript' then
  local ref = hget(who, 'room')
  if hget(who, 'place') ~= 'room' or not ref then return { 'not_in_room' } end
  local room = room_get(ref)
  if not room then return { 'room_closed' } end
  local joined = room.last_msg
  for _, m in ipairs(room.members) do
    if m.k == who then joined = m.j end
  end
  local out = { 'ok', refid(ref), s(num(redis.call('HGET', roomk(ref), 'last_msg'))), s(joined) }
  for _, e in ipairs(redis.call('LRANGE', trk(ref), 0, -1)) do table.insert(out, e) end
  return out

elseif OP == 'end' then
  finish(who, ARGV[A + 1])
  return 'ok'

elseif OP == 'heartbeat' then
  -- ARGV[A..] are the participants this node serves right now.
  for i = A, #ARGV do
    local k = ARGV[i]
    if exists(k) then
      redis.call('ZADD', P .. 'presence', s(NOW), k)
      redis.call('EXPIRE', pk(k), s(TTL))
      redis.call('EXPIRE', inbox(k), s(TTL))
      local ref = hget(k, 'room')
      if ref then
        redis.call('EXPIRE', roomk(ref), s(TTL))
        redis.call('EXPIRE', trk(ref), s(TTL))
      end
    end
  end
  return 'ok'

elseif OP == 'reap' then
  -- Participants no node has vouched for within the grace period: their node died or lost
  -- them. Ended here, with `timeout`, by whichever node looks first.
  local grace_ms, limit = tonumber(ARGV[A]), tonumber(ARGV[A + 1])
  local absent = redis.call('ZRANGEBYSCORE', P .. 'presence', '-inf', '(' .. s(NOW - grace_ms),
    'LIMIT', '0', s(limit))
  for _, k in ipairs(absent) do finish(k, 'timeout') end
  return absent

elseif OP == 'report' then
  local id, reason, note, member = ARGV[A + 1], ARGV[A + 2], ARGV[A + 3], ARGV[A + 4]
  local max, retention_ms = tonumber(ARGV[A + 5]), tonumber(ARGV[A + 6])
  local k, window_ms, period_ms = tonumber(ARGV[A + 7]), tonumber(ARGV[A + 8]), tonumber(ARGV[A + 9])
  if not exists(who) then return { 'nothing' } end
  local target, tname, room_id, evidence = nil, '', '', {}
  local ref = hget(who, 'room')
  local room = (hget(who, 'place') == 'room' and ref) and room_get(ref) or nil
  if room then
    room_id = refid(ref)
    local others, joined = {}, room.last_msg
    for _, m in ipairs(room.members) do
      if m.k == who then joined = m.j else table.insert(others, m) end
    end
    local chosen = nil
    if member ~= '' then
      for _, o in ipairs(others) do
        if o.n == member then chosen = o end
      end
      if not chosen then return { 'no_member' } end
    elseif #others == 1 then
      chosen = others[1]
    elseif #others == 0 then
      return { 'nothing' }
    else
      return { 'which_member' }
    end
    target, tname = chosen.k, chosen.n
    -- Only what the reporter could read itself.
    for _, e in ipairs(redis.call('LRANGE', trk(ref), 0, -1)) do
      if cjson.decode(e).s > joined then table.insert(evidence, e) end
    end
    while #evidence > max do table.remove(evidence, 1) end
  else
    -- The stranger already left (the usual case: an insult, then gone): the room is closed,
    -- so the evidence is what the reporter received from it.
    local last = hget(who, 'partners')
    local list = last and cjson.decode(last) or {}
    local lref = hget(who, 'last_room')
    if #list ~= 1 or not lref then return { 'nothing' } end
    target, room_id = list[1], refid(lref)
    local sender = string.sub(lref, 1, 2) == 'r:' and target or ''
    for _, e in ipairs(redis.call('XREVRANGE', inbox(who), '+', '-')) do
      if #evidence >= max then break end
      local f = {}
      for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end
      if f.room == room_id then
        local body = cjson.decode(f.body or '{}')
        if body.type == 'message.received' then
          table.insert(evidence, 1, cjson.encode({ s = body.message_seq, t = tonumber(f.ts) or 0,
            f = sender, n = body.from, x = body.text }))
        end
      end
    end
    if #evidence > 0 then tname = cjson.decode(evidence[#evidence]).n end
  end
  local rec = { id = id, created_ms = NOW, reason = reason, room_id = room_id, reporter = who,
    reported = target, reported_name = tname }
  if note ~= '' then rec.note = note end
  local addr = redis.call('HGET', pk(target), 'addr')
  if addr then rec.reported_address = addr end
  -- cjson writes an empty table as an object: the evidence list is put in by hand.
  local json = string.sub(cjson.encode(rec), 1, -2) .. ',"evidence":[' ..
    table.concat(evidence, ',') .. ']}'
  redis.call('SET', P .. 'rep:' .. id, json, 'PX', s(retention_ms))
  redis.call('ZADD', P .. 'reports', s(NOW), id)
  prune_reports(retention_ms)
  -- The cooldown counts distinct reporters within the window.
  local rk = P .. 'rp:' .. target
  redis.call('ZREMRANGEBYSCORE', rk, '-inf', s(NOW - window_ms))
  redis.call('ZADD', rk, s(NOW), who)
  redis.call('PEXPIRE', rk, s(window_ms))
  if k > 0 and redis.call('ZCARD', rk) >= k and not in_cooldown(target) then
    redis.call('SET', P .. 'cd:' .. target, '1', 'PX', s(period_ms))
    redis.call('ZADD', P .. 'cooldowns', s(NOW + period_ms), target)
  end
  return { 'ok', json }

elseif OP == 'access' then
  local pseudo, addr = ARGV[A + 1], ARGV[A + 2]
  if exists(who) then
    if addr ~= '' then redis.call('HSET', pk(who), 'addr', addr) end
    redis.call('SET', P .. 'pn:' .. pseudo, who, 'EX', s(TTL))
  end
  local id = redis.call('GET', P .. 'ban:' .. pseudo)
  local ban = id and redis.call('GET', P .. 'bn:' .. id)
  if not ban and addr ~= '' then
    id = redis.call('GET', P .. 'banaddr:' .. addr)
    ban = id and redis.call('GET', P .. 'bn:' .. id)
  end
  if ban then return { 'banned', ban } end
  local left = redis.call('PTTL', P .. 'cd:' .. who)
  if left > 0 then return { 'paused', s(NOW + left) } end
  return { 'open' }

elseif OP == 'reports' then
  local limit, retention_ms = tonumber(ARGV[A]), tonumber(ARGV[A + 1])
  prune_reports(retention_ms)
  local out = {}
  for _, id in ipairs(redis.call('ZREVRANGE', P .. 'reports', 0, limit - 1)) do
    local json = redis.call('GET', P .. 'rep:' .. id)
    if json then table.insert(out, json) end
  end
  return out

elseif OP == 'report_get' then
  return redis.call('GET', P .. 'rep:' .. ARGV[A]) or ''

elseif OP == 'ban' then
  local id, pseudo, key, addr = ARGV[A], ARGV[A + 1], ARGV[A + 2], ARGV[A + 3]
  local want_addr, ms, report = ARGV[A + 4] == '1', ARGV[A + 5], ARGV[A + 6]
  if key == '' then key = redis.call('GET', P .. 'pn:' .. pseudo) or '' end
  if addr == '' and key ~= '' then addr = redis.call('HGET', pk(key), 'addr') or '' end
  if want_addr and addr == '' then return { 'no_address' } end
  local rec = { id = id, participant = pseudo, created_ms = NOW }
  if ms ~= '' then rec.until_ms = NOW + tonumber(ms) end
  if report ~= '' then rec.report = report end
  if want_addr then rec.address = addr end
  local json = cjson.encode(rec)
  local old = redis.call('GET', P .. 'ban:' .. pseudo)
  if old then remove_ban(old) end
  set_for(P .. 'bn:' .. id, json, ms)
  set_for(P .. 'ban:' .. pseudo, id, ms)
  if want_addr then set_for(P .. 'banaddr:' .. addr, id, ms) end
  redis.call('SADD', P .. 'bans', id)
  if key ~= '' and exists(key) then vacate(key, 'left') end
  return { 'ok', json }

elseif OP == 'bans' then
  local out = {}
  for _, id in ipairs(live_bans()) do table.insert(out, redis.call('GET', P .. 'bn:' .. id)) end
  return out

elseif OP == 'unban' then
  return remove_ban(ARGV[A]) and '1' or '0'

elseif OP == 'kick' then
  local key = redis.call('GET', P .. 'pn:' .. ARGV[A])
  if not key or not exists(key) then return '0' end
  local left = vacate(key, 'left')
  return left == 'nothing' and '0' or '1'

elseif OP == 'mod_counts' then
  prune_reports(tonumber(ARGV[A]))
  redis.call('ZREMRANGEBYSCORE', P .. 'cooldowns', '-inf', s(NOW))
  local out = { s(redis.call('ZCARD', P .. 'reports')), s(#live_bans()) }
  for _, v in ipairs(redis.call('ZRANGE', P .. 'cooldowns', 0, -1, 'WITHSCORES')) do
    table.insert(out, v)
  end
  return out

elseif OP == 'counts' then
  local waiting = 0
  for _, qt in ipairs(redis.call('SMEMBERS', P .. 'queues')) do
    waiting = waiting + redis.call('LLEN', qk(qt))
  end
  local stats = redis.call('HMGET', P .. 'stats', 'messages_relayed', 'events_dropped')
  return { s(redis.call('ZCARD', P .. 'presence')), s(waiting), s(redis.call('SCARD', P .. 'rooms')),
    s(num(stats[1])), s(num(stats[2])) }
end

return redis.error_reply('unknown operation ' .. tostring(OP))
