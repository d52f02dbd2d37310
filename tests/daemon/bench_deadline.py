#!/usr/bin/python3
"""bench_deadline.py: how well mpcd keeps its deadline, and what a step costs besides planning.

Starts the real mpcd (tests/clients/mpcd_harness.py) with a small random model, runs N
closed-loop sessions (one thread and connection each) for S seconds at a deadline of D ms,
and prints, for 1 and 8 sessions by default:
  - lateness = reply received - (request sent + deadline), client side, in ms: an upper
    bound of the daemon's own figure (its clock starts when it reads the frame);
  - the daemon's lateness (reply queued - deadline) over the last minute from /status;
  - non-planning overhead per step = round trip - plan_us: framing, decode, queueing,
    belief update, encode, loopback, client (Python: an upper bound); the daemon's own
    figure (frame read -> reply queued, minus planning) from /status; and queue_us +
    belief_us from the replies;
  - steps, deadline cuts, fallbacks, errors.

    bench_deadline.py [--deadline-ms 20] [--seconds 5] [--sessions 1,8] [--json]
                      [--daemon-arg ARG ...]

Exit status 0, or 77 when mpcd is not built. Timing figures depend on the machine; the
script asserts nothing about them.
"""
import argparse
import json
import os
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "clients"))
sys.path.insert(0, os.path.join(REPO, "clients", "python"))

from mpcd_harness import Mpcd, find_mpcd, make_model  # noqa: E402

import mpc_client  # noqa: E402


def pct(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def summary(xs):
    return {"p50": pct(xs, 0.5), "p99": pct(xs, 0.99), "max": max(xs) if xs else float("nan")}


def run_sessions(address, n, seconds, deadline_ms):
    late, overhead, inside, errors, worst = [], [], [], [], [(0.0, None)]
    counts = {"steps": 0, "cuts": 0, "fallbacks": 0}
    lock = threading.Lock()

    def client(k):
        my_late, my_over, my_in, c_cut, c_fb, steps = [], [], [], 0, 0, 0
        try:
            with mpc_client.Client(address, timeout=10) as c:
                c.hello("bench/%d" % k)
                t = 0
                stop = time.monotonic() + seconds
                while time.monotonic() < stop:
                    o = [0.1 * ((t + k) % 17), 0.2, -0.3]
                    t0 = time.monotonic()
                    a = c.step(o, seq=t, reset=(t == 0), reward=0.0)
                    rtt = time.monotonic() - t0
                    my_late.append((rtt - deadline_ms / 1000.0) * 1000.0)
                    my_over.append(rtt * 1000.0 - a.plan_us / 1000.0)
                    my_in.append((a.queue_us + a.belief_us) / 1000.0)
                    if rtt * 1000.0 > worst[0][0]:
                        worst[0] = (rtt * 1000.0, "queue %.2f belief %.2f plan %.2f ms, "
                                    "%d iterations" % (a.queue_us / 1e3, a.belief_us / 1e3,
                                                       a.plan_us / 1e3, a.iterations))
                    c_cut += a.deadline_cut
                    c_fb += a.fallback
                    steps += 1
                    t += 1
        except mpc_client.MpcError as e:
            errors.append(repr(e))
        with lock:
            late.extend(my_late)
            overhead.extend(my_over)
            inside.extend(my_in)
            counts["steps"] += steps
            counts["cuts"] += c_cut
            counts["fallbacks"] += c_fb

    threads = [threading.Thread(target=client, args=(k,)) for k in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    counts["worst"] = "%.2f ms round trip: %s" % worst[0]
    return late, overhead, inside, counts, errors


def daemon_window(d, series):
    """p50/p99/max in ms of one of /status's last-minute series (seconds)."""
    with urllib.request.urlopen("http://%s/status" % d.status_address, timeout=5) as r:
        doc = json.loads(r.read().decode())
    w = doc.get("last_minute", {}).get(series, {})
    return {k: w.get(k, float("nan")) * 1000.0 for k in ("p50", "p99", "max")}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--deadline-ms", type=float, default=20.0)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--sessions", default="1,8", help="comma-separated session counts")
    p.add_argument("--json", action="store_true", help="one JSON object per session count")
    p.add_argument("--daemon-arg", action="append", default=[])
    a = p.parse_args()
    if not find_mpcd():
        print("bench_deadline: mpcd is not built; skipping", file=sys.stderr)
        return 77
    import tempfile
    with tempfile.TemporaryDirectory(prefix="mpcd-bench-") as tmp:
        model = make_model(os.path.join(tmp, "m.safetensors"), 3, 1)
        for n in [int(x) for x in a.sessions.split(",")]:
            # A fresh daemon per row, so /status's last minute is this row's alone.
            d = Mpcd(model, deadline_ms=a.deadline_ms, extra_args=a.daemon_arg)
            d.start()
            try:
                late, over, inside, counts, errors = run_sessions(d.address, n, a.seconds,
                                                          a.deadline_ms)
                dl = daemon_window(d, "lateness_s")
                dov = daemon_window(d, "overhead_s")
            finally:
                d.stop()
            row = {"sessions": n, "deadline_ms": a.deadline_ms, "steps": counts["steps"],
                   "deadline_cuts": counts["cuts"], "fallbacks": counts["fallbacks"],
                   "errors": len(errors), "client_lateness_ms": summary(late),
                   "daemon_lateness_ms": dl, "overhead_ms": summary(over),
                   "daemon_overhead_ms": dov,
                   "queue_belief_ms": summary(inside),
                   "slowest_step": counts["worst"]}
            if a.json:
                print(json.dumps(row))
                continue
            print("%d session(s), deadline %.1f ms: %d steps, %d cut, %d fallback, %d errors"
                  % (n, a.deadline_ms, counts["steps"], counts["cuts"], counts["fallbacks"],
                     len(errors)))
            for name, s in [("reply - deadline (client)", row["client_lateness_ms"]),
                            ("reply - deadline (daemon)", dl),
                            ("non-planning (client)", row["overhead_ms"]),
                            ("non-planning (daemon)", dov),
                            ("  of which queue + belief", row["queue_belief_ms"])]:
                print("  %-27s p50 %8.3f  p99 %8.3f  max %8.3f ms"
                      % (name, s["p50"], s["p99"], s["max"]))
            print("  slowest step: %s" % row["slowest_step"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
