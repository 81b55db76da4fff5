-- wrk script for the POST echo workload: sends the file named by BENCH_POST_BODY.
local path = os.getenv("BENCH_POST_BODY")
local f = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/octet-stream"
