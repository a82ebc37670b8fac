#!/usr/bin/env python3
"""Start-up time of `switchboard serve`: time to the "listening on" line and to the first 200
from /readyz (fresh SQLite data directory, migrations applied), over N runs.

Usage: python3 crates/bench/startup.py target/release/switchboard [N]
"""
import subprocess, time, tempfile, urllib.request, sys, statistics, os
binary = sys.argv[1]
def once():
    d = tempfile.mkdtemp()
    t0 = time.perf_counter()
    p = subprocess.Popen([binary, "serve", "--data-dir", d, "--listen", "127.0.0.1:0"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env=dict(os.environ, SWITCHBOARD_ADMIN_TOKEN="startup-measure-token-123"))
    url = None
    for line in p.stdout:
        if "listening on" in line:
            url = [w for w in line.split() if w.startswith("http://")][0]
            break
    t_listen = time.perf_counter() - t0
    while True:
        try:
            if urllib.request.urlopen(url + "/readyz", timeout=1).status == 200:
                break
        except Exception:
            time.sleep(0.002)
    t_ready = time.perf_counter() - t0
    p.terminate(); p.wait()
    return t_listen, t_ready
runs = [once() for _ in range(int(sys.argv[2]) if len(sys.argv) > 2 else 10)]
for name, i in (("listening", 0), ("ready", 1)):
    xs = sorted(r[i] * 1000 for r in runs)
    print(f"{name}: median {statistics.median(xs):.1f} ms, min {xs[0]:.1f}, max {xs[-1]:.1f} ms over {len(xs)} runs")
