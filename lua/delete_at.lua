#!lua
--[[
  delete_at: remove the message at position ARGV[1] and return it, refresh the TTL.

  KEYS[1]    the conversation: a list, one JSON message per element
  ARGV[1]    the index; only 0 <= index < length removes anything (negative indexes do not
             count from the end: LlamaIndex's rule, kept for drop-in use)
  ARGV[2]    TTL in milliseconds; 0 leaves the key's expiry as it is

  Returns    the removed element (JSON text), or nil when the index is out of range, in which
             case nothing changes. Removing the last element removes the key.
  Errors     ACS_WRONGTYPE <type>  KEYS[1] holds something other than a list; nothing changes
  Cost       O(min(i, N-i)): at either end a pop; inside, the element is read (LINDEX),
             swapped for a mark (LSET) and LREM removes the mark scanning from the nearer end.
             No other element passes through the script.
]]
local rcall = redis.call
local key = KEYS[1]
local index = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])

local kind = rcall('TYPE', key)['ok']
if kind ~= 'list' and kind ~= 'none' then
  return redis.error_reply('ACS_WRONGTYPE ' .. kind)
end

-- No JSON text can equal the mark: 0xFF never occurs in UTF-8.
local MARK = '\255atomic-chat-store:mark'

local length = rcall('LLEN', key)
if index < 0 or index >= length then
  return false
end

local removed
if index == 0 then
  removed = rcall('LPOP', key)
elseif index == length - 1 then
  removed = rcall('RPOP', key)
else
  removed = rcall('LINDEX', key, index)
  rcall('LSET', key, index, MARK)
  if index < length / 2 then
    rcall('LREM', key, 1, MARK)
  else
    rcall('LREM', key, -1, MARK)
  end
end

if ttl > 0 and length > 1 then
  rcall('PEXPIRE', key, ttl)
end
return removed
