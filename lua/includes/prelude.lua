--[[
  prelude: the part every script shares. scripts.py puts this file where a script says
  `-- @include prelude`, so each script below reads as if it were written there.

  KEYS[1]   the conversation: a list, one JSON message per element (the seed's layout, untouched);
            a hash of messages for the Memory store (lua/memory_*.lua)
  KEYS[2]   its record, a hash in the same Cluster slot (see keys.py for its name):
              v        the version: it grows with every change, from the server clock in µs
              h, t     the op id log: entries h .. t-1 are live
              m        when entry h was recorded (ms)
              q<n>     entry n of the log: "<ms recorded>:<op id>"
              o:<id>   what op id <id> did: cmsgpack of {script name, reply}
  KEYS[3..] the conversation's other keys, if it has any (the Memory store's), same slot: they
            expire with KEYS[1]
  ARGV[1]   op id: the write is recorded under it; '' for reads and TTL refreshes
  ARGV[2]   TTL in ms, an integer string; '0' leaves the conversation's expiry as it is
  ARGV[3]   expected version: '' accepts any; else a write finding another one changes nothing
  ARGV[4]   max messages: after a write the conversation keeps only its newest N; '0' keeps all
  ARGV[5]   how long an op id is remembered, in ms
  ARGV[6]   how many op ids a conversation remembers: the newest this many (up to 32 more)
  ARGV[7]   how many replicas the caller will WAIT for after the write: '0' for none; else a
            write checks first that the user may run WAIT and SPUBLISH (the caller's next
            commands on the connection), so that a durable write is refused whole, not applied
            and then refused its wait
  ARGV[8..] the script's own arguments

  Errors (nothing changes; the first word is the code that errors.py maps to a typed error)
  ACS_BADARG <name> <value>        an argument is not what the contract says
  ACS_WRONGTYPE <type>             KEYS[1] holds another type of value
  ACS_NOPERM <command>             the connection's ACL user may not run a command the script needs
  ACS_VERSION <expected> <actual>  the conversation's version is not the expected one
  ACS_OPID <op id> <script>        the op id was recorded by another script

  Every check comes before the first write, so a script either changes nothing or all it says.
  A write that changes nothing (an index out of range, nothing to remove) is not recorded and
  does not touch the version or the TTL.
]]
local rcall = redis.call
local list_key, record_key = KEYS[1], KEYS[2]
local op_id, ttl, expected_version = ARGV[1], ARGV[2], ARGV[3]
local FIRST_ARG = 8

local function fail(code, detail)
  error({ err = 'ACS_' .. code .. ' ' .. detail })
end

