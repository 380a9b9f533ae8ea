"""Chat turns started in the last minute, counted in Redis: one count per principal for every replica.

A sorted set per principal (`<its prefix>fair:turns`) holds one member per turn started, scored by when, in
Redis's own clock (replicas' clocks may disagree; Redis's is one). One script drops what is older than the
window, refuses when the limit is reached (answering how long until the oldest start leaves the window), or adds
the new start; being a script, two replicas admitting at the same moment cannot both take the last place. The
set expires with the window, so a principal who stops chatting leaves nothing behind.
"""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

START = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return tonumber(oldest[2]) + window - ms
end
redis.call('ZADD', KEYS[1], ms, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return -1
"""


class RedisWindow:
    """fair_use.TurnWindow on Redis, shared by every replica that uses the same Redis."""

    def __init__(self, redis: Redis, key: str, seconds: float) -> None:
        self.key = key
        self.window_ms = int(seconds * 1000)
        self.script = redis.register_script(START)

    async def start(self, limit: int) -> float | None:
        wait_ms = int(await self.script(keys=[self.key], args=[limit, self.window_ms, uuid.uuid4().hex]))
        return None if wait_ms < 0 else wait_ms / 1000
