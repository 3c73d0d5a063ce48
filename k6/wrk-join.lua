-- wrk script: POST joins, each with a unique user id (thread number + counter) and its
-- own client address (X-Forwarded-For; the local stack trusts loopback as a proxy), so
-- the shared rate limits run on every join and refuse none.
-- Usage: wrk -s k6/wrk-join.lua <url>/v1/events/<event>/tickets -- <run-id>
local threads = 0
function setup(thread)
  thread:set("thread_number", threads)
  threads = threads + 1
end

function init(args)
  run_id = args[1] or "wrk"
  counter = 0
end

function request()
  counter = counter + 1
  local body = string.format('{"user_id":"wrk-%s-%d-%d"}', run_id, thread_number, counter)
  local client = string.format("10.%d.%d.%d", thread_number % 256, math.floor(counter / 256) % 256, counter % 256)
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json", ["X-Forwarded-For"] = client }, body)
end
