#!/usr/bin/env python3
"""Usage logs at scale, on this machine's MariaDB (127.0.0.1:3306, root, no password):

1. ingestion: N synthetic records (the nodes' line format) pushed into the Redis stream of a
   private redis-server as batches of 500, and the time one ingestor (a gateway nginx with
   ai_gateway_mysql + ai_gateway_redis + ai_gateway_usage_log) takes to move them into MySQL:
   records/s;
2. volume: DAYS days x ROWS rows/day of synthetic access logs generated in MariaDB (SEQUENCE
   engine), with the aggregates (latency histograms included; the minute summary for the last
   2 days) the ingestor would have made; bytes per row;
3. the usage API's answer time over that data (GET /api/v1/usage and /api/v1/access-logs
   through the config center, median and p95 of 20 calls each), and the SQL alone.

Usage: tools/usage_synth.py [--days 30] [--rows 1000000] [--ingest 200000] [--keep]
Needs `make build` (vendor/objs), redis-server and the mariadb client. The database
`aigw_synth` is dropped at the end unless --keep.
"""

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NGINX = os.path.join(ROOT, "vendor", "objs", "nginx")
MODULE = os.path.join(ROOT, "vendor", "objs", "ngx_http_ai_gateway_module.so")
WORK = os.path.join(ROOT, "vendor", "usage-synth")
DB = "aigw_synth"
API, REDIS = 18201, 18202
PREFIX = "synth"
PW = "synthetic admin password"
DAY_MS = 86_400_000
# the aggregates' latency histogram (src/core/access_log/latency.rs)
BOUNDS = [50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000]
HIST = ["latency_le_%d" % b for b in BOUNDS] + ["latency_gt_120000"]
HIST_COUNTS = ", ".join(["SUM(latency_ms <= %d)" % BOUNDS[0]]
                        + ["SUM(latency_ms > %d AND latency_ms <= %d)" % (a, b) for a, b in zip(BOUNDS, BOUNDS[1:])]
                        + ["SUM(latency_ms > %d)" % BOUNDS[-1]])
HIST_SUMS = ", ".join("SUM(%s)" % c for c in HIST)
AGGREGATES = ("usage_hourly", "usage_daily", "usage_hourly_summary", "usage_daily_summary", "usage_minutely_summary")


def sql(q, db=DB):
    r = subprocess.run(["mariadb", "--no-defaults", "-h", "127.0.0.1", "-u", "root", "-N", "-B"]
                       + (["-D", db] if db else []) + ["-e", q], capture_output=True, text=True)
    if r.returncode:
        sys.exit("sql failed: %s\n%s" % (q[:200], r.stderr))
    return r.stdout


def redis(*args):
    r = subprocess.run(["redis-cli", "-p", str(REDIS)] + [str(a) for a in args],
                       capture_output=True, text=True)
    return r.stdout.strip()


