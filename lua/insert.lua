#!lua
--[[
  insert: put one message before position ARGV[8], as Python's list.insert does.

  KEYS[1], KEYS[2], ARGV[1..7]  as every script (includes/prelude.lua)
  ARGV[8]    the index, any integer: a negative one counts from the end (clamped at 0), one at
             or past the end appends
  ARGV[9]    the message, JSON text

  Returns    the length afterwards
  Errors     those of the prelude; nothing changes
  Cost       at either end: O(1). Inside, at index i of N: the element at i is swapped for a
             mark unique to this call (LINDEX, LSET: O(min(i, N-i))), LINSERT puts the message
             before the mark (a scan in C from the head: O(i); no other element passes through
             the script) and the element goes back. Only when the tail is much shorter
             (N-i < i/16) is it moved instead: O(N-i) elements pass through the script.
]]
-- @include prelude
local SCRIPT = 'insert'
local MOVE_TAIL_FACTOR = 16

local index = integer_arg('index', ARGV[FIRST_ARG])
local message = ARGV[FIRST_ARG + 1]
if message == nil then
  fail('BADARG', 'message missing')
end
local replayed, reply = begin(SCRIPT, 'list', {
  { 'rpush', list_key, 'x' }, { 'lpush', list_key, 'x' }, { 'lrange', list_key, '0', '-1' },
  { 'ltrim', list_key, '0', '-1' }, { 'lindex', list_key, '0' }, { 'lset', list_key, '0', 'x' },
  { 'linsert', list_key, 'before', 'x', 'y' },
})
if replayed then
  return reply
end

local length = rcall('LLEN', list_key)
if index < 0 then
  index = math.max(index + length, 0)
end

if index >= length then
  rcall('RPUSH', list_key, message)
elseif index == 0 then
  rcall('LPUSH', list_key, message)
elseif (length - index) * MOVE_TAIL_FACTOR < index then
  local tail = rcall('LRANGE', list_key, index, -1)
  rcall('LTRIM', list_key, 0, index - 1)
  rcall('RPUSH', list_key, message)
  in_chunks('RPUSH', list_key, tail)
else
  local mark = unique_mark()
  local displaced = rcall('LINDEX', list_key, index)
  rcall('LSET', list_key, index, mark)
  rcall('LINSERT', list_key, 'BEFORE', mark, message)
  rcall('LSET', list_key, index + 1, displaced)
end

length = trim(length + 1)
return commit(SCRIPT, length, length)
