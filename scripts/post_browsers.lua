-- wrk script: POST requests from 10,000 visitors (see visitors.lua), so that unique visitors
-- are counted as for a real site's traffic rather than for one client.
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "visitors.lua")

request = function()
    return wrk.format("POST", nil, visitor_headers())
end
