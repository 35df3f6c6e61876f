-- wrk script: hits from 10,000 visitors (see visitors.lua), each naming its page and referrer
-- in the query string, with no body: what tracker.js sends.
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "visitors.lua")

request = function()
    local headers = visitor_headers()
    local page, referrer = current_view()
    local query = "?page=" .. encoded(page) .. "&referrer=" .. encoded(referrer)
    return wrk.format("POST", wrk.path .. query, headers)
end
