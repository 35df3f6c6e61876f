-- wrk script: hits with a page and a referrer from 10,000 visitors (see visitors.lua).
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "visitors.lua")
local body = '{"page": "/blog/post", "referrer": "https://news.example.org/item"}'

request = function()
    local headers = visitor_headers()
    headers["Content-Type"] = "application/json"
    return wrk.format("POST", nil, headers, body)
end
