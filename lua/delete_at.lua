#!lua flags=allow-oom
--[[
  delete_at: remove the message at position ARGV[8] and return it.

  KEYS[1], KEYS[2], ARGV[1..7]  as every script (includes/prelude.lua)
  ARGV[8]    the index; only 0 <= index < length removes anything (negative indexes do not
             count from the end: LlamaIndex's rule, kept for drop-in use)

  Returns    the removed element (JSON text), or nil when the index is out of range, in which
             case nothing changes. Removing the last element removes the key.
  Errors     those of the prelude; nothing changes
  Flags      allow-oom: a delete frees memory, so it runs when the server is out of it
  Cost       O(min(i, N-i)): at either end a pop; inside, the element is read (LINDEX),
             swapped for a mark unique to this call (LSET) and LREM removes the mark scanning
             from the nearer end. No other element passes through the script.
]]
-- @include prelude
local SCRIPT = 'delete_at'

local index = integer_arg('index', ARGV[FIRST_ARG])
local replayed, reply = begin(SCRIPT, 'list', {
  { 'lpop', list_key }, { 'rpop', list_key }, { 'lindex', list_key, '0' },
  { 'lset', list_key, '0', 'x' }, { 'lrem', list_key, '1', 'x' },
})
if replayed then
  return reply
end

local length = rcall('LLEN', list_key)
if index < 0 or index >= length then
  return false
end

local removed
if index == 0 then
  removed = rcall('LPOP', list_key)
elseif index == length - 1 then
  removed = rcall('RPOP', list_key)
else
  local mark = unique_mark()
  removed = rcall('LINDEX', list_key, index)
  rcall('LSET', list_key, index, mark)
  rcall('LREM', list_key, index < length / 2 and 1 or -1, mark)
end
return commit(SCRIPT, removed, length - 1)
