#!lua flags=allow-oom
--[[
  delete_all: remove the whole conversation and return what it held.

  KEYS[1], KEYS[2], ARGV[1..7]  as every script (includes/prelude.lua)

  Returns    every element it held, in order; empty when it did not exist (nothing changes)
  Errors     those of the prelude; nothing changes
  Flags      allow-oom: a delete frees memory, so it runs when the server is out of it
  Cost       O(N): every element is read once and freed. The record keeps the reply (the
             whole conversation) for the op id window, so that a replay returns it.
]]
-- @include prelude
local SCRIPT = 'delete_all'

local replayed, reply = begin(SCRIPT, 'list', {
  { 'lrange', list_key, '0', '-1' }, { 'del', list_key },
})
if replayed then
  return reply
end

local removed = rcall('LRANGE', list_key, 0, -1)
if #removed == 0 then
  return removed
end
rcall('DEL', list_key)
return commit(SCRIPT, removed, 0)
