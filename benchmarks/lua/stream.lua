-- Scenario (iv) stream: GET /stream, answered with 100 chunks of 1 KiB (chunked encoding).
-- The URL given to wrk carries the path.
done = require("report").done
