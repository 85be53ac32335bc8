#!lua
--[[
  memory_set: replace the whole conversation, both statuses, with messages of one status.

  KEYS[1], KEYS[2], ARGV[1..7]  as every script (includes/prelude.lua)
  KEYS[3], KEYS[4]              the ACTIVE and ARCHIVED sets (includes/memory.lua)
  ARGV[8]    the status of the new messages: 'active' or 'archived'
  ARGV[9..]  the new messages, in order, each one JSON text; none removes the conversation

  Returns    the number of messages afterwards. No messages for a conversation that does not
             exist changes nothing.
  Errors     those of the prelude; nothing changes
  Cost       O(N + M log M): the N old messages are freed, the M new ones stored 1,000 at a time.
             Readers see the old conversation or the new one.
]]
-- @include prelude
-- @include memory
local SCRIPT = 'memory_set'

local set = status_key(ARGV[FIRST_ARG])
local replayed, reply, exists = begin(SCRIPT, 'hash', memory_commands())
if replayed then
  return reply
end
if not exists and #ARGV <= FIRST_ARG then
  return 0
end

rcall('DEL', messages_key, active_key, archived_key)
if #ARGV > FIRST_ARG then
  append_messages(set, FIRST_ARG + 1)
end
local length = rcall('HLEN', messages_key)
return commit(SCRIPT, length, length)