-- `command key values[from..]`, 1,000 values at a time: Lua's unpack takes a few thousand at
-- most. Returns the last reply (nil when there was nothing to send).
local CHUNK = 1000
local function in_chunks(command, key, values, from)
  local reply
  for first = from or 1, #values, CHUNK do
    reply = rcall(command, key, unpack(values, first, math.min(first + CHUNK - 1, #values)))
  end
  return reply
end

-- An integer, read as a Lua number (a double: exact below 2^53, hence at most 16 characters).
local function integer_arg(name, value, min)
  local number = tonumber(value)
  if number == nil or #value > 16 or number ~= math.floor(number) or (min and number < min) then
    fail('BADARG', name .. ' ' .. tostring(value))
  end
  return number
end

-- The TTL goes to PEXPIRE as sent: it must be digits alone (a number Lua printed would not be).
if #ttl > 16 or not string.find(ttl, '^%d+$') then
  fail('BADARG', 'ttl ' .. ttl)
end
local max_messages = integer_arg('max_messages', ARGV[4], 0)
local window_ms = integer_arg('window_ms', ARGV[5], 0)
local window_size = integer_arg('window_size', ARGV[6], 0)
local wait_replicas = integer_arg('wait_replicas', ARGV[7], 0)
if expected_version ~= '' then
  integer_arg('expected_version', expected_version, 0)
end

-- The record as begin() read it.
local record = { h = 0, t = 0 }
-- Log entries beyond the window's size wait for this many more before they leave together:
-- one HDEL every so many writes instead of one each write.
local EVICT_BATCH = 32

-- The version a reader sees: 0 when there is no conversation (even while the record of a
-- deleted one keeps its op ids); else the record's; 1 for a conversation no script of ours has
-- written (the seed's data, or a record lost). A conversation made again gets a version above
-- every one before (commit() takes the record's, when it is still there, and the clock).
local function current_version(exists)
  if not exists then
    return '0'
  end
  return record.v or '1'
end

local function read_record()
  local fields = rcall('HMGET', record_key, 'v', 'h', 't', 'm', 'o:' .. op_id)
  record.v, record.reply = fields[1], fields[5]
  record.h, record.t = tonumber(fields[2]) or 0, tonumber(fields[3]) or 0
  record.m = tonumber(fields[4])  -- when entry h was recorded, in ms
end

-- KEYS[1] must hold a value of type `kind`, or nothing. Returns whether it holds one.
local function check_type(kind)
  local found = rcall('TYPE', list_key)['ok']
  if found ~= kind and found ~= 'none' then
    fail('WRONGTYPE', found)
  end
  return found ~= 'none'
end

-- A command the ACL user must be allowed to run (name, key, args...).
local function allow(...)
  if not redis.acl_check_cmd(...) then
    fail('NOPERM', (...))
  end
end

-- Every command of `commands` ({name, key, args...}) must be one the ACL user may run.
local function check_allowed(commands)
  for _, command in ipairs(commands) do
    allow(unpack(command))
  end
end

-- The version, for a script that only reads: see current_version.
local function read_version(exists)
  record.v = rcall('HGET', record_key, 'v')
  return current_version(exists)
end

-- Every write starts here. `kind` is the Redis type KEYS[1] must have; `commands` lists every
-- command the script may run after its first write ({name, key, args...}), checked against
-- the ACL with the record's own. Returns `replayed, reply, exists`: true and the recorded reply
-- when op_id was applied already (the caller returns that reply and changes nothing), else
-- false, nil and whether KEYS[1] exists.
local function begin(script, kind, commands)
  read_record()
  if op_id ~= '' and record.reply then
    local recorded = cmsgpack.unpack(record.reply)
    if recorded[1] ~= script then
      fail('OPID', op_id .. ' ' .. recorded[1])
    end
    return true, recorded[2], nil
  end
  local exists = check_type(kind)
  if expected_version ~= '' then
    local actual = current_version(exists)
    if actual ~= expected_version then
      fail('VERSION', expected_version .. ' ' .. actual)
    end
  end
  -- What commit() may run, as this call will run it.
  allow('time')
  allow('hset', record_key, 'v', '1')
  if op_id ~= '' then
    allow('hget', record_key, 'v')
    allow('hdel', record_key, 'v')
  end
  if window_ms == 0 then
    allow('del', record_key)
  end
  if ttl == '0' then
    allow('pttl', list_key)
  else
    allow('pexpire', list_key, ttl)
  end
  for i = 2, #KEYS do
    allow('pexpire', KEYS[i], '1')
    if ttl == '0' then
      allow('persist', KEYS[i])
    end
  end
  if max_messages > 0 then
    allow('ltrim', list_key, '0', '-1')
  end
  if wait_replicas > 0 and op_id ~= '' then
    allow('spublish', record_key, '')
    allow('wait', '1', '0')
  end
  check_allowed(commands)
  return false, nil, exists
end

-- The server clock, read once per script: ms, µs.
local clock = nil
local function now()
  if clock == nil then
    local time = rcall('TIME')
    local seconds, micros = tonumber(time[1]), tonumber(time[2])
    clock = { seconds * 1000 + math.floor(micros / 1000), seconds * 1000000 + micros }
  end
  return clock[1], clock[2]
end

-- A mark no stored element can equal: unique to this call (op id and server time), and not
-- JSON (0xFF never occurs in UTF-8). A constant mark would be found wherever a copy of it had
-- been stored, and an insert or delete would act there instead.
local function unique_mark()
  local _, micros = now()
  return '\255acs-mark:' .. op_id .. ':' .. string.format('%.0f', micros)
end

-- After the write: keep only the newest max_messages; returns the length.
local function trim(length)
  if max_messages > 0 and length > max_messages then
    rcall('LTRIM', list_key, -max_messages, -1)
    return max_messages
  end
  return length
end

-- Entries older than the window, or past its size, leave the log with their replies: checked
-- on `m` (the time of the oldest) and the count, without reading an entry, and done in batches.
-- So the log keeps the newest window_size ids at least, and EVICT_BATCH more at most.
local function expired_entries(now_ms)
  local doomed = {}
  local too_many = record.t - record.h >= window_size + EVICT_BATCH
  local too_old = record.m ~= nil and record.m < now_ms - window_ms
  if record.h >= record.t or not (too_many or too_old) then
    return doomed
  end
  local head = record.h
  while head < record.t do
    local entry = rcall('HGET', record_key, 'q' .. head)
    local at, id = string.match(entry or '', '^(%d+):(.*)$')
    if at and record.t - head < window_size and tonumber(at) >= now_ms - window_ms then
      record.m = tonumber(at)
      break
    end
    doomed[#doomed + 1] = 'q' .. head
    if id then
      doomed[#doomed + 1] = 'o:' .. id
    end
    head = head + 1
  end
  record.h = head
  return doomed
end

-- Every write that changed something ends here: bump the version, record op_id with its reply,
-- refresh the TTLs. `length` is the conversation's length afterwards (0: it is gone). The
-- record, and any further key of the conversation (KEYS[3..]), expire with KEYS[1].
local function commit(script, reply, length)
  local now_ms, now_us = now()
  local version = math.max((tonumber(record.v) or 1) + 1, now_us)
  local fields = { 'v', string.format('%.0f', version) }
  if op_id ~= '' then
    local head, oldest = record.h, record.m
    local doomed = expired_entries(now_ms)
    in_chunks('HDEL', record_key, doomed)
    if window_size > 0 then
      if record.h == record.t or record.m == nil then
        record.m = now_ms  -- the log was empty: this entry is its oldest
      end
      local entry = 'q' .. record.t
      local packed = cmsgpack.pack({ script, reply })
      for _, field in ipairs({
        't', record.t + 1, entry, now_ms .. ':' .. op_id, 'o:' .. op_id, packed,
      }) do
        fields[#fields + 1] = field
      end
      -- h and m change only when entries leave or the log starts: written then alone.
      if record.h ~= head or record.m ~= oldest then
        for _, field in ipairs({ 'h', record.h, 'm', string.format('%.0f', record.m) }) do
          fields[#fields + 1] = field
        end
      end
    end
  end
  rcall('HSET', record_key, unpack(fields))
  if length == 0 then
    -- The conversation is gone; its record stays for the window, so a replay still finds it.
    if window_ms > 0 then
      rcall('PEXPIRE', record_key, window_ms)
    else
      rcall('DEL', record_key)
    end
    return reply
  end
  local followers = { record_key, unpack(KEYS, 3) }
  if ttl ~= '0' then
    rcall('PEXPIRE', list_key, ttl)
    for _, key in ipairs(followers) do
      rcall('PEXPIRE', key, ttl)
    end
    return reply
  end
  -- No TTL of ours: the others follow whatever expiry the conversation has.
  local left = rcall('PTTL', list_key)
  for _, key in ipairs(followers) do
    if left > 0 then
      rcall('PEXPIRE', key, left)
    else
      rcall('PERSIST', key)
    end
  end
  return reply
end
