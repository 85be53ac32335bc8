#!lua flags=allow-oom
--[[
  delete_last: remove the last message and return it.

  KEYS[1], KEYS[2], ARGV[1..7]  as every script (includes/prelude.lua)

  Returns    the removed element (JSON text), or nil when the conversation is empty, in which
             case nothing changes. Removing the last element removes the key.
  Errors     those of the prelude; nothing changes
  Flags      allow-oom: a delete frees memory, so it runs when the server is out of it
  Cost       O(1)
]]
-- @include prelude
local SCRIPT = 'delete_last'

local replayed, reply = begin(SCRIPT, 'list', { { 'rpop', list_key } })
if replayed then
  return reply
end

local length = rcall('LLEN', list_key)
if length == 0 then
  return false
end
local removed = rcall('RPOP', list_key)
return commit(SCRIPT, removed, length - 1)
