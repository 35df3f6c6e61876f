-- wrk script: POST requests, each from one of 10,000 browsers (User-Agents), so that unique
-- visitors are counted as for real traffic rather than for one client.
local browsers = 10000
local n = 0

request = function()
    n = n + 1
    local headers = {["User-Agent"] = "Mozilla/5.0 (bench " .. (n % browsers) .. ")"}
    return wrk.format("POST", nil, headers)
end
