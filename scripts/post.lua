-- wrk script: every request is a POST (wrk sends GET by default).
wrk.method = "POST"