def wait_port(port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("port %d did not open" % port)


def start():
    shutil.rmtree(WORK, ignore_errors=True)
    for d in ("conf", "logs", "redis"):
        os.makedirs(os.path.join(WORK, d))
    redis_proc = subprocess.Popen(["redis-server", "--port", str(REDIS), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "no", "--dir",
                                   os.path.join(WORK, "redis")], stdout=subprocess.DEVNULL)
    with open(os.path.join(WORK, "conf", "admin.pw"), "w") as f:
        f.write(PW + "\n")
    with open(os.path.join(WORK, "conf", "gw.json"), "w") as f:
        f.write("{}")
    user = "user root root;\n" if os.geteuid() == 0 else ""
    with open(os.path.join(WORK, "conf", "nginx.conf"), "w") as f:
        f.write("""load_module %s;
%sworker_processes 1;
error_log logs/error.log notice;
pid logs/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    ai_gateway_config gw.json;
    ai_gateway_redis redis://127.0.0.1:%d prefix=%s timeout=1s;
    ai_gateway_mysql mysql://root@127.0.0.1:3306/%s timeout=10s;
    ai_gateway_admin_bootstrap file=admin.pw;
    ai_gateway_usage_log node=synth spool=spool;
    server { listen 127.0.0.1:%d; location /api/ { ai_gateway_admin; } }
}
""" % (MODULE, user, REDIS, PREFIX, DB, API))
    sql("DROP DATABASE IF EXISTS %s; CREATE DATABASE %s" % (DB, DB), db=None)
    wait_port(REDIS)
    subprocess.run([NGINX, "-p", WORK + "/", "-c", "conf/nginx.conf"], check=True)
    wait_port(API)
    return redis_proc


def login():
    for _ in range(100):
        try:
            req = urllib.request.Request("http://127.0.0.1:%d/api/v1/auth/login" % API,
                                         data=json.dumps({"username": "admin", "password": PW}).encode(),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req) as r:
                body = json.loads(r.read())
                cookie = r.headers.get("Set-Cookie", "").split(";")[0]
                return {"cookie": cookie, "csrf": body["csrf_token"]}
        except Exception:
            time.sleep(0.2)
    sys.exit("cannot log in")


def token(session):
    req = urllib.request.Request("http://127.0.0.1:%d/api/v1/tokens" % API,
                                 data=json.dumps({"name": "synth", "role": "viewer"}).encode(),
                                 headers={"Content-Type": "application/json",
                                          "Cookie": session["cookie"],
                                          "X-CSRF-Token": session["csrf"]})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())["token"]


