#!/usr/bin/env python3
"""What the gateway costs per request, compared with plain nginx doing the same proxying.

Three nginx instances of the same binary (vendor/objs/nginx):
  mock     canned OpenAI JSON (with usage) and a canned SSE stream of 20 chunks + [DONE],
           served with `return` in one buffer, and the module's own mock provider streaming
           one event per write 1 ms apart (chunked, include_usage honoured, as providers
           do); never the bottleneck; pinned with wrk to the load CPU;
  plain      proxy_pass to the mock with upstream keepalive (the floor); gateway CPU;
  nometrics  the same proxying with the module but no metrics zone; gateway CPU;
  gateway    the module doing everything that has landed, metrics included; gateway CPU;
  full       the gateway with every policy type enabled for the bench namespace (limits
             that never refuse) and routing (ai_gateway_upstream, keepalive, the provider
             credential injected); gateway CPU.
  exact      full with its counting policies held across nodes in Redis
             (ai_gateway_cluster_limits mode=exact): a private redis-server pinned with the
             load; one admit and one finish script per request; gateway CPU (Redis's own
             CPU per request is reported apart).
  approx     full with its requests and tokens windows approximate (mode=approximate,
             sync=100ms; its concurrency and quota local): no Redis call per request, one
             sync per counter every 100 ms.
  logged     full with usage logs (ai_gateway_usage_log): each request's record into the
             worker's buffer, batches of 500 to the Redis stream of the private redis-server
             (emptied after each run, as an ingestor would); gateway CPU.

Rounds interleave the targets (plain, nometrics, gateway, ...) for each scenario:
JSON, SSE in one buffer and SSE one event per write at concurrency 32 (req/s, CPU
microseconds per request from the target's process tree utime+stime), JSON and SSE at
concurrency 1 (p50/p99 latency). Ratios are taken per round
against plain from the same round, and medians over rounds are reported. Micro-benchmarks of
the pure core come from `cargo bench`.

Usage: bench/bench.py [--rounds N] [--duration S] [--report FILE]; BENCH_QUICK=1 runs one
short round and writes vendor/bench/report-quick.md (a smoke run; timings mean nothing).
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OBJS = os.path.join(ROOT, "vendor", "objs")
NGINX = os.path.join(OBJS, "nginx")
MODULE = os.path.join(OBJS, "ngx_http_ai_gateway_module.so")
WORK = os.path.join(ROOT, "vendor", "bench")

PORTS = {"mock": 18101, "plain": 18102, "gateway": 18103, "nometrics": 18104, "full": 18105,
         "exact": 18106, "redis": 18107, "approx": 18108, "logged": 18109,
         "deb_plain": 18112, "deb_lua": 18113, "deb_gateway": 18114, "deb_full": 18115}
# Debian's own nginx, with a Lua layer doing the original gateway's work, next to the module
# built for it (make debian)
DEB_NGINX = "/usr/sbin/nginx"
DEB_MODULE = os.path.join(ROOT, "vendor", "debian", "ngx_http_ai_gateway_module.so")
LUA_MODULES = ["/usr/lib/nginx/modules/ndk_http_module.so",
               "/usr/lib/nginx/modules/ngx_http_lua_module.so"]
DEB_TARGETS = ["deb_plain", "deb_lua", "deb_gateway", "deb_full"]
BENCH_KEY = "sk-bench-0000042"
CPU_GATEWAY, CPU_LOAD = "0", "1"
SCENARIOS = [  # name, path, streaming, connections
    ("json_c32", "/v1/chat/completions", False, 32),
    ("sse_c32", "/v1/sse/chat/completions", True, 32),
    ("chunked_c32", "/v1/chunked/chat/completions", True, 32),
    ("json_c1", "/v1/chat/completions", False, 1),
    ("sse_c1", "/v1/sse/chat/completions", True, 1),
]
C32 = [s for s in SCENARIOS if s[3] == 32]
LABELS = {"json_c32": "JSON", "sse_c32": "SSE, one buffer",
          "chunked_c32": "SSE, one write per event"}
# the module's own mock streams one event per write, 1 ms apart (as a provider does)
CHUNK_INTERVAL = "1ms"
TARGETS = ["plain", "nometrics", "gateway", "full", "exact", "approx", "logged"]
# targets counted by callgrind (exact mode's work is split between nginx and its runtime
# thread waiting on Redis: timings below, not instructions)
IR_TARGETS = ["plain", "nometrics", "gateway", "full"]

TARGETS_TEXT = """\
- Gateway without policies and routing: <= 1.10x plain proxy_pass CPU/request.
- Full pipeline (every policy, body parse, routing, metrics, usage parse): <= 1.25x, streaming too.
- Instructions added per request: JSON <= 15k, a 20-event stream <= 25k.
- Added latency at concurrency 1: <= 20 us p50 over plain proxy_pass.
- Gateway RSS flat across a 1M-request run; PSS of a node whose config uses one encoding <= 80 MiB."""


def sh(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


# --- configuration -----------------------------------------------------------------------

def request_body(stream):
    """A ~1.5 KB chat request."""
    system = "You are a careful assistant for a logistics company. " * 6
    user = ("Summarise the delivery exceptions below in three bullet points and propose "
            "one follow-up action for each. ") * 9
    body = {
        "model": "gpt-4o-mini",
        "stream": stream,
        "max_tokens": 256,
        "temperature": 0.2,
        "messages": [
            {"role": "system", "content": system.strip()},
            {"role": "user", "content": user.strip()},
        ],
    }
    # streams do not ask for usage (as most SDK calls): the gateway adds include_usage and
    # strips the usage chunk (the canned stream always has it), the costlier path
    return json.dumps(body)


def canned_json():
    return json.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 1800000000,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant",
                                             "content": "Three bullet points about delivery exceptions. " * 4},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 331, "completion_tokens": 40, "total_tokens": 371},
    })


def canned_sse():
    head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1800000000,
            "model": "gpt-4o-mini"}
    events = []
    for i in range(19):
        delta = {"content": " word%d" % i} if i else {"role": "assistant", "content": ""}
        events.append(dict(head, choices=[{"index": 0, "delta": delta, "finish_reason": None}]))
    events.append(dict(head, choices=[], usage={"prompt_tokens": 331, "completion_tokens": 18,
                                                "total_tokens": 349}))
    return "".join("data: %s\n\n" % json.dumps(e) for e in events) + "data: [DONE]\n\n"


def nginx_escape(text):
    return text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")


# Every policy type for the bench key's namespace, with limits the bench never reaches: the
# cost of evaluating them (the prompt is counted for the token window and quota, counters
# are taken and settled under the zone lock, streams go through the output cap).
BENCH_POLICIES = [
    {"type": "models", "allow": ["gpt-4o*", "gpt-4.1*"]},
    {"type": "message", "source": "header", "field": "X-Blocked", "value": "yes",
     "action": "deny"},
    {"type": "input_tokens", "max": 100000},
    {"type": "output_tokens", "max": 4096, "action": "reject"},
    {"type": "concurrency", "limit": 100000},
    {"type": "requests", "limit": 1000000000, "window": "1m"},
    {"type": "tokens", "limit": 1000000000000, "window": "1m"},
    {"type": "quota", "limit": 1000000000000000, "period": "day"},
]


def gateway_config(full=False, approx=False):
    """100 namespaces x 10 keys and 10 header matchers; the bench key is one of the keys
    (namespace team-4); with `full`, that namespace has every policy type and requests are
    routed to the mock as a target."""
    namespaces = []
    for n in range(100):
        keys = [hashlib.sha256(("sk-bench-%07d" % (n * 10 + k)).encode()).hexdigest()
                for k in range(10)]
        ns = {"code": "team-%d" % n, "api_keys": keys}
        if n < 10:
            ns["matchers"] = [{"type": "header", "field": "X-Team", "operator": "equals",
                               "value": "team-%d" % n}]
        if full and n == 4:
            ns["policies"] = BENCH_POLICIES
            if approx:
                # the windows approximate; a quota or concurrency in this mode is exact
                ns["policies"] = [dict(p, mode="local") if p["type"] in ("quota", "concurrency")
                                  else p for p in BENCH_POLICIES]
        namespaces.append(ns)
    config = {"version": "bench", "namespaces": namespaces}
    if full:
        config["targets"] = [{"name": "mock", "provider": "openai",
                              "base_url": "http://127.0.0.1:%d/v1" % PORTS["mock"],
                              "credential": {"value": "sk-bench-provider"}}]
        config["routes"] = [{"name": "all", "path_prefix": "/v1/", "targets": ["mock"]}]
    return config


COMMON = """\
worker_processes 1;
error_log logs/error.log warn;
pid logs/nginx.pid;
worker_rlimit_nofile 4096;
events {{ worker_connections 2048; }}
"""

PROXY = """\
        location /v1/ {{
{extra}            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "";
            proxy_set_header Accept-Encoding "";
            proxy_buffering off;
        }}
