#!/usr/bin/env python3
"""The crash test: kill engine processes with SIGKILL at random moments while they run
thousands of instances on a durable store, then `sagaflow recover`, then check that every
instance is terminal (succeeded, or compensated), that none whose start was acknowledged is
missing, and that no state execution is recorded twice.

With --pg-restart, PostgreSQL itself is restarted (immediate shutdown: a crash of the server)
in the middle of one round, while the engine keeps running; the engine must ride it out.

Usage (ctest runs it; see tests/CMakeLists.txt):
  crash_test.py --sagaflow BIN --driver BIN --flow FILE --mocks FILE
                --backend sqlite|postgresql [--rounds R] [--count N] [--pg-restart SCRIPT]
PostgreSQL comes from $SAGAFLOW_TEST_POSTGRES_URL (scripts/postgres.sh start); without it the
test fails when $SAGAFLOW_REQUIRE_POSTGRES=1 and is skipped (exit 77) otherwise.
"""

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse

SKIP = 77


def log(msg):
    print(msg, flush=True)


def run(cmd, timeout, **kw):
    log("$ " + " ".join(cmd))
    return subprocess.run(cmd, timeout=timeout, capture_output=True, text=True, **kw)


def postgres_database(base_url, name, create):
    """Creates (or drops) database `name` on the server of `base_url`; returns its URL."""
    sql = f'CREATE DATABASE "{name}"' if create else f'DROP DATABASE IF EXISTS "{name}"'
    r = run(["psql", base_url, "-v", "ON_ERROR_STOP=1", "-qc", sql], timeout=60)
    if r.returncode != 0:
        raise SystemExit(f"psql failed: {r.stderr}")
    return urllib.parse.urlsplit(base_url)._replace(path="/" + name).geturl()


def dump_threads(pid):
    """Prints the stacks of a stuck process (when gdb is there), for the failure report."""
    if shutil.which("gdb"):
        r = subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "thread apply all bt 20"],
                           capture_output=True, text=True, timeout=120)
        log(r.stdout[-20000:])


def count_lines(path):
    try:
        with open(path) as f:
            return sum(1 for line in f if line.strip())
    except FileNotFoundError:
        return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sagaflow", required=True)
    p.add_argument("--driver", required=True)
    p.add_argument("--flow", required=True)
    p.add_argument("--mocks", required=True)
    p.add_argument("--backend", choices=["sqlite", "postgresql"], required=True)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--count", type=int, default=1500)
    p.add_argument("--pg-restart", help="scripts/postgres.sh, to restart the server mid-run")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--wait-ms", type=int, default=0,
                   help="each order waits up to this long (a flow with a Wait on pickNotBefore)")
    p.add_argument("--after-wait", help="the state after the Wait: verify none ran early")
    args = p.parse_args()

    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    log(f"seed {seed} (rerun with --seed {seed})")
    work = tempfile.mkdtemp(prefix="sagaflow_crash_")
    keys_log = os.path.join(work, "acknowledged.txt")
    calls_log = os.path.join(work, "calls.txt")
    pg_base = None
    database = None
    try:
        if args.backend == "sqlite":
            url = "sqlite:" + os.path.join(work, "crash.db")
        else:
            pg_base = os.environ.get("SAGAFLOW_TEST_POSTGRES_URL")
            if not pg_base:
                msg = ("SAGAFLOW_TEST_POSTGRES_URL is not set: start a server with "
                       "`scripts/postgres.sh start` and export its URL")
                if os.environ.get("SAGAFLOW_REQUIRE_POSTGRES") == "1":
                    raise SystemExit("FAIL: PostgreSQL is required: " + msg)
                log("SKIP: " + msg)
                return SKIP
            database = f"crash_{os.getpid()}"
            url = postgres_database(pg_base, database, create=True)
        log(f"store {url}")

        restart_round = args.rounds // 2 if args.pg_restart else -1
        started = 0
        for r in range(args.rounds):
            cmd = [args.driver, "load", "--db", url, "--flow", args.flow,
                   "--first", str(r * args.count), "--count", str(args.count),
                   "--window", "256", "--log", keys_log, "--lease-ms", "2000",
                   "--wait-ms", str(args.wait_ms), "--calls", calls_log]
            # To a file, not a pipe: a pipe nobody reads would block the engine's logging.
            out_path = os.path.join(work, f"round{r}.log")
            out_file = open(out_path, "w")
            proc = subprocess.Popen(cmd, stdout=out_file, stderr=subprocess.STDOUT, text=True)
            if r == restart_round:
                time.sleep(rng.uniform(0.2, 0.6))
                log(f"round {r}: restarting PostgreSQL under the running engine")
                rr = run([args.pg_restart, "restart"], timeout=120)
                if rr.returncode != 0:
                    raise SystemExit(f"FAIL: PostgreSQL restart failed: {rr.stderr}")
                # The engine must ride it out: new starts get acknowledged after the restart.
                before = count_lines(keys_log)
                deadline = time.monotonic() + 60
                while (count_lines(keys_log) < before + 100 and proc.poll() is None
                       and time.monotonic() < deadline):
                    time.sleep(0.05)
                if proc.poll() is None and count_lines(keys_log) < before + 100:
                    dump_threads(proc.pid)
                    raise SystemExit("FAIL: the engine made no progress in the 60 s after "
                                     "PostgreSQL came back")
                log(f"round {r}: {count_lines(keys_log) - before} starts acknowledged since "
                    "PostgreSQL came back")
            delay = rng.uniform(0.1, 1.5)
            time.sleep(delay)
            finished = proc.poll() is not None
            if not finished:
                proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            out_file.close()
            if finished and proc.returncode != 0:
                with open(out_path) as f:
                    err = f.read()
                raise SystemExit(f"FAIL: round {r}: the engine failed on its own "
                                 f"(exit {proc.returncode}):\n{err[-4000:]}")
            acknowledged = count_lines(keys_log)
            log(f"round {r}: {'finished' if finished else 'killed after %.2f s' % delay}; "
                f"{acknowledged - started} starts acknowledged")
            started = acknowledged

        kill_time = time.monotonic()
        rec = run([args.sagaflow, "recover", "--db", url, "--mocks", args.mocks, "--json",
                   "--wait", "60"], timeout=600)
        log(rec.stdout)
        if rec.returncode != 0:
            raise SystemExit(f"FAIL: recover exited {rec.returncode}:\n{rec.stderr[-4000:]}")
        log(f"recover finished {time.monotonic() - kill_time:.2f} s after the last kill")

        ver_cmd = [args.driver, "verify", "--db", url, "--log", keys_log,
                   "--expect-at-least", str(max(1, started)), "--calls", calls_log]
        if args.after_wait:
            ver_cmd += ["--after-wait", args.after_wait]
        ver = run(ver_cmd, timeout=600)
        log(ver.stdout)
        if ver.returncode != 0:
            log(ver.stderr[-4000:])
            raise SystemExit("FAIL: the store is not consistent after recovery")
        summary = json.loads(ver.stdout)
        log(f"PASS: {summary['instances']} instances, {summary['acknowledged']} acknowledged "
            f"starts, outcomes {summary['outcomes']}, {summary['after_wait']} steps after a Wait")
        return 0
    finally:
        if database and pg_base:
            postgres_database(pg_base, database, create=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
