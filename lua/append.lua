#!lua
--[[
  append: add messages at the end of the conversation.

  KEYS[1], KEYS[2], ARGV[1..7]  as every script (includes/prelude.lua): the conversation, its
                                record, op id, TTL, expected version, max messages, op id
                                window, replicas to wait for
  ARGV[8..]  the messages, in order, each one JSON text

  Returns    the length afterwards. No message changes nothing and returns the length.
  Errors     those of the prelude; nothing changes
  Cost       O(M) for M messages, pushed 1,000 at a time (Lua's unpack limit); nothing stored
             is moved
]]
-- @include prelude
local SCRIPT = 'append'

local replayed, reply = begin(SCRIPT, 'list', { { 'rpush', list_key, 'x' } })
if replayed then
  return reply
end
if #ARGV < FIRST_ARG then
  return rcall('LLEN', list_key)
end

local length = trim(in_chunks('RPUSH', list_key, ARGV, FIRST_ARG))
return commit(SCRIPT, length, length)