"""


def write_configs():
    shutil.rmtree(WORK, ignore_errors=True)
    for name in ["mock"] + TARGETS:
        os.makedirs(os.path.join(WORK, name, "conf"))
        os.makedirs(os.path.join(WORK, name, "logs"))
    user = "user root root;\n" if os.geteuid() == 0 else ""
    confs = {
        "mock": "load_module {mod};\n".format(mod=MODULE) + user + COMMON.format() + """\
http {{
    access_log off;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        location = /v1/chunked/chat/completions {{
            ai_gateway_mock_provider interval={interval};
        }}
        location = /v1/chat/completions {{
            default_type application/json;
            return 200 '{json}';
        }}
        location = /v1/sse/chat/completions {{
            default_type text/event-stream;
            return 200 '{sse}';
        }}
    }}
}}
""".format(port=PORTS["mock"], json=nginx_escape(canned_json()), sse=nginx_escape(canned_sse()),
           interval=CHUNK_INTERVAL),
    }
    upstream = "    upstream mock {{ server 127.0.0.1:{m}; keepalive 64; }}\n".format(m=PORTS["mock"])
    confs["plain"] = user + COMMON.format() + """\
http {{
    access_log off;
{upstream}    server {{
        listen 127.0.0.1:{port};
{proxy}    }}
}}
""".format(upstream=upstream, port=PORTS["plain"], proxy=PROXY.format(extra=""))
    metrics_zone = "    ai_gateway_metrics_zone bench 4m;\n"
    gateway_location = PROXY.format(
        extra="            ai_gateway on;\n"
              "            proxy_set_header X-AI-Gateway-Namespace $ai_gateway_namespace;\n")
    cluster = ("    ai_gateway_redis redis://127.0.0.1:%d prefix=bench timeout=1s;\n"
               "    ai_gateway_cluster_limits mode=exact timeout=100ms;\n" % PORTS["redis"])
    approx = ("    ai_gateway_redis redis://127.0.0.1:%d prefix=bench-approx timeout=1s;\n"
              "    ai_gateway_cluster_limits mode=approximate sync=100ms timeout=100ms;\n"
              % PORTS["redis"])
    logged = ("    ai_gateway_redis redis://127.0.0.1:%d prefix=bench-log timeout=1s;\n"
              "    ai_gateway_usage_log spool=%s/logged/spool node=bench;\n"
              % (PORTS["redis"], WORK))
    for name, metrics in (("nometrics", ""), ("gateway", metrics_zone),
                          ("full", metrics_zone + "    ai_gateway_limit_zone limits 1m;\n"),
                          ("exact", metrics_zone + "    ai_gateway_limit_zone limits 1m;\n"
                           + cluster),
                          ("approx", metrics_zone + "    ai_gateway_limit_zone limits 1m;\n"
                           + approx),
                          ("logged", metrics_zone + "    ai_gateway_limit_zone limits 1m;\n"
                           + logged)):
        if name in ("full", "exact", "approx", "logged"):
            upstreams = ("    upstream ai_gateway_targets { ai_gateway_upstream; keepalive 64; }\n")
            proxy = "".join(
                "        location %s {\n            ai_gateway on;\n"
                "            include %s/nginx-conf/ai_gateway_proxy.conf;\n"
                "            proxy_set_header X-AI-Gateway-Namespace $ai_gateway_namespace;\n"
                "        }\n" % (loc, ROOT)
                for loc in ("/v1/", "@ai_gateway_failover"))
        else:
            upstreams, proxy = upstream, gateway_location
        confs[name] = "load_module {mod};\n".format(mod=MODULE) + user + COMMON.format() + """\
http {{
    access_log off;
    ai_gateway_config gateway.json;
{metrics}{upstream}    server {{
        listen 127.0.0.1:{port};
{proxy}{exposition}    }}
}}
""".format(upstream=upstreams, port=PORTS[name], metrics=metrics,
           exposition="        location = /metrics { ai_gateway_metrics; }\n"
           if name in ("gateway", "exact", "logged") else "",
           proxy=proxy)
    if debian_available():
        for name in DEB_TARGETS:
            os.makedirs(os.path.join(WORK, name, "conf"))
            os.makedirs(os.path.join(WORK, name, "logs"))
        confs["deb_plain"] = confs["plain"].replace(str(PORTS["plain"]), str(PORTS["deb_plain"]))
        for name in ("gateway", "full"):
            confs["deb_" + name] = confs[name].replace(MODULE, DEB_MODULE).replace(
                "listen 127.0.0.1:%d;" % PORTS[name], "listen 127.0.0.1:%d;" % PORTS["deb_" + name])
        confs["deb_lua"] = lua_config(user, upstream)
    for name, text in confs.items():
        with open(os.path.join(WORK, name, "conf", "nginx.conf"), "w") as f:
            f.write(text)

    for name in ("nometrics", "gateway", "full", "exact", "approx", "logged") + (
            ("deb_gateway", "deb_full") if debian_available() else ()):
        with open(os.path.join(WORK, name, "conf", "gateway.json"), "w") as f:
            json.dump(gateway_config(full=name.endswith(("full", "exact", "approx", "logged")),
                                     approx=name == "approx"), f)
    for stream in (False, True):
        name = "sse" if stream else "json"
        body = request_body(stream)
        with open(os.path.join(WORK, "%s.lua" % name), "w") as f:
            f.write(WRK_SCRIPT.replace("@BODY@", json.dumps(body)).replace("@KEY@", BENCH_KEY))


def debian_available():
    """Debian's nginx, its Lua module and the module built for it are all there."""
    return all(os.path.exists(p) for p in [DEB_NGINX, DEB_MODULE] + LUA_MODULES)


