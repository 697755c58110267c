-- Shared by every scenario script: at the end of a run, print wrk's numbers as one JSON line
-- (prefixed with WRK_JSON) so benchmarks/run.py never has to parse wrk's human output.
-- The harness puts this directory on LUA_PATH; to run a script by hand:
--   LUA_PATH='benchmarks/lua/?.lua;;' wrk -t1 -c64 -d10s --latency -s benchmarks/lua/hello.lua http://127.0.0.1:8000/
--
-- Percentiles are computed here from the latency histogram (latency(i) -> value, count)
-- instead of latency:percentile(): with pipelining wrk records one latency per batch but
-- ranks against a different count, and its own p90/p99 come out as 0.
local report = {}

local function percentiles(latency, wanted)
  local n = #latency
  local total, sum = 0, 0
  for i = 1, n do
    local value, count = latency(i)
    total = total + count
    sum = sum + value * count
  end
  local result = {}
  if total == 0 then
    for _, p in ipairs(wanted) do result[p] = 0 end
    return result, 0, 0
  end
  local seen, next_p = 0, 1
  for i = 1, n do
    local value, count = latency(i)
    seen = seen + count
    while next_p <= #wanted and seen >= math.ceil(wanted[next_p] / 100 * total) do
      result[wanted[next_p]] = value
      next_p = next_p + 1
    end
  end
  return result, sum / total, total
end

function report.done(summary, latency, requests)
  local e = summary.errors
  local p, mean, samples = percentiles(latency, {50, 90, 99, 99.9})
  io.write(string.format(
    'WRK_JSON {"duration_us": %d, "requests": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"samples": %d, "min": %d, "mean": %.1f, "max": %d, ' ..
    '"p50": %d, "p90": %d, "p99": %d, "p999": %d}}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    samples, latency.min, mean, latency.max,
    p[50], p[90], p[99], p[99.9]))
end

return report
