-- Shared by the wrk scripts that send as many visitors: 10,000 of them, each an address of
-- 10.0.0.0/8 forwarded by a trusted proxy (serve with VISIT_TRACKER_TRUSTED_PROXIES=127.0.0.1)
-- and one of a few common browsers' User-Agents, as on a real site.
local visitors = 10000
local agents = {
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
}
local n = 0

function visitor_headers()
    n = n + 1
    local v = n % visitors
    local address = "10." .. math.floor(v / 65536) % 256 .. "." .. math.floor(v / 256) % 256
        .. "." .. v % 256
    return {["X-Forwarded-For"] = address, ["User-Agent"] = agents[v % #agents + 1]}
end

-- The page and referrer of the request whose headers visitor_headers() made last: one of 200
-- pages and one of 5 referrers, as a site's views spread.
local referrers = {
    "https://news.example.org/item", "https://www.google.com/", "https://duckduckgo.com/",
    "https://social.example.net/@someone", "https://blog.example.com/links",
}

function current_view()
    return "/blog/post-" .. n % 200, referrers[math.floor(n / 200) % #referrers + 1]
end

-- Percent-encoded as a browser's URLSearchParams encodes a query string's values.
function encoded(text)
    return (text:gsub("[^%w%-_%.~]", function(c) return string.format("%%%02X", c:byte()) end))
end