# The original gateway's work in Lua (seed-analysis.md): the key -> namespace lookup among the
# same 1,000 keys / 100 namespaces (a Lua table of plain keys, as the seed kept them), a
# per-namespace request counter per minute in a shared dict, and a per-namespace, per-status
# request metric in the log phase; the client key is not sent upstream, the namespace is.
LUA_LAYER = """\
    lua_shared_dict gw_counters 4m;
    lua_shared_dict gw_metrics 4m;
    init_by_lua_block {
        gw_keys = {}
        for n = 0, 99 do
            for k = 0, 9 do
                gw_keys[string.format("sk-bench-%07d", n * 10 + k)] = "team-" .. n
            end
        end
    }
"""

LUA_LOCATION = """\
        location /v1/ {
            set $gw_namespace "";
            access_by_lua_block {
                local auth = ngx.var.http_authorization or ""
                local key = auth:match("^Bearer%s+(.+)$")
                local ns = key and gw_keys[key]
                if not ns then
                    ngx.status = 401
                    ngx.header["Content-Type"] = "application/json"
                    ngx.say('{"error":{"message":"invalid api key","type":"invalid_request_error","code":"invalid_api_key"}}')
                    return ngx.exit(401)
                end
                local window = math.floor(ngx.now() / 60)
                local n = ngx.shared.gw_counters:incr(ns .. ":" .. window, 1, 0, 120)
                if n and n > 1000000000 then
                    return ngx.exit(429)
                end
                ngx.var.gw_namespace = ns
            }
            log_by_lua_block {
                local ns = ngx.var.gw_namespace
                if ns ~= "" then
                    ngx.shared.gw_metrics:incr(ns .. ":" .. ngx.status, 1, 0)
                end
            }
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "";
            proxy_set_header Accept-Encoding "";
            proxy_set_header X-AI-Gateway-Namespace $gw_namespace;
            proxy_buffering off;
        }
"""


def lua_config(user, upstream):
    loads = "".join("load_module %s;\n" % m for m in LUA_MODULES)
    return loads + user + COMMON.format() + """\
http {{
    access_log off;
{lua}{upstream}    server {{
        listen 127.0.0.1:{port};
{location}    }}
}}
""".format(lua=LUA_LAYER, upstream=upstream, port=PORTS["deb_lua"], location=LUA_LOCATION)


WRK_SCRIPT = """\
wrk.method = "POST"
wrk.body = @BODY@
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer @KEY@"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT {\\"requests\\":%d,\\"duration_us\\":%d,\\"errors\\":%d,\\"non2xx\\":%d,\\"bytes\\":%d,\\"p50\\":%d,\\"p99\\":%d}\\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    summary.bytes, latency:percentile(50), latency:percentile(99)))
end
"""


# --- processes ---------------------------------------------------------------------------

def start(name, cpu):
    prefix = os.path.join(WORK, name) + "/"
    binary = DEB_NGINX if name.startswith("deb_") else NGINX
    r = sh(["taskset", "-c", cpu, binary, "-p", prefix, "-c", "conf/nginx.conf"])
    if r.returncode != 0:
        sys.exit("cannot start %s nginx:\n%s" % (name, r.stderr))
    pidfile = os.path.join(prefix, "logs", "nginx.pid")
    for _ in range(100):
        if os.path.exists(pidfile):
            with open(pidfile) as f:
                return int(f.read().strip())
        time.sleep(0.05)
    sys.exit("%s nginx wrote no pid file" % name)


def stop(pid):
    try:
        os.kill(pid, signal.SIGQUIT)
    except ProcessLookupError:
        return
    for _ in range(100):
        if not alive(pid):
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def tree(master):
    pids = [master]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == master:
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


def cpu_seconds(master):
    """utime + stime of the master and its workers."""
    total = 0
    for pid in tree(master):
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def rss_kb(master):
    total = 0
    for pid in tree(master):
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def pss_kb(master):
    """Proportional set size of the master and its workers: shared pages (the tokenizer
    tables built before the fork) counted once."""
    total = 0
    for pid in tree(master):
        try:
            with open("/proc/%d/smaps_rollup" % pid) as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def check(name, path, stream):
    """One request through a target: status 200 and the expected body shape."""
    body = request_body(stream).encode()
    r = sh(["curl", "-s", "-D", "-", "-o", "-", "-H", "Authorization: Bearer " + BENCH_KEY,
            "-H", "Content-Type: application/json", "--data-binary", "@-",
            "http://127.0.0.1:%d%s" % (PORTS[name], path)], input=body.decode())
    ok = r.stdout.startswith("HTTP/1.1 200") and ("[DONE]" in r.stdout if stream
                                                 else '"usage"' in r.stdout)
    if name in ("full", "exact", "approx", "logged"):
        ok = ok and "x-ratelimit-remaining-tokens:" in r.stdout.lower()
    if not ok:
        sys.exit("%s %s did not answer as expected:\n%s" % (name, path, r.stdout[:500]))


# Rust heap allocations (the module's own; nginx allocates from its pools)
RUST_ALLOC = re.compile(r"__rust_(alloc|realloc|alloc_zeroed)\b")
ALLOCS = {}


def instructions(name, scen, path, stream, requests):
    """Instructions per request of a target, counted by callgrind: deterministic, unlike
    timings on a shared machine. nginx runs as one foreground process under valgrind; the
    counters are zeroed after a warm-up and dumped after `requests` keepalive requests."""
    import http.client
    prefix = os.path.join(WORK, name) + "/"
    out = os.path.join(WORK, "callgrind.%s.%s.out" % (name, scen))
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out, NGINX, "-p", prefix,
         "-c", "conf/nginx.conf", "-g", "daemon off; master_process off;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    body = request_body(stream)
    headers = {"Authorization": "Bearer " + BENCH_KEY, "Content-Type": "application/json"}

    def send(n):
        conn = http.client.HTTPConnection("127.0.0.1", PORTS[name], timeout=30)
        for _ in range(n):
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                sys.exit("%s answered %d under callgrind" % (name, resp.status))
        conn.close()

    try:
        for _ in range(200):
            try:
                send(50)
                break
            except OSError:
                time.sleep(0.1)
        sh(["callgrind_control", "-z", str(proc.pid)])
        send(requests)
        sh(["callgrind_control", "-d", str(proc.pid)])
    finally:
        proc.send_signal(signal.SIGQUIT)
        proc.wait(timeout=60)
    total = 0
    allocs = 0
    for dump in [f for f in os.listdir(WORK) if f.startswith(os.path.basename(out) + ".")]:
        names = {}
        counting = False
        with open(os.path.join(WORK, dump)) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    total = max(total, int(line.split()[1]))
                elif line.startswith("cfn="):
                    m = re.match(r"cfn=\((\d+)\)(?: (.*))?", line)
                    if m and m.group(2):
                        names[m.group(1)] = m.group(2).strip()
                    callee = names.get(m.group(1), "") if m else ""
                    counting = bool(RUST_ALLOC.search(callee))
                elif line.startswith("fn="):
                    m = re.match(r"fn=\((\d+)\)(?: (.*))?", line)
                    if m and m.group(2):
                        names[m.group(1)] = m.group(2).strip()
                    counting = False
                elif line.startswith("calls=") and counting:
                    allocs += int(line.split()[0][6:])
                    counting = False
    ALLOCS[(name, scen)] = allocs / requests
    return total / requests


