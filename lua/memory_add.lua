#!lua
--[[
  memory_add: add messages of one status after every message of the conversation (the Memory
  store: includes/memory.lua holds its layout).

  KEYS[1], KEYS[2], ARGV[1..7]  as every script (includes/prelude.lua): the conversation's hash
                                of messages, its record, op id, TTL, expected version, '0'
  KEYS[3], KEYS[4]              its ACTIVE and ARCHIVED sets (includes/memory.lua)
  ARGV[8]    the status of the new messages: 'active' or 'archived'
  ARGV[9..]  the messages, in order, each one JSON text

  Returns    the number of messages afterwards, of both statuses. No message changes nothing
             (and returns that number).
  Errors     those of the prelude; nothing changes
  Cost       O(M log N) for M messages: HSET and ZADD 1,000 at a time; nothing stored is moved
]]
-- @include prelude
-- @include memory
local SCRIPT = 'memory_add'

local set = status_key(ARGV[FIRST_ARG])
local replayed, reply = begin(SCRIPT, 'hash', memory_commands())
if replayed then
  return reply
end
if #ARGV <= FIRST_ARG then
  return rcall('HLEN', messages_key)
end

append_messages(set, FIRST_ARG + 1)
local length = rcall('HLEN', messages_key)
return commit(SCRIPT, length, length)
