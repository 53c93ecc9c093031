-- wrk script of the HTTP benchmarks: durable increments over a set of counters.
--
-- usage: wrk ... URL -- PREFIX ACTORS SUFFIX
-- Each request is POST PREFIX .. "c" .. n .. SUFFIX with an empty body, n cycling over
-- 0 .. ACTORS-1 (each thread starting at its own offset, so that the connections of all the
-- threads together spread over every counter). response() counts the answers by status, and
-- done() prints one line "wrk-json {...}" that benchmarks/wrk.py parses: counts, status
-- counts, socket errors and latency percentiles in microseconds.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local requests = {}
local position = 0
statuses = {}

function init(args)
  local prefix, actors, suffix = args[1], tonumber(args[2]), args[3] or ""
  for n = 0, actors - 1 do
    requests[n + 1] = wrk.format("POST", prefix .. "c" .. n .. suffix, nil, "")
  end
  position = (id * 7919) % actors -- threads start apart (7919 is a prime)
end

function request()
  position = position % #requests + 1
  return requests[position]
end

function response(status)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency)
  local merged = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      merged[status] = (merged[status] or 0) + count
    end
  end
  local status_items = {}
  for status, count in pairs(merged) do
    table.insert(status_items, string.format('"%d": %d', status, count))
  end
  local e = summary.errors
  io.write(string.format(
    'wrk-json {"duration_us": %d, "requests": %d, "statuses": {%s}, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.duration, summary.requests, table.concat(status_items, ", "),
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, latency.mean))
end
