#!lua
--[[
  set_all: replace the whole conversation with the given messages.

  KEYS[1], KEYS[2], ARGV[1..7]  as every script (includes/prelude.lua)
  ARGV[8..]  the new messages, in order, each one JSON text; none removes the conversation

  Returns    the length afterwards. No messages for a conversation that does not exist
             changes nothing.
  Errors     those of the prelude; nothing changes
  Cost       O(N + M): the N old elements are freed, the M new ones pushed 1,000 at a time.
             Readers see the old list or the new one.
]]
-- @include prelude
local SCRIPT = 'set_all'

local replayed, reply, exists = begin(SCRIPT, 'list', {
  { 'del', list_key }, { 'rpush', list_key, 'x' },
})
if replayed then
  return reply
end
if not exists and #ARGV < FIRST_ARG then
  return 0
end

rcall('DEL', list_key)
local length = trim(in_chunks('RPUSH', list_key, ARGV, FIRST_ARG) or 0)
return commit(SCRIPT, length, length)
