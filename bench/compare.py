#!/usr/bin/env python3
"""compare.py — did my change make it faster? Two (or more) builds of edl_bench, entry by entry.

    cp build/bench/edl_bench /tmp/edl_bench_before      # before the change
    ... edit, then cmake --build build ...
    python3 bench/compare.py /tmp/edl_bench_before build/bench/edl_bench \\
        --filter 'layers/conv2d.implicit/resnet20 layer1 .*/dw/' --rounds 5

Every entry the filter selects is run by each binary in turn, one entry at a time, the order of
the binaries reversed every round, `--rounds` times. Running the binaries back to back on the
same entry, rather than one whole binary after the other, is what makes the comparison fair on
a shared machine: its speed drifts by tens of percent over minutes, and two runs that far apart
would measure the hour as much as the change. For each entry it prints every binary's median
and best time over the rounds, its ratio to the first binary (above 1: faster), and each round's
time, so that the spread is in plain sight. "within noise" marks a candidate whose median lies
between the slowest and the fastest round of the first binary: the rounds of the same code
differ that much, so the difference is not shown to be the change's.

Python standard library only. OMP_WAIT_POLICY defaults to passive, as in ./dev.sh.
"""
import argparse
import csv
import io
import os
import re
import statistics
import subprocess
import sys

TIME_UNIT_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}


def exact_filter(name):
    """A --benchmark_filter that selects exactly this entry. Google Benchmark's regular
    expressions reject escapes of ordinary characters (a space, '-', '>'), so only the special
    ones are escaped."""
    return "^" + re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", name) + "$"


def run(binary, args, env, with_stderr=False):
    try:
        done = subprocess.run([binary] + args, capture_output=True, text=True, env=env)
    except OSError as e:
        sys.exit(f"compare: cannot run {binary}: {e}")
    if done.returncode != 0:
        sys.exit(f"compare: {binary} {' '.join(args)} failed (exit {done.returncode}):\n{done.stderr.strip()}")
    return (done.stdout, done.stderr) if with_stderr else done.stdout


def list_entries(binary, pattern, env):
    """The entries of binary that pattern selects, and what the binary said on stderr (Google
    Benchmark reports a pattern it cannot compile there, and lists nothing)."""
    out, err = run(binary, ["--benchmark_filter=" + pattern, "--benchmark_list_tests"], env, with_stderr=True)
    return [line for line in out.splitlines() if line.strip()], err.strip()


def time_entry(binary, name, min_time, env):
    """The entry's wall time in ms, from Google Benchmark's CSV output."""
    out = run(binary, ["--benchmark_filter=" + exact_filter(name), "--benchmark_format=csv",
                       f"--benchmark_min_time={min_time}"], env)
    rows = [line for line in out.splitlines() if line.startswith("name,") or line.startswith('"')]
    for row in csv.DictReader(io.StringIO("\n".join(rows))):
        if row.get("error_occurred") == "true":
            sys.exit(f"compare: {binary}: {name}: {row.get('error_message')}")
        return float(row["real_time"]) * TIME_UNIT_MS[row["time_unit"]]
    sys.exit(f"compare: {binary} printed no result for {name}")


def main():
    parser = argparse.ArgumentParser(description="Compare builds of edl_bench entry by entry, interleaved.")
    parser.add_argument("binaries", nargs="+", metavar="EDL_BENCH",
                        help="two or more edl_bench binaries; the first is the baseline")
    parser.add_argument("--filter", required=True, help="which entries (a --benchmark_filter regular expression)")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each entry by each binary (default 5)")
    parser.add_argument("--min-time", type=float, default=0.3,
                        help="Google Benchmark's --benchmark_min_time per run, seconds (default 0.3)")
    a = parser.parse_args()
    if len(a.binaries) < 2:
        parser.error("give at least two binaries: the baseline and a candidate")
    if a.rounds < 1:
        parser.error("--rounds must be at least 1")
    if not 0 < a.min_time < float("inf"):
        parser.error("--min-time must be a number of seconds above 0")
    for b in a.binaries:
        if not os.access(b, os.X_OK):
            sys.exit(f"compare: {b} is not an executable file")
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "passive")

    entries, said = list_entries(a.binaries[0], a.filter, env)
    if not entries:
        sys.exit(f"compare: no entry of {a.binaries[0]} matches --filter '{a.filter}'" + (f": {said}" if said else ""))
    for b in a.binaries[1:]:
        missing = sorted(set(entries) - set(list_entries(b, a.filter, env)[0]))
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            sys.exit(f"compare: {b} has no entry {missing[0]}{more}")

    # Labels: the file names, or the whole paths where two binaries share a file name.
    base_names = [os.path.basename(b) for b in a.binaries]
    labels = [n if base_names.count(n) == 1 else b for n, b in zip(base_names, a.binaries)]
    print(f"{len(entries)} entries x {len(a.binaries)} binaries x {a.rounds} rounds, "
          f"--benchmark_min_time={a.min_time}, OMP_WAIT_POLICY={env['OMP_WAIT_POLICY']}", flush=True)
    order = list(range(len(a.binaries)))
    for name in entries:
        times = [[] for _ in a.binaries]
        for r in range(a.rounds):
            for i in (order if r % 2 == 0 else order[::-1]):
                times[i].append(time_entry(a.binaries[i], name, a.min_time, env))
        base = times[0]
        print(f"\n{name}")
        print(f"  {'binary':<32} {'median ms':>10} {'best ms':>10} {'x base':>7}  rounds (ms)")
        for i, t in enumerate(times):
            median = statistics.median(t)
            note = "  within noise" if i > 0 and min(base) <= median <= max(base) else ""
            rounds = " ".join(f"{x:.3g}" for x in t)
            print(f"  {labels[i]:<32} {median:>10.3f} {min(t):>10.3f} {statistics.median(base) / median:>6.2f}x  "
                  f"{rounds}{note}", flush=True)

if __name__ == "__main__":
    main()
