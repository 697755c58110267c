-- Scenario (ii) pipelined: DEPTH (default 16) GET / requests in one write per connection.
-- wrk counts the requests in the string that request() returns and waits for that many
-- responses before it writes again. Usage: wrk ... -s pipeline.lua URL -- [DEPTH]
local report = require("report")
local batch

function init(args)
  local depth = tonumber(args[1]) or 16
  local parts = {}
  for i = 1, depth do
    parts[i] = wrk.format("GET", wrk.path)
  end
  batch = table.concat(parts)
end

function request()
  return batch
end

done = report.done
