#!lua
--[[
  append: add one or more messages at the end of a conversation, refresh its TTL.

  KEYS[1]    the conversation: a list, one JSON message per element
  ARGV[1]    TTL in milliseconds; 0 leaves the key's expiry as it is
  ARGV[2..]  the messages to append, in order, each one JSON text (may be none)

  Returns    the length of the list afterwards
  Errors     ACS_WRONGTYPE <type>  KEYS[1] holds something other than a list; nothing changes
  Cost       O(M) for M messages; nothing already stored is moved. Pushed 1,000 at a time
             to stay under Lua's unpack limit.
]]
local rcall = redis.call
local key = KEYS[1]
local ttl = tonumber(ARGV[1])

local kind = rcall('TYPE', key)['ok']
if kind ~= 'list' and kind ~= 'none' then
  return redis.error_reply('ACS_WRONGTYPE ' .. kind)
end

local CHUNK = 1000
local length = rcall('LLEN', key)
for first = 2, #ARGV, CHUNK do
  length = rcall('RPUSH', key, unpack(ARGV, first, math.min(first + CHUNK - 1, #ARGV)))
end
if ttl > 0 and length > 0 then
  rcall('PEXPIRE', key, ttl)
end
return length
