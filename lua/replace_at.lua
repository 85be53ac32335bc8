#!lua
--[[
  replace_at: put a message in place of the one at position ARGV[8], and return the one it
  replaced.

  KEYS[1], KEYS[2], ARGV[1..7]  as every script (includes/prelude.lua)
  ARGV[8]    the index; only 0 <= index < length replaces anything (the rule of delete_at)
  ARGV[9]    the new message, JSON text

  Returns    the element replaced (JSON text), or nil when the index is out of range, in which
             case nothing changes
  Errors     those of the prelude; nothing changes
  Cost       O(min(i, N-i)): LINDEX and LSET walk from the nearer end
]]
-- @include prelude
local SCRIPT = 'replace_at'

local index = integer_arg('index', ARGV[FIRST_ARG])
local message = ARGV[FIRST_ARG + 1]
if message == nil then
  fail('BADARG', 'message missing')
end
local replayed, reply = begin(SCRIPT, 'list', {
  { 'lindex', list_key, '0' }, { 'lset', list_key, '0', 'x' },
})
if replayed then
  return reply
end

local length = rcall('LLEN', list_key)
if index < 0 or index >= length then
  return false
end
local replaced = rcall('LINDEX', list_key, index)
rcall('LSET', list_key, index, message)
return commit(SCRIPT, replaced, length)
