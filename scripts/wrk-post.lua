-- wrk script for scripts/bench-http: POST a small transactional SMS, one per request,
-- with a distinct number so nothing is deduplicated.
local counter = 0
request = function()
  counter = counter + 1
  local body = string.format('{"to":"+4917%08d","text":"Your order %d has shipped."}', counter % 100000000, counter)
  return wrk.format("POST", "/v1/messages", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer bench",
  }, body)
end
