--[[
  memory: what the Memory store's scripts (lua/memory_*.lua) share, after the prelude.

  A conversation of LlamaIndex's Memory is four keys, in one Cluster slot:
  KEYS[1]   a hash: seq -> one message's JSON, for every message of both statuses
  KEYS[2]   its record (the prelude's)
  KEYS[3]   a sorted set of the ACTIVE messages' seqs (member: the seq as text; score: the seq)
  KEYS[4]   the same for the ARCHIVED messages
  A seq is an integer that orders the messages by insertion: a new message gets one more than
  the greatest seq of either set. Archiving moves a seq from KEYS[3] to KEYS[4]: the message
  keeps its place in time. Every seq of a set has its message in the hash, and every message of
  the hash is in exactly one set; an empty set is no key at all (Redis removes it).

  ARGV[4] (max messages) must be '0': the Memory store keeps no bound.
]]
local messages_key, active_key, archived_key = KEYS[1], KEYS[3], KEYS[4]

if max_messages > 0 then
  fail('BADARG', 'max_messages ' .. ARGV[4])
end
if #KEYS ~= 4 then
  fail('BADARG', 'keys ' .. #KEYS)
end

-- A number as Redis reads it: Lua would print 1e+15 for large ones.
local function text(number)
  return string.format('%.0f', number)
end

-- The set of the messages of `status` ('active' or 'archived').
local function status_key(status)
  if status == 'active' then
    return active_key
  elseif status == 'archived' then
    return archived_key
  end
  fail('BADARG', 'status ' .. tostring(status))
end

-- The seq a new message gets: one more than the greatest of either set, 1 for the first.
local function next_seq()
  local active = rcall('ZRANGE', active_key, -1, -1)[1]
  local archived = rcall('ZRANGE', archived_key, -1, -1)[1]
  return math.max(tonumber(active) or 0, tonumber(archived) or 0) + 1
end

-- The messages of `seqs`, in that order (false for a seq without one: never, unless the keys
-- were changed by hand).
local function messages_of(seqs)
  local found = {}
  for first = 1, #seqs, CHUNK do
    local part = rcall('HMGET', messages_key, unpack(seqs, first, math.min(first + CHUNK - 1, #seqs)))
    for i = 1, #part do
      found[#found + 1] = part[i]
    end
  end
  return found
end

-- Both sets' seqs in insertion order, positions `first` (0-based) to `first + count - 1`, or to
-- the end when count is nil: a two-way merge of each set's head, which holds at most
-- first + count seqs of the merge. O(log N + first + count).
local function merged_range(first, count)
  if count == 0 then
    return {}
  end
  local last = count and text(first + count - 1) or '-1'
  local active = rcall('ZRANGE', active_key, 0, last)
  local archived = rcall('ZRANGE', archived_key, 0, last)
  local seqs, a, b = {}, 1, 1
  local wanted = count and first + count or #active + #archived
  local position = 0
  while position < wanted and (a <= #active or b <= #archived) do
    local seq
    if b > #archived or (a <= #active and tonumber(active[a]) < tonumber(archived[b])) then
      seq, a = active[a], a + 1
    else
      seq, b = archived[b], b + 1
    end
    if position >= first then
      seqs[#seqs + 1] = seq
    end
    position = position + 1
  end
  return seqs
end

-- The seq at position `index` of both sets merged (0-based, in insertion order, of `total`),
-- walking from the nearer end: O(log N + min(index, total - index)). Nil when out of range.
local function merged_seq_at(index, total)
  if index < 0 or index >= total then
    return nil
  end
  if index < total / 2 then
    return merged_range(index, 1)[1]
  end
  -- From the end: the (total - index)-th greatest seq of the two sets.
  local from_end = total - index
  local active = rcall('ZRANGE', active_key, text(-from_end), -1)
  local archived = rcall('ZRANGE', archived_key, text(-from_end), -1)
  local a, b = #active, #archived
  local seq
  for _ = 1, from_end do
    if b < 1 or (a >= 1 and tonumber(active[a]) > tonumber(archived[b])) then
      seq, a = active[a], a - 1
    else
      seq, b = archived[b], b - 1
    end
  end
  return seq
end

-- The seqs of the n oldest ACTIVE messages, oldest first (none when n is 0).
local function oldest_active(n)
  if n == 0 then
    return {}
  end
  return rcall('ZRANGE', active_key, 0, text(n - 1))
end

-- Remove `seqs` from `set` and their messages from the hash.
local function remove_seqs(set, seqs)
  in_chunks('ZREM', set, seqs)
  in_chunks('HDEL', messages_key, seqs)
end

-- Add `seqs` to `set` (score = seq).
local function add_seqs(set, seqs)
  for first = 1, #seqs, CHUNK do
    local pairs_ = {}
    for i = first, math.min(first + CHUNK - 1, #seqs) do
      pairs_[#pairs_ + 1] = seqs[i]
      pairs_[#pairs_ + 1] = seqs[i]
    end
    rcall('ZADD', set, unpack(pairs_))
  end
end

-- Store ARGV[from..] as new messages of `set`, after every existing one. Returns their seqs.
local function append_messages(set, from)
  local seq = next_seq()
  local seqs = {}
  for first = from, #ARGV, CHUNK do
    local fields = {}
    for i = first, math.min(first + CHUNK - 1, #ARGV) do
      local name = text(seq)
      seq = seq + 1
      seqs[#seqs + 1] = name
      fields[#fields + 1] = name
      fields[#fields + 1] = ARGV[i]
    end
    rcall('HSET', messages_key, unpack(fields))
  end
  add_seqs(set, seqs)
  return seqs
end

-- Every command a memory script may run after its first write, for begin()'s ACL check.
local function memory_commands(extra)
  local commands = {
    { 'hset', messages_key, '1', 'x' }, { 'hdel', messages_key, '1' },
    { 'hlen', messages_key }, { 'hmget', messages_key, '1' },
    { 'del', messages_key, active_key, archived_key },
  }
  for _, set in ipairs({ active_key, archived_key }) do
    for _, command in ipairs({
      { 'zadd', set, '1', '1' }, { 'zrem', set, '1' }, { 'zrange', set, '0', '-1' },
    }) do
      commands[#commands + 1] = command
    end
  end
  for _, command in ipairs(extra or {}) do
    commands[#commands + 1] = command
  end
  return commands
end
