-- Scenario (i) hello: keep-alive GET / (one request in flight per connection).
done = require("report").done
