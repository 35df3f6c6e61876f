-- wrk script: hits with a page and a referrer, each from one of 10,000 browsers (User-Agents),
-- so that unique visitors are counted as for real traffic rather than for one client.
local browsers = 10000
local body = '{"page": "/blog/post", "referrer": "https://news.example.org/item"}'
local n = 0

request = function()
    n = n + 1
    local headers = {
        ["Content-Type"] = "application/json",
        ["User-Agent"] = "Mozilla/5.0 (bench " .. (n % browsers) .. ")",
    }
    return wrk.format("POST", nil, headers, body)
end
