#!/usr/bin/env python3
"""The module at another commit against this one, in the same run: CPU per request as a ratio
to plain nginx (gateway and full targets of bench.py, interleaved), then the other build's
instructions and heap allocations per request (callgrind).

Usage: bench/compare.py OLD_OBJS ROUNDS SECONDS, where OLD_OBJS is the vendor/objs directory
of a `make build` of the other commit (e.g. a clone checked out there), after `make build`
here. Prints a Markdown table."""

import os
import shutil
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

if len(sys.argv) != 4:
    sys.exit(__doc__)
OLD_OBJS = sys.argv[1]
OLD_NGINX = os.path.join(OLD_OBJS, "nginx")
OLD_MODULE = os.path.join(OLD_OBJS, "ngx_http_ai_gateway_module.so")
bench.write_configs()
bench.PORTS.update({"old_gateway": 18121, "old_full": 18122})
for name in ("gateway", "full"):
    src = os.path.join(bench.WORK, name); dst = os.path.join(bench.WORK, "old_" + name)
    shutil.copytree(src, dst)
    conf = open(os.path.join(dst, "conf", "nginx.conf")).read()
    conf = conf.replace(bench.MODULE, OLD_MODULE).replace("listen 127.0.0.1:%d;" % bench.PORTS[name], "listen 127.0.0.1:%d;" % bench.PORTS["old_" + name])
    open(os.path.join(dst, "conf", "nginx.conf"), "w").write(conf)
    shutil.rmtree(os.path.join(dst, "logs")); os.makedirs(os.path.join(dst, "logs"))
def start(name, cpu):
    saved = bench.NGINX
    if name.startswith("old_"): bench.NGINX = OLD_NGINX
    try: return bench.start(name, cpu)
    finally: bench.NGINX = saved
targets = ["plain", "old_gateway", "gateway", "old_full", "full"]
rounds, dur = int(sys.argv[2]), int(sys.argv[3])
pids = {"mock": bench.start("mock", bench.CPU_LOAD)}
for t in targets: pids[t] = start(t, bench.CPU_GATEWAY)
res = {}
try:
    time.sleep(0.5)
    for t in targets:
        for scen, path, stream, conns in bench.C32:
            bench.check(t, path, stream); bench.wrk(t, path, stream, conns, 1, pids[t])
    for r in range(rounds):
        for scen, path, stream, conns in bench.C32:
            base = None
            for t in targets:
                x = bench.wrk(t, path, stream, conns, dur, pids[t])
                if t == "plain": base = x["cpu_us"]
                res.setdefault((scen, t), []).append(x["cpu_us"] / base)
                res.setdefault((scen, t, "us"), []).append(x["cpu_us"])
                print(r, scen, t, round(x["cpu_us"], 1), flush=True)
finally:
    for t in targets: bench.stop(pids.pop(t))
ir = {}
try:
    for t in ["old_gateway", "old_full"]:
        for scen, path, stream, _ in bench.C32:
            saved = bench.NGINX; bench.NGINX = OLD_NGINX
            try: ir[(t, scen)] = bench.instructions(t, scen, path, stream, 500 if scen != "chunked_c32" else 60)
            finally: bench.NGINX = saved
            print("ir", t, scen, round(ir[(t, scen)]), "allocs %.1f" % bench.ALLOCS[(t, scen)], flush=True)
finally:
    bench.stop(pids["mock"])
print("| response | plain CPU us/req | gateway before | gateway after | full before | full after |")
print("|---|---:|---:|---:|---:|---:|")
for scen, _, _, _ in bench.C32:
    m = lambda t: statistics.median(res[(scen, t)])
    print("| %s | %.1f | %.3f | %.3f | %.3f | %.3f |" % (bench.LABELS[scen], statistics.median(res[(scen, "plain", "us")]), m("old_gateway"), m("gateway"), m("old_full"), m("full")))
