-- Scenario (iii) post: POST /echo with a body of SIZE bytes (default 16 KiB), echoed back.
-- Set in init() so wrk builds the request once (a static request: no Lua call per request).
-- Usage: wrk ... -s post.lua URL -- [SIZE]
local report = require("report")

function init(args)
  local size = tonumber(args[1]) or 16384
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/octet-stream"
  wrk.body = string.rep("p", size)
end

done = report.done
