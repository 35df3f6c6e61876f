-- wrk script: hits with a page and a referrer in the query string, no body, from 10,000
-- visitors (see visitors.lua): what tracker.js sends.
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "visitors.lua")
local query = "?page=%2Fblog%2Fpost&referrer=https%3A%2F%2Fnews.example.org%2Fitem"

request = function()
    return wrk.format("POST", wrk.path .. query, visitor_headers())
end
