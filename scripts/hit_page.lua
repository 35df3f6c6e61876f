-- wrk script: hits from 10,000 visitors (see visitors.lua), each naming its page and referrer
-- in a JSON body.
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "visitors.lua")

request = function()
    local headers = visitor_headers()
    headers["Content-Type"] = "application/json"
    local page, referrer = current_view()
    local body = '{"page": "' .. page .. '", "referrer": "' .. referrer .. '"}'
    return wrk.format("POST", nil, headers, body)
end
