-- Real-framework POST (fastapi-post): the body and its Content-Type come from the harness,
-- set once in init() (a static request: no Lua call per request).
-- Usage: wrk ... -s post_json.lua URL -- CONTENT-TYPE BODY
local report = require("report")

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = args[1] or "application/json"
  wrk.body = args[2] or "{}"
end

done = report.done
