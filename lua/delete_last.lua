#!lua
--[[
  delete_last: remove the last message and return it, refresh the TTL.

  KEYS[1]    the conversation: a list, one JSON message per element
  ARGV[1]    TTL in milliseconds; 0 leaves the key's expiry as it is

  Returns    the removed element (JSON text), or nil when the list is empty or missing.
             Removing the last element removes the key.
  Errors     ACS_WRONGTYPE <type>  KEYS[1] holds something other than a list; nothing changes
  Cost       O(1)
]]
local rcall = redis.call
local key = KEYS[1]
local ttl = tonumber(ARGV[1])

local kind = rcall('TYPE', key)['ok']
if kind ~= 'list' and kind ~= 'none' then
  return redis.error_reply('ACS_WRONGTYPE ' .. kind)
end

local removed = rcall('RPOP', key)
if removed and ttl > 0 then
  -- PEXPIRE on a key the pop just emptied (and so removed) does nothing.
  rcall('PEXPIRE', key, ttl)
end
return removed