def wrk(name, path, stream, conns, duration, master):
    script = os.path.join(WORK, "%s.lua" % ("sse" if stream else "json"))
    cmd = ["taskset", "-c", CPU_LOAD, "wrk", "-t1", "-c%d" % conns, "-d%ds" % duration,
           "--latency", "-s", script, "http://127.0.0.1:%d%s" % (PORTS[name], path)]
    cpu0 = cpu_seconds(master)
    r = sh(cmd, timeout=duration + 60)
    cpu1 = cpu_seconds(master)
    m = re.search(r"^RESULT (\{.*\})$", r.stdout, re.M)
    if not m:
        sys.exit("wrk failed:\n%s\n%s" % (r.stdout, r.stderr))
    res = json.loads(m.group(1))
    secs = res["duration_us"] / 1e6
    return {
        "rps": res["requests"] / secs,
        "cpu_us": (cpu1 - cpu0) * 1e6 / max(res["requests"], 1),
        "p50": res["p50"], "p99": res["p99"],
        "requests": res["requests"], "errors": res["errors"] + res["non2xx"],
    }


# --- report ------------------------------------------------------------------------------

def median(values):
    return statistics.median(values) if values else float("nan")


def machine_info():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    def version(cmd):
        r = sh(cmd)
        return (r.stdout + r.stderr).strip().splitlines()[0]

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": "%s, %d CPUs" % (model, os.cpu_count()),
        "kernel": platform.release(),
        "nginx": version([NGINX, "-v"]).replace("nginx version: ", ""),
        "rustc": version(["rustc", "-V"]),
        "wrk": version(["wrk", "-v"]).split(" Copyright")[0],
        "commit": sh(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).stdout.strip()
                  + (" (dirty)" if sh(["git", "-C", ROOT, "status", "--porcelain",
                                       "--untracked-files=no"]).stdout.strip() else ""),
    }


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def micro_benchmarks(quick):
    env = dict(os.environ, BENCH_QUICK="1" if quick else "0")
    r = sh(["cargo", "bench", "--locked", "--no-default-features", "--bench", "core"],
           cwd=ROOT, env=env)
    rows = re.findall(r"^BENCH (\S+) ([\d.]+) ns/op \(min ([\d.]+), max ([\d.]+)", r.stdout, re.M)
    if not rows:
        sys.exit("cargo bench failed:\n%s" % r.stderr[-2000:])
    counts = re.findall(r"^BENCH_COUNT (\S+) (\S+)$", r.stdout, re.M)
    return {"rows": rows, "counts": counts}


def fmt_us(ns):
    ns = float(ns)
    return "%.2f us" % (ns / 1000) if ns >= 1000 else "%.0f ns" % ns


