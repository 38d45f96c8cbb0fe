-- wrk script: people sign up for one event and give their seat up again, over and over.
-- Each person alternates POST (sign up) and DELETE (withdraw); with more people than seats,
-- about half wait, so a withdrawal from a seat promotes the first person waiting.
--
--   wrk -t2 -s bench/signups.lua URL -- TOKENS_FILE EVENT_ID 2
--
-- (the last argument repeats wrk's thread count: wrk calls each thread's init right after its
-- setup, before the next thread exists, so a thread can not count them itself).
--
-- People are dealt out to wrk's threads and taken in turn; there are many more of them than
-- connections, so one person never has two requests in flight.
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  event = args[2]
  local thread_count = tonumber(args[3])
  people = {}
  local line_number = 0
  for token in io.lines(args[1]) do
    if line_number % thread_count == id then
      table.insert(people, { token = token, signed_up = false })
    end
    line_number = line_number + 1
  end
  turn = 0
end

function request()
  turn = turn % #people + 1
  local person = people[turn]
  local path = "/api/events/" .. event .. "/registrations"
  local headers = { ["authorization"] = "Bearer " .. person.token }
  person.signed_up = not person.signed_up
  if person.signed_up then
    headers["content-type"] = "application/json"
    return wrk.format("POST", path, headers, "{}")
  end
  return wrk.format("DELETE", path .. "/me", headers)
end
