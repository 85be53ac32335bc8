#!lua
--[[
  replace: replace the whole conversation with the given messages, set its TTL.

  KEYS[1]    the conversation: a list, one JSON message per element
  ARGV[1]    TTL in milliseconds; 0 leaves the new key without expiry
  ARGV[2..]  the new messages, in order, each one JSON text; none removes the key

  Returns    the length of the list afterwards
  Errors     ACS_WRONGTYPE <type>  KEYS[1] holds something other than a list; nothing changes
  Cost       O(N + M): the N old elements are freed, the M new ones pushed 1,000 at a time
             to stay under Lua's unpack limit. Readers see the old list or the new one.
]]
local rcall = redis.call
local key = KEYS[1]
local ttl = tonumber(ARGV[1])

local kind = rcall('TYPE', key)['ok']
if kind ~= 'list' and kind ~= 'none' then
  return redis.error_reply('ACS_WRONGTYPE ' .. kind)
end

local CHUNK = 1000
rcall('DEL', key)
local length = 0
for first = 2, #ARGV, CHUNK do
  length = rcall('RPUSH', key, unpack(ARGV, first, math.min(first + CHUNK - 1, #ARGV)))
end
if ttl > 0 and length > 0 then
  rcall('PEXPIRE', key, ttl)
end
return length