def start_redis():
    """A private redis-server for the exact target, pinned with the load; its process."""
    if not shutil.which("redis-server"):
        sys.exit("redis-server is required (make deps installs it)")
    d = os.path.join(WORK, "redis")
    os.makedirs(d, exist_ok=True)
    proc = subprocess.Popen(
        ["taskset", "-c", CPU_LOAD, "redis-server", "--port", str(PORTS["redis"]), "--bind",
         "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", d],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        r = sh(["redis-cli", "-p", str(PORTS["redis"]), "ping"])
        if r.stdout.strip() == "PONG":
            return proc
        time.sleep(0.05)
    sys.exit("redis-server did not start")


def redis_cpu_seconds(proc):
    with open("/proc/%d/stat" % proc.pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_calls():
    """The exact target's Redis calls so far, by operation and result."""
    r = sh(["curl", "-s", "http://127.0.0.1:%d/metrics" % PORTS["exact"]])
    calls = {}
    for op, result, v in re.findall(
            r'^gateway_redis_calls_total\{op="(\w+)",result="(\w+)"\} (\S+)$', r.stdout, re.M):
        calls[(op, result)] = float(v)
    degraded = sum(float(v) for v in re.findall(
        r"^gateway_cluster_limit_degraded_total\{.*\} (\S+)$", r.stdout, re.M))
    calls[("degraded", "all")] = degraded
    return calls


def log_counts():
    """The logged target's usage-log counters, by series."""
    r = sh(["curl", "-s", "http://127.0.0.1:%d/metrics" % PORTS["logged"]])
    return {name + labels: float(v) for name, labels, v in re.findall(
        r"^(gateway_log_\w+)(\{.*\})? (\S+)$", r.stdout, re.M)}


def scrape_metrics():
    """The gateway target's own count of what it served, from its /metrics."""
    r = sh(["curl", "-s", "http://127.0.0.1:%d/metrics" % PORTS["gateway"]])
    total = sum(float(v) for v in re.findall(r"^gateway_requests_total\{.*\} (\S+)$", r.stdout, re.M))
    series = re.search(r"^gateway_metrics_series (\d+)$", r.stdout, re.M)
    return {"requests": int(total), "series": int(series.group(1)) if series else -1,
            "bytes": len(r.stdout)}


def report(info, params, results, rss, ir, micro, load_before, load_after, scrape, deb):
    out = []
    w = out.append
    w("# Benchmarks: what the gateway costs over plain nginx\n")
    w("Produced by `make bench` (`bench/bench.py`): %s; do not edit by hand.\n" % params["desc"])
    w("| | |\n|---|---|")
    for k in ("date", "cpu", "kernel", "nginx", "rustc", "wrk", "commit"):
        w("| %s | %s |" % (k, info[k]))
    w("| load average | %s before, %s after |" % (load_before, load_after))
    w("| setup | target nginx (1 worker) pinned to CPU %s; wrk (1 thread) and the mock "
      "upstream pinned to CPU %s; ~%d B chat request bodies with `Authorization` and "
      "`model`; mock: canned JSON with `usage`, canned SSE of 20 `data:` chunks + `[DONE]` in "
      "one buffer, and the module's mock provider streaming its reply one event per write, "
      "%s apart (chunked; it honours `include_usage`, so the gateway's strip really drops "
      "a usage chunk) |"
      % (CPU_GATEWAY, CPU_LOAD, len(request_body(False)), CHUNK_INTERVAL))
    w("| gateway | `ai_gateway on`: body read and parsed, key sha256 -> namespace among "
      "1,000 keys / 100 namespaces / 10 matchers, `X-AI-Gateway-*` stripped, "
      "`$ai_gateway_namespace` sent upstream, every request recorded in the metrics zone "
      "(`ai_gateway_metrics_zone bench 4m`), usage read from every response (stream requests, "
      "which do not ask for usage, get `stream_options.include_usage` added and the usage "
      "chunk taken back out of what the client receives) |")
    w("| nometrics | the same without `ai_gateway_metrics_zone` |")
    w("| full | the gateway with every policy type for the bench namespace (`models`, "
      "`message`, `input_tokens`, `output_tokens`, `concurrency`, `requests`, `tokens`, "
      "`quota`; limits never reached): the prompt's tokenizer-free upper bound for the input "
      "cap and the token window and quota (the limits are far, so no exact count), four "
      "counters taken and settled under the `ai_gateway_limit_zone` lock, "
      "`x-ratelimit-*` headers, streams through the output cap; and routing: the mock is a "
      "target behind `upstream ai_gateway_targets { ai_gateway_upstream; keepalive 64; }`, "
      "proxied with `nginx-conf/ai_gateway_proxy.conf` (provider key injected, failover "
      "set up) |")
    w("| method | %d rounds x %d s per run, targets interleaved (plain, nometrics, gateway, full) per "
      "scenario; ratios per round against plain from the same round; medians over rounds |\n"
      % (params["rounds"], params["duration"]))

    def cell(target, scen, key):
        return median([r[key] for r in results[(target, scen)]])

    def ratio(scen, key, base="plain", target="gateway"):
        per_round = [g[key] / p[key] for p, g in zip(results[(base, scen)],
                                                    results[(target, scen)]) if p[key]]
        return median(per_round)

    w("## Throughput and CPU per request, concurrency 32\n")
    w("| response | plain req/s | gateway req/s | ratio | plain CPU us/req | gateway CPU us/req | ratio |")
    w("|---|---:|---:|---:|---:|---:|---:|")
    for scen, _, _, _ in C32:
        w("| %s | %.0f | %.0f | %.3f | %.1f | %.1f | **%.3f** |" % (
            LABELS[scen], cell("plain", scen, "rps"), cell("gateway", scen, "rps"),
            ratio(scen, "rps"), cell("plain", scen, "cpu_us"), cell("gateway", scen, "cpu_us"),
            ratio(scen, "cpu_us")))
    w("")
    w("## Side by side: CPU and instructions per request, concurrency 32\n")
    w("CPU/request as a ratio to plain nginx in the same rounds; instructions per request "
      "from callgrind (what the module adds is the difference to plain).\n")
    w("| response | plain Ir | gateway CPU | gateway Ir | gateway +Ir | full CPU | full Ir | full +Ir |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    for scen, _, _, _ in C32:
        p, g, f = ir[("plain", scen)], ir[("gateway", scen)], ir[("full", scen)]
        w("| %s | %.0f | **%.3f** | %.0f | %+.0f | **%.3f** | %.0f | %+.0f |" % (
            LABELS[scen], p, ratio(scen, "cpu_us"), g, g - p,
            ratio(scen, "cpu_us", "plain", "full"), f, f - p))
    w("")
    if deb:
        w("## Side by side with a Lua layer, on Debian's nginx (%s)\n" % deb["nginx"])
        w("Debian's own nginx with `libnginx-mod-http-lua` doing the original gateway's work "
          "(key -> namespace among the same 1,000 keys, a per-namespace counter per minute in "
          "a shared dict, a per-namespace, per-status metric in the log phase; no body "
          "parsing, no usage), next to the module built for that nginx (`make debian`) as "
          "`gateway` (body parse, key sha256, metrics, usage read, include_usage strip) and "
          "`full` (every policy, routing). %d rounds x %d s, interleaved; CPU/request as a "
          "ratio to plain in the same round, medians.\n" % (deb["rounds"], params["duration"]))
        w("| response | plain CPU us/req | Lua layer | gateway | full |")
        w("|---|---:|---:|---:|---:|")
        dres = deb["results"]
        for scen, _, _, _ in C32:
            def dratio(t):
                return median([x["cpu_us"] / p["cpu_us"] for p, x in zip(
                    dres[("deb_plain", scen)], dres[(t, scen)]) if p["cpu_us"]])
            w("| %s | %.1f | %.3f | %.3f | %.3f |" % (
                LABELS[scen], median([r["cpu_us"] for r in dres[("deb_plain", scen)]]),
                dratio("deb_lua"), dratio("deb_gateway"), dratio("deb_full")))
        w("| RSS / PSS master + worker | %s |" % " | ".join(
            "%d / %d MiB" % (deb["mem"][t][0] // 1024, deb["mem"][t][1] // 1024)
            for t in DEB_TARGETS))
        w("")
    w("## Full pipeline: every policy and routing, concurrency 32 and 1\n")
    w("| response | plain CPU us/req | full CPU us/req | ratio to plain | ratio to gateway | Ir/req | Ir ratio to plain | Ir added over gateway | added p50 (c=1) over plain |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for scen, _, _, _ in C32:
        c1 = {"json_c32": "json_c1", "sse_c32": "sse_c1"}.get(scen)
        added = ("%+.0f us" % median([g["p50"] - p["p50"] for p, g in zip(
            results[("plain", c1)], results[("full", c1)])])) if c1 else "-"
        pol = ir[("full", scen)]
        w("| %s | %.1f | %.1f | **%.3f** | %.3f | %.0f | %.3f | %+.0f | %s |" % (
            LABELS[scen], cell("plain", scen, "cpu_us"), cell("full", scen, "cpu_us"),
            ratio(scen, "cpu_us", "plain", "full"),
            ratio(scen, "cpu_us", "gateway", "full"), pol, pol / ir[("plain", scen)],
            pol - ir[("gateway", scen)], added))
    w("")
    w("## Cluster limits: exact and approximate modes against local, concurrency 32 and 1\n")
    w("`exact` is `full` with its four counting policies (concurrency, requests, tokens, quota) "
      "held in Redis (`ai_gateway_cluster_limits mode=exact`; a private redis-server on the load "
      "CPU): each request is parked while one admit script takes its counters, and one finish "
      "script settles the tokens and releases the lease at its end. `full` keeps the same "
      "counters in the local zone. `approx` is `full` with its requests and tokens windows "
      "approximate (`mode=approximate sync=100ms`; its concurrency and quota local): no Redis "
      "call per request, one sync script per counter every 100 ms. Gateway CPU is the nginx "
      "process (its runtime thread included); Redis's own CPU per request is shown apart.\n")
    w("| response | full CPU us/req | exact CPU us/req | exact / full | exact / plain | Redis CPU us/req (exact) | approx CPU us/req | approx / full | Redis CPU us/req (approx) | full req/s | exact req/s | approx req/s |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for scen, _, _, _ in C32:
        w("| %s | %.1f | %.1f | **%.3f** | %.3f | %.1f | %.1f | **%.3f** | %.2f | %.0f | %.0f | %.0f |" % (
            LABELS[scen], cell("full", scen, "cpu_us"), cell("exact", scen, "cpu_us"),
            ratio(scen, "cpu_us", "full", "exact"), ratio(scen, "cpu_us", "plain", "exact"),
            cell("exact", scen, "redis_cpu_us"), cell("approx", scen, "cpu_us"),
            ratio(scen, "cpu_us", "full", "approx"), cell("approx", scen, "redis_cpu_us"),
            cell("full", scen, "rps"), cell("exact", scen, "rps"), cell("approx", scen, "rps")))
    w("")
    w("| concurrency 1 | full p50 | exact p50 | added p50 | exact p99 | added p99 | approx p50 | added p50 | approx p99 | added p99 |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for scen, label in (("json_c1", "JSON"), ("sse_c1", "SSE, one buffer")):
        def added(t, q):
            return median([e[q] - f[q] for f, e in zip(results[("full", scen)],
                                                       results[(t, scen)])])
        w("| %s | %.0f us | %.0f us | **%+.0f us** | %.0f us | %+.0f us | %.0f us | **%+.0f us** | %.0f us | %+.0f us |" % (
            label, cell("full", scen, "p50"), cell("exact", scen, "p50"), added("exact", "p50"),
            cell("exact", scen, "p99"), added("exact", "p99"), cell("approx", scen, "p50"),
            added("approx", "p50"), cell("approx", scen, "p99"), added("approx", "p99")))
    w("")
    redis = scrape.get("redis", {})
    n = max(scrape.get("exact_requests", 0), 1)
    w("Redis calls per request of the exact target over the whole run (from its "
      "`gateway_redis_calls_total`): admit %.2f, finish %.2f, renew %.3f; calls that failed "
      "or timed out: %d; requests decided without Redis: %d.\n" % (
          sum(v for (op, _), v in redis.items() if op == "admit") / n,
          sum(v for (op, _), v in redis.items() if op == "finish") / n,
          sum(v for (op, _), v in redis.items() if op == "renew") / n,
          sum(v for (op, res), v in redis.items()
              if op != "degraded" and res in ("error", "timeout")),
          redis.get(("degraded", "all"), 0)))
    w("## Usage logs: full with and without ai_gateway_usage_log, concurrency 32 and 1\n")
    w("`logged` is `full` with `ai_gateway_usage_log` (defaults: batches of 500, flushed every "
      "second at the latest) shipping to the private redis-server's stream (emptied after each "
      "run, as the ingestor would). Gateway CPU is the nginx process, its runtime thread "
      "included; Redis's own CPU per request is shown apart.\n")
    w("| response | full CPU us/req | logged CPU us/req | logged / full | logged / plain | Redis CPU us/req (logged) | full req/s | logged req/s |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    for scen, _, _, _ in C32:
        w("| %s | %.1f | %.1f | **%.3f** | %.3f | %.2f | %.0f | %.0f |" % (
            LABELS[scen], cell("full", scen, "cpu_us"), cell("logged", scen, "cpu_us"),
            ratio(scen, "cpu_us", "full", "logged"), ratio(scen, "cpu_us", "plain", "logged"),
            cell("logged", scen, "redis_cpu_us"), cell("full", scen, "rps"),
            cell("logged", scen, "rps")))
    w("")
    w("| concurrency 1 | full p50 | logged p50 | added p50 | logged p99 | added p99 |")
    w("|---|---:|---:|---:|---:|---:|")
    for scen, label in (("json_c1", "JSON"), ("sse_c1", "SSE, one buffer")):
        def added_log(q):
            return median([e[q] - f[q] for f, e in zip(results[("full", scen)],
                                                       results[("logged", scen)])])
        w("| %s | %.0f us | %.0f us | **%+.0f us** | %.0f us | %+.0f us |" % (
            label, cell("full", scen, "p50"), cell("logged", scen, "p50"), added_log("p50"),
            cell("logged", scen, "p99"), added_log("p99")))
    w("")
    lc = scrape.get("log", {})
    w("Records of the logged target over the whole run (its `gateway_log_*` counters): %d "
      "requests served, %d queued, %d shipped to Redis, %d spooled, %d dropped.\n" % (
          scrape.get("logged_requests", 0), lc.get("gateway_log_queued_total", 0),
          lc.get('gateway_log_shipped_total{to="redis"}', 0),
          lc.get("gateway_log_spooled_total", 0),
          sum(v for k, v in lc.items() if k.startswith("gateway_log_dropped_total"))))
    w("## Latency, concurrency 1\n")
    w("| response | plain p50 | gateway p50 | added p50 | plain p99 | gateway p99 | added p99 | CPU us/req ratio |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    for scen, label in (("json_c1", "JSON"), ("sse_c1", "SSE, one buffer")):
        added50 = median([g["p50"] - p["p50"] for p, g in zip(results[("plain", scen)],
                                                             results[("gateway", scen)])])
        added99 = median([g["p99"] - p["p99"] for p, g in zip(results[("plain", scen)],
                                                             results[("gateway", scen)])])
        w("| %s | %.0f us | %.0f us | **%+.0f us** | %.0f us | %.0f us | %+.0f us | %.3f |" % (
            label, cell("plain", scen, "p50"), cell("gateway", scen, "p50"), added50,
            cell("plain", scen, "p99"), cell("gateway", scen, "p99"), added99,
            ratio(scen, "cpu_us")))
    w("")
    w("## Instructions per request (callgrind; deterministic)\n")
    w("One nginx process under `valgrind --tool=callgrind`, %d keepalive requests after a "
      "warm-up (%d for the paced stream), client and mock outside the count.\n"
      % (params["ir_requests"], max(params["ir_requests"] // 5, 40)))
    w("| response | plain | gateway | added | ratio | full | added |")
    w("|---|---:|---:|---:|---:|---:|---:|")
    for scen, _, _, _ in C32:
        p, g, f = ir[("plain", scen)], ir[("gateway", scen)], ir[("full", scen)]
        w("| %s | %.0f | %.0f | %+.0f | **%.3f** | %.0f | %+.0f |" % (
            LABELS[scen], p, g, g - p, g / p, f, f - p))
    w("")
    w("Heap allocations of the module per request (calls to Rust's allocator counted by "
      "callgrind in the same runs; nginx itself allocates from its pools):\n")
    w("| response | gateway | full |")
    w("|---|---:|---:|")
    for scen, _, _, _ in C32:
        w("| %s | %.1f | %.1f |" % (LABELS[scen], ALLOCS.get(("gateway", scen), 0),
                                   ALLOCS.get(("full", scen), 0)))
    w("")
    w("Callgrind counts user-space instructions only: the kernel's share (sockets, epoll), "
      "which is most of plain nginx's cost per request, is outside it, so this ratio is "
      "higher than the CPU-time ratio above; the added count is what the module itself "
      "executes. Under valgrind sha256 runs the portable code (no SHA-NI), about 3,500 "
      "instructions per key; natively it is the `identify/sha256_of_key` micro-benchmark "
      "below.\n")
    w("## Metrics on vs off\n")
    w("The same gateway with and without `ai_gateway_metrics_zone` (log-phase recording into "
      "shared memory: one series lookup and a few atomic adds per request, plus the in-flight "
      "gauge), interleaved in the same rounds.\n")
    w("| response | off CPU us/req | on CPU us/req | CPU ratio | off Ir/req | on Ir/req | Ir ratio | added p50 (c=1) |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    for scen, _, _, _ in C32:
        c1 = {"json_c32": "json_c1", "sse_c32": "sse_c1"}.get(scen)
        added = ("%+.0f us" % median([g["p50"] - p["p50"] for p, g in zip(
            results[("nometrics", c1)], results[("gateway", c1)])])) if c1 else "-"
        off, on = ir[("nometrics", scen)], ir[("gateway", scen)]
        w("| %s | %.1f | %.1f | **%.3f** | %.0f | %.0f | %.3f | %s |" % (
            LABELS[scen], cell("nometrics", scen, "cpu_us"), cell("gateway", scen, "cpu_us"),
            ratio(scen, "cpu_us", "nometrics", "gateway"), off, on, on / off, added))
    w("")
    w("Accounting check: over the timed rounds `gateway_requests_total` on the gateway's own "
      "`/metrics` grew by %d; wrk completed %d requests against it (%+d). wrk does not count "
      "the requests in flight when each run stops (at most %d here, one per connection); the "
      "gateway counts them too, as 499s. Zone after the run: %d series, exposition %d bytes.\n"
      % (scrape["counted"], rss["gateway"][2], scrape["counted"] - rss["gateway"][2],
         scrape["cut"], scrape["series"], scrape["bytes"]))
    w("## Memory\n")
    w("PSS counts a page shared by several processes once, split between them: the tokenizer "
      "tables (both encodings, built in the master before the fork) are shared by the master "
      "and every worker, so RSS counts them once per process and PSS once in all.\n")
    w("| | plain | nometrics | gateway | full |")
    w("|---|---:|---:|---:|---:|")
    for i, label in ((0, "RSS after warm-up (master + worker)"), (1, "RSS after the run"),
                     (3, "PSS after warm-up (master + worker)"), (4, "PSS after the run")):
        w("| %s | %d KiB | %d KiB | %d KiB | %d KiB |" % (
            label, rss["plain"][i], rss["nometrics"][i], rss["gateway"][i], rss["full"][i]))
    w("| requests served in between | %d | %d | %d | %d |\n" % (
        rss["plain"][2], rss["nometrics"][2], rss["gateway"][2], rss["full"][2]))
    errors = sum(r["errors"] for rs in results.values() for r in rs)
    w("Socket errors or non-2xx answers during the runs: %d.\n" % errors)
    w("## Micro-benchmarks of the pure core (`cargo bench --no-default-features --bench core`)\n")
    w("| case | median | min | max | bytes/s |")
    w("|---|---:|---:|---:|---:|")
    sizes = {"KB": 1024, "MB": 1 << 20}
    for name, med, lo, hi in micro["rows"]:
        m = re.search(r"_(\d+)(KB|MB)(/|$)", name) or re.search(r"/(\d+)(KB|MB)(/|$)", name)
        rate = "-"
        if m and not name.startswith("tokens/"):
            nbytes = int(m.group(1)) * sizes[m.group(2)]
            rate = "%.0f MB/s" % (nbytes / (float(med) * 1e-9) / 1e6)
        w("| `%s` | %s | %s | %s | %s |" % (name, fmt_us(med), fmt_us(lo), fmt_us(hi), rate))
    w("")
    w("`identify/key_hit/N_keys`: sha256 of a different key each time and its lookup among N "
      "keys; `identify/unknown_key_last_matcher`: an unknown key, then 10 header matchers tried "
      "until the last one matches; `parse_request/<size>`: the access-phase parse of a chat "
      "body (the one pass over it: validation, the fields the pipeline reads, where the "
      "prompt's fields lie); `prompt_bound/<size>`: the prompt's tokenizer-free upper bound "
      "from those fields; `tokens/count/<encoding>/<text>_<size>`: exact token count of English "
      "prose, Rust code, Chinese or base64 from the oracle corpus, or a run of spaces; "
      "`tokens/count_prompt/chat_32KB`: a chat request's prompt tokens with framing; "
      "`usage/sse_chunk/track`: the tracker reading one ~290-byte OpenAI stream chunk (as "
      "the stream comes, no rewriting); `stream/sse_chunk/track_strip`: one chunk through the "
      "include_usage strip (tracker and strip in one pass over the event); "
      "`stream/sse_chunk/track_strip_cap`: the same with an output cap; "
      "`stream/sse_1MB/track_strip_cap`: a megabyte of such chunks in 4 KB pieces; "
      "`usage/json_response/track`: reading a whole JSON completion; "
      "`policy/admit_settle_release/8_policies`: the limiter path of one request with the "
      "eight policies of the full target (prompt given).\n")
    w("## Token counting throughput (one core)\n")
    w("| text | o200k_base | cl100k_base |")
    w("|---|---:|---:|")
    rates = {}
    for name, med, _, _ in micro["rows"]:
        m = re.match(r"tokens/count/(\w+)/(\w+?)_(\d+)(KB|MB)$", name)
        if m:
            nbytes = int(m.group(3)) * sizes[m.group(4)]
            rates[(m.group(2) + " " + m.group(3) + " " + m.group(4), m.group(1))] = \
                nbytes / (float(med) * 1e-9) / 1e6
    for text in sorted({t for t, _ in rates}, key=lambda t: (t.split()[0], sizes[t.split()[2]] * int(t.split()[1]))):
        w("| %s | %s | %s |" % (text, *("%.1f MB/s" % rates[(text, e)] if (text, e) in rates else "-"
                                          for e in ("o200k_base", "cl100k_base"))))
    w("")
    w("## Targets (recorded, not asserted)\n")
    w(TARGETS_TEXT + "\n")
    added = median([g["p50"] - p["p50"] for p, g in zip(results[("plain", "json_c1")],
                                                       results[("gateway", "json_c1")])])
    added_sse = median([g["p50"] - p["p50"] for p, g in zip(results[("plain", "sse_c1")],
                                                           results[("full", "sse_c1")])])
    added_json = median([g["p50"] - p["p50"] for p, g in zip(results[("plain", "json_c1")],
                                                            results[("full", "json_c1")])])
    growth = rss["gateway"][1] - rss["gateway"][0]
    w("Where this commit stands:\n")
    w("- Gateway without policies and routing, CPU/request: %s (target <= 1.10x)."
      % ", ".join("%s %.3fx" % (LABELS[sc], ratio(sc, "cpu_us")) for sc, _, _, _ in C32))
    w("- Full pipeline (every policy and routing), CPU/request: %s (target <= 1.25x)."
      % ", ".join("%s %.3fx" % (LABELS[sc], ratio(sc, "cpu_us", "plain", "full"))
                  for sc, _, _, _ in C32))
    w("- Instructions added per request by the full pipeline: %s (targets: JSON <= 15k, a "
      "20-event stream <= 25k)."
      % ", ".join("%s %+.0f" % (LABELS[sc], ir[("full", sc)] - ir[("plain", sc)])
                  for sc, _, _, _ in C32))
    w("- Added p50 latency at concurrency 1: gateway JSON %+.0f us; full JSON %+.0f us, full "
      "SSE %+.0f us (target <= 20 us)." % (added, added_json, added_sse))
    w("- Gateway RSS %+d KiB over %d requests (target: flat; %d requests is %s 1M); PSS of "
      "master + worker %d KiB (full: %d KiB)."
      % (growth, rss["gateway"][2], rss["gateway"][2],
         "at least" if rss["gateway"][2] >= 1_000_000 else "less than", rss["gateway"][4],
         rss["full"][4]))
    return "\n".join(out) + "\n"


# --- main --------------------------------------------------------------------------------

def debian_rounds(args, quick):
    """The side-by-side run on Debian's nginx: plain, the Lua layer, the module's gateway and
    full pipeline (the Debian build of the module), interleaved as the main rounds are."""
    pids = {"mock": start("mock", CPU_LOAD)}
    results = {}
    mem = {}
    try:
        for t in DEB_TARGETS:
            pids[t] = start(t, CPU_GATEWAY)
        time.sleep(0.3)
        for t in DEB_TARGETS:
            for _, path, stream, conns in C32:
                check(t, path, stream)
                wrk(t, path, stream, conns, 1, pids[t])
        rounds = 1 if quick else 3
        for rnd in range(rounds):
            for scen, path, stream, conns in C32:
                for t in DEB_TARGETS:
                    r = wrk(t, path, stream, conns, args.duration, pids[t])
                    results.setdefault((t, scen), []).append(r)
                    print("debian round %d %-11s %-11s %8.0f req/s %7.1f us/req CPU%s"
                          % (rnd + 1, scen, t, r["rps"], r["cpu_us"],
                             "  ERRORS %d" % r["errors"] if r["errors"] else ""), flush=True)
        for t in DEB_TARGETS:
            mem[t] = (rss_kb(pids[t]), pss_kb(pids[t]))
    finally:
        for pid in pids.values():
            stop(pid)
    version = sh([DEB_NGINX, "-v"])
    return {"results": results, "mem": mem, "rounds": rounds,
            "nginx": (version.stdout + version.stderr).strip().replace("nginx version: ", "")}


def main():
    quick = os.environ.get("BENCH_QUICK", "0") not in ("", "0")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=1 if quick else 5)
    ap.add_argument("--duration", type=int, default=1 if quick else 5)
    ap.add_argument("--report", default=os.path.join(
        WORK if quick else os.path.join(ROOT, "docs"),
        "report-quick.md" if quick else "benchmarks.md"))
    args = ap.parse_args()
    for tool in ("wrk", "taskset", "curl"):
        if not shutil.which(tool):
            sys.exit("%s is required (make bench installs it)" % tool)
    if not (os.path.exists(NGINX) and os.path.exists(MODULE)):
        sys.exit("build first: make build")

    info = machine_info()
    load_before = loadavg()
    print("micro-benchmarks (cargo bench)...", flush=True)
    micro = micro_benchmarks(quick)

    write_configs()
    redis = start_redis()
    pids = {"mock": start("mock", CPU_LOAD)}
    for t in TARGETS:
        pids[t] = start(t, CPU_GATEWAY)
    try:
        time.sleep(0.3)
        for t in TARGETS:
            for _, path, stream, _ in C32:
                check(t, path, stream)
        # warm-up: connections, keepalive pools, allocator
        for t in TARGETS:
            for _, path, stream, conns in C32:
                wrk(t, path, stream, conns, 1, pids[t])
        # The first scrape walks the metrics zone's index and maps those shared pages into
        # the worker's RSS: take it before the baseline so RSS growth means heap growth.
        scrape_before = scrape_metrics()
        rss = {t: [rss_kb(pids[t]), 0, 0, pss_kb(pids[t]), 0] for t in TARGETS}
        results = {(t, s[0]): [] for t in TARGETS for s in SCENARIOS}
        calls_before = redis_calls()
        for rnd in range(args.rounds):
            for scen, path, stream, conns in SCENARIOS:
                for t in TARGETS:
                    redis0 = redis_cpu_seconds(redis)
                    r = wrk(t, path, stream, conns, args.duration, pids[t])
                    if t in ("exact", "approx", "logged"):
                        r["redis_cpu_us"] = ((redis_cpu_seconds(redis) - redis0) * 1e6
                                             / max(r["requests"], 1))
                    if t == "logged":
                        # the records shipped so far leave the stream, as the ingestor's would
                        sh(["redis-cli", "-p", str(PORTS["redis"]), "DEL",
                            "bench-log:{log}:stream", "bench-log:{log}:records"])
                    results[(t, scen)].append(r)
                    rss[t][2] += r["requests"]
                    print("round %d %-9s %-8s %8.0f req/s %7.1f us/req CPU  p50 %5d us  p99 %6d us%s"
                          % (rnd + 1, scen, t, r["rps"], r["cpu_us"], r["p50"], r["p99"],
                             "  ERRORS %d" % r["errors"] if r["errors"] else ""), flush=True)
        scrape = scrape_metrics()
        scrape["log"] = log_counts()
        scrape["logged_requests"] = sum(r["requests"] for s in SCENARIOS
                                        for r in results[("logged", s[0])])
        calls_after = redis_calls()
        scrape["redis"] = {k: v - calls_before.get(k, 0) for k, v in calls_after.items()}
        scrape["exact_requests"] = sum(r["requests"] for s in SCENARIOS
                                       for r in results[("exact", s[0])])
        scrape["counted"] = scrape["requests"] - scrape_before["requests"]
        scrape["cut"] = args.rounds * sum(c for _, _, _, c in SCENARIOS)
        for t in TARGETS:
            rss[t][1] = rss_kb(pids[t])
            rss[t][4] = pss_kb(pids[t])
            stop(pids.pop(t))
        count = 200 if quick else 2000
        ir = {}
        for t in IR_TARGETS:
            for scen, path, stream, _ in C32:
                # the paced stream takes ~35 ms a request: fewer of them
                n = count if scen != "chunked_c32" else max(count // 5, 40)
                ir[(t, scen)] = instructions(t, scen, path, stream, n)
                print("instructions/request %-9s %-11s %.0f" % (t, scen, ir[(t, scen)]),
                      flush=True)
    finally:
        for pid in pids.values():
            stop(pid)
        redis.terminate()
        redis.wait(timeout=30)

    deb = debian_rounds(args, quick) if debian_available() else None

    desc = "BENCH_QUICK smoke run, timings are not meaningful" if quick else "full run"
    params = {"rounds": args.rounds, "duration": args.duration, "desc": desc}
    params["ir_requests"] = count
    text = report(info, params, results, rss, ir, micro, load_before, loadavg(), scrape, deb)
    os.makedirs(os.path.dirname(args.report), exist_ok=True)
    with open(args.report, "w") as f:
        f.write(text)
    print("\n" + text)
    print("report written to %s" % os.path.relpath(args.report, ROOT))


if __name__ == "__main__":
    main()