NAMESPACES = ["ns%02d" % i for i in range(20)]
MODELS = ["gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "claude-3-haiku", "o3-mini", "gemini-1.5"]
TARGETS = {"gpt-4o": "openai", "gpt-4o-mini": "openai", "o3-mini": "openai",
           "claude-3-5-sonnet": "anthropic", "claude-3-haiku": "anthropic", "gemini-1.5": "google"}


def line(i, ts):
    ns = NAMESPACES[i % 20]
    model = MODELS[(i // 20) % 6]
    status = 200 if i % 50 else 429
    return json.dumps([1, "%032x" % random.getrandbits(128), ts, "synth", ns, "%012x" % (i % 200),
                       model, "chat", TARGETS[model], status, "" if status == 200 else "rate_limited",
                       random.randint(50, 3000), 40, 800, 200, 0, None, "provider", 1, 0],
                      separators=(",", ":"))


def ingest(n):
    """Records pushed as 500-record batches; seconds until all are rows."""
    now = int(time.time() * 1000)
    batches = []
    for b in range(0, n, 500):
        batches.append("\n".join(line(i, now - 1000 + i % 1000) for i in range(b, min(b + 500, n))) + "\n")
    # a pipeline of XADDs with the record counter, as the nodes' script keeps it
    script = "".join('XADD %s:{log}:stream * n 500 node synth b "%s"\n' % (PREFIX, b.replace('\\', '\\\\').replace('"', '\\"').replace("\n", "\\n"))
                     for b in batches)
    t0 = time.time()
    p = subprocess.run(["redis-cli", "-p", str(REDIS)], input=script, capture_output=True, text=True)
    pushed = time.time() - t0
    redis("INCRBY", "%s:{log}:records" % PREFIX, n)
    while True:
        got = int(sql("SELECT COUNT(*) FROM access_logs").strip())
        if got >= n:
            break
        if time.time() - t0 > 300:
            sys.exit("ingestion stalled at %d of %d" % (got, n))
        time.sleep(0.2)
    return time.time() - t0, pushed, p.returncode


def generate(days, rows):
    """DAYS x ROWS rows straight into MariaDB, and their aggregates."""
    today = int(time.time() * 1000) // DAY_MS
    per_hour_ms = DAY_MS / rows
    t0 = time.time()
    sql("SET GLOBAL innodb_flush_log_at_trx_commit = 2", db=None)
    for d in range(today - days + 1, today + 1):
        sql("""INSERT INTO access_logs (day, ts, request_id, node, namespace, key_id, model, route,
            target, status, error, latency_ms, ttfb_ms, prompt_tokens, completion_tokens,
            cached_tokens, reasoning_tokens, usage_source, attempts, stream)
          SELECT {d}, {d} * 86400000 + FLOOR(seq * {step}), CONCAT(LPAD(HEX({d}), 6, '0'), LPAD(HEX(seq), 26, '0')),
            'synth', CONCAT('ns', LPAD(seq % 20, 2, '0')), LPAD(HEX(seq % 200), 12, '0'),
            ELT(1 + (seq DIV 200) % 2 + 2 * (seq % 3), 'gpt-4o', 'gpt-4o-mini', 'claude-3-5-sonnet', 'claude-3-haiku', 'o3-mini', 'gemini-1.5'),
            'chat', IF(seq % 37 = 0, 'fallback', ELT(1 + seq % 3, 'openai', 'anthropic', 'openai')),
            IF(seq % 50 = 0, 429, IF(seq % 97 = 0, 502, 200)), IF(seq % 50 = 0, 'rate_limited', IF(seq % 97 = 0, 'upstream_failed', '')),
            50 + seq % 2900, 40 + seq % 300, 200 + seq % 1800, 20 + seq % 700, IF(seq % 4 = 0, 128, 0), NULL,
            'provider', 1 + (seq % 37 = 0), seq % 3 = 0
          FROM seq_0_to_{last}""".format(d=d, step=per_hour_ms, last=rows - 1))
        for table, col, div in (("usage_hourly", "hour", 3600000), ("usage_daily", "day", DAY_MS)):
            sql("""INSERT INTO {t} ({c}, namespace, key_id, model, target, status_class, requests, errors,
                prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, latency_ms_sum, latency_ms_max, {h})
              SELECT ts DIV {div}, namespace, key_id, model, target, status DIV 100, COUNT(*),
                SUM(status >= 400 OR error <> ''), SUM(IFNULL(prompt_tokens, 0)), SUM(IFNULL(completion_tokens, 0)),
                SUM(IFNULL(cached_tokens, 0)), SUM(IFNULL(reasoning_tokens, 0)), SUM(latency_ms), MAX(latency_ms), {hc}
              FROM access_logs WHERE day = {d} GROUP BY 1, 2, 3, 4, 5, 6""".format(
                t=table, c=col, div=div, d=d, h=", ".join(HIST), hc=HIST_COUNTS))
            sql("""INSERT INTO {t}_summary ({c}, namespace, key_id, model, target, status_class, requests, errors,
                prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, latency_ms_sum, latency_ms_max, {h})
              SELECT {c}, namespace, '', model, '', 0, SUM(requests), SUM(errors), SUM(prompt_tokens),
                SUM(completion_tokens), SUM(cached_tokens), SUM(reasoning_tokens), SUM(latency_ms_sum), MAX(latency_ms_max), {hs}
              FROM {t} WHERE {c} DIV {per} = {d} GROUP BY 1, 2, 4""".format(
                t=table, c=col, d=d, per=24 if col == "hour" else 1, h=", ".join(HIST), hs=HIST_SUMS))
        if d > today - 2:
            sql("""INSERT INTO usage_minutely_summary (minute, namespace, key_id, model, target, status_class, requests,
                errors, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, latency_ms_sum, latency_ms_max, {h})
              SELECT ts DIV 60000, namespace, '', model, '', 0, COUNT(*), SUM(status >= 400 OR error <> ''),
                SUM(IFNULL(prompt_tokens, 0)), SUM(IFNULL(completion_tokens, 0)), SUM(IFNULL(cached_tokens, 0)),
                SUM(IFNULL(reasoning_tokens, 0)), SUM(latency_ms), MAX(latency_ms), {hc}
              FROM access_logs WHERE day = {d} GROUP BY 1, 2, 4""".format(d=d, h=", ".join(HIST), hc=HIST_COUNTS))
        print("  day %d of %d generated (%.0f s)" % (d - today + days, days, time.time() - t0), flush=True)
    sql("ANALYZE TABLE access_logs, " + ", ".join(AGGREGATES))
    return time.time() - t0


def timed_get(path, tok, n=20):
    times = []
    status = None
    for _ in range(n):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (API, path),
                                     headers={"Authorization": "Bearer " + tok})
        t0 = time.time()
        with urllib.request.urlopen(req) as r:
            body = r.read()
            status = r.status
        times.append((time.time() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], status, len(body)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--ingest", type=int, default=200_000)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    redis_proc = start()
    try:
        tok = token(login())
        secs, pushed, _ = ingest(a.ingest)
        print("ingestion: %d records in %.1f s from the first XADD: %.0f records/s into MariaDB "
              "(pushing them into Redis took %.1f s)" % (a.ingest, secs, a.ingest / secs, pushed))
        # the volume run starts from empty tables; the ingestor keeps running meanwhile
        sql("DELETE FROM access_logs; " + "".join("DELETE FROM %s; " % t for t in AGGREGATES))
        gen = generate(a.days, a.rows)
        print("generated %d days x %d rows in %.0f s" % (a.days, a.rows, gen))
        print(sql("SELECT table_name, table_rows, ROUND(data_length / GREATEST(table_rows, 1)), "
                  "ROUND((data_length + index_length) / GREATEST(table_rows, 1)), "
                  "ROUND((data_length + index_length) / 1048576) FROM information_schema.TABLES "
                  "WHERE table_schema = '%s' AND table_name IN ('access_logs', %s)"
                  % (DB, ", ".join("'%s'" % t for t in AGGREGATES))))
        now = int(time.time())
        queries = [
            ("/api/v1/usage?interval=minute&group_by=namespace", "usage by namespace, last hour by minute"),
            ("/api/v1/usage?interval=minute&group_by=model&since=%d&limit=10000" % (now - 48 * 3600), "usage by model, 48 h by minute"),
            ("/api/v1/usage?interval=hour&group_by=namespace", "usage by namespace, last 24 h by hour"),
            ("/api/v1/usage?interval=day&group_by=namespace&since=%d" % (now - 30 * 86400), "usage by namespace, 30 days by day"),
            ("/api/v1/usage?interval=day&group_by=model&since=%d" % (now - 30 * 86400), "usage by model, 30 days by day"),
            ("/api/v1/usage?interval=day&group_by=namespace,key_id,model&namespace=ns07&since=%d" % (now - 30 * 86400), "one namespace by key and model, 30 days by day"),
            ("/api/v1/usage?interval=hour&group_by=model&namespace=ns07&since=%d" % (now - 7 * 86400), "one namespace by model, 7 days by hour"),
            ("/api/v1/usage?interval=hour&group_by=namespace&since=%d&limit=10000" % (now - 30 * 86400), "usage by namespace, 30 days by hour"),
            ("/api/v1/access-logs?limit=100", "access logs, newest page"),
            ("/api/v1/access-logs?namespace=ns07&status=5xx&limit=100", "access logs of one namespace's 5xx"),
        ]
        print("| query | median ms | p95 ms | status | bytes |")
        print("|---|---:|---:|---:|---:|")
        for path, what in queries:
            med, p95, status, size = timed_get(path, tok)
            print("| %s (`%s`) | %.1f | %.1f | %d | %d |" % (what, path.split("?")[1], med, p95, status, size))
    finally:
        subprocess.run([NGINX, "-p", WORK + "/", "-c", "conf/nginx.conf", "-s", "stop"])
        redis_proc.terminate()
        if not a.keep:
            sql("DROP DATABASE IF EXISTS %s" % DB, db=None)
        sql("SET GLOBAL innodb_flush_log_at_trx_commit = 1", db=None)


if __name__ == "__main__":
    main()
