-- wrk script: POST joins, each with a unique user id (thread number + counter).
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
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end
