"""Times the installed-style `chute check` binary on the benchmark's generated file: the whole
command (read the file, plan, resolve duplicates, validate, build the report), best of a few runs.

    python3 scripts/bench_check.py CHUTE_BINARY FILE ROUNDS > check.json

The per-core rate divides the rows by the process's own CPU time (user + system, from wait4), so a
busy neighbour on a shared machine slows the wall rate but not that one; both are recorded.
"""

import json
import os
import subprocess
import sys
import time


def main():
    binary, path, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    best_wall = best_cpu = peak_rss_mb = 0.0
    report = None
    for _ in range(rounds):
        start = time.perf_counter()
        child = subprocess.Popen([binary, "--json", "check", path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        out = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode not in (0, 1):
            raise SystemExit(f"chute check {path} exited {child.returncode}")
        report = json.loads(out)
        rows = report["rows"]["total"]
        best_wall = max(best_wall, rows / wall)
        best_cpu = max(best_cpu, rows / (usage.ru_utime + usage.ru_stime))
        peak_rss_mb = max(peak_rss_mb, usage.ru_maxrss / 1024)
    json.dump({
        "check_rows_per_s": best_wall,
        "check_cpu_rows_per_s": best_cpu,
        "check_peak_rss_mb": peak_rss_mb,
        "check_valid": report["rows"]["valid"],
        "check_rejected": report["rows"]["rejected"],
        "check_status": report["status"],
    }, sys.stdout, indent=2)


if __name__ == "__main__":
    main()
