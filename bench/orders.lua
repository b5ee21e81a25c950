-- wrk script: every request places a new order, with a unique Idempotency-Key and external_id
-- ("BENCH-<nonce>-<thread>-<counter>"), a bearer key, and the valid order body of
-- bench/orders.py (given as the JSON before and after the external_id value).
-- Arguments after "--": <api key> <run nonce> <body before external_id> <body after external_id>

local next_thread = 1

function setup(thread)
  thread:set("thread_id", next_thread)
  next_thread = next_thread + 1
end

function init(args)
  auth = "Bearer " .. args[1]
  prefix = "BENCH-" .. args[2] .. "-" .. thread_id .. "-"
  body_before = args[3]
  body_after = args[4]
  counter = 0
end

function request()
  counter = counter + 1
  local id = prefix .. counter
  local headers = {
    ["Authorization"] = auth,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = id,
  }
  return wrk.format("POST", nil, headers, body_before .. id .. body_after)
end
