#!/usr/bin/env python3
"""report.py — runs edl_bench and turns its JSON into a report a student can read.

Writes, into bench/results/ (git-ignored):
  edl_bench.json   the raw Google Benchmark output
  report.md        machine, measured peak, one table per group (square GEMM, im2col GEMM,
                   conv layers forward, dx and dw) with GFLOP/s, % of peak and ratios, and
                   each conv layer's training step (the three passes by dispatch's variants)
  *.svg            one bar chart per group and thread count, referenced from report.md

  python3 bench/report.py                          run build/bench/edl_bench, write the report
  python3 bench/report.py --json results.json      only read an earlier run's JSON
  python3 bench/report.py --min-time 0.05          a quick, noisier run
  python3 bench/report.py --all                    also run the per-op entries (appendix)
  python3 bench/report.py --repetitions 3          best of 3 runs per entry (a shared machine)
  EDL_BENCH_REFERENCE=all python3 bench/report.py  also the reference conv on ResNet-18 (slow)

`./dev.sh report` builds and then runs this. Python 3 standard library only.
"""

import argparse
import datetime
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORT_FILTER = r"^(peak|gemm|im2col|layers)/"
BASELINES = ["Eigen", "OpenBLAS", "oneDNN"]  # libraries, in the order tables list them

# Parts Google Benchmark appends to a name (->UseRealTime(), ->MinTime(), ...).
GB_SUFFIX = re.compile(r"^(real_time|manual_time|process_time|min_time:.*|min_warmup_time:.*|iterations:\d+|repeats:\d+)$")

GROUPS = [
    # key, title, what the rows are
    ("gemm", "SGEMM, square matrices", "C (n,n) = A (n,n) · B (n,n)"),
    ("im2col", "SGEMM at the im2col shapes of the conv layers", "M = OC, K = C·KH·KW, N = batch·OH·OW"),
    ("layers/forward", "Conv layers, forward (batch 128)", "y = conv2d(x, w)"),
    ("layers/dx", "Conv layers, data gradient dx (batch 128)", "dx from dy"),
    ("layers/dw", "Conv layers, weight gradient dw (batch 128)", "dw from dy"),
]

# ---- reading the benchmark output -------------------------------------------------------------


def parse_entries(data):
    """One dict per entry: group, impl, shape, threads, gflops, ms, error. With repetitions
    (--benchmark_repetitions) an entry keeps its best run: on a shared machine the slower runs
    measure the other processes, not the kernel."""
    entries, seen = [], {}
    for b in data.get("benchmarks", []):
        if b.get("run_type") == "aggregate":
            continue
        name = b.get("run_name") or b["name"]
        parts = [p for p in name.split("/") if not GB_SUFFIX.match(p)]
        threads = 1
        if parts and parts[-1].startswith("threads:"):
            threads = int(parts.pop()[len("threads:"):])
        e = {"name": name, "threads": threads, "error": b.get("error_message") if b.get("error_occurred") else None,
             "chosen": b.get("label") == "dispatch"}
        flops = b.get("FLOP/s")
        e["gflops"] = flops / 1e9 if isinstance(flops, (int, float)) and not e["error"] else None
        scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}.get(b.get("time_unit", "ns"), 1e-6)
        e["ms"] = b.get("real_time", 0) * scale
        if parts[0] == "peak":
            e.update(group="peak", impl=parts[1] if len(parts) > 1 else "fma", shape="")
        elif parts[0] in ("gemm", "im2col") and len(parts) == 3:
            e.update(group=parts[0], impl=parts[1], shape=parts[2])
        elif parts[0] == "layers" and len(parts) == 4:
            e.update(group="layers/" + parts[3], impl=parts[1], shape=parts[2])
        else:
            e.update(group="other", impl="", shape=name)
        if name in seen:
            old = seen[name]
            old["runs"] += 1
            if (e["gflops"] or 0) > (old["gflops"] or 0) or (old["gflops"] is None and e["ms"] < old["ms"]):
                old.update(gflops=e["gflops"], ms=e["ms"], error=e["error"])
            continue
        e["runs"] = 1
        seen[name] = e
        entries.append(e)
    return entries


def index(entries):
    """(group, shape, impl, threads) -> entry, and the order of first appearance of each."""
    by_key, shapes, impls = {}, {}, {}
    for e in entries:
        by_key[(e["group"], e["shape"], e["impl"], e["threads"])] = e
        shapes.setdefault(e["group"], [])
        if e["shape"] not in shapes[e["group"]]:
            shapes[e["group"]].append(e["shape"])
        impls.setdefault(e["group"], [])
        if e["impl"] not in impls[e["group"]]:
            impls[e["group"]].append(e["impl"])
    for g in impls:  # edl's own variants first, then the libraries in a fixed order
        impls[g] = [i for i in impls[g] if i not in BASELINES] + [b for b in BASELINES if b in impls[g]]
    return by_key, shapes, impls


# ---- numbers ------------------------------------------------------------------------------


def fmt_gflops(v):
    if v is None:
        return "—"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.2f}"


def fmt_ratio(r):
    return "—" if r is None else f"{r:.2f}×"


def geomean(values):
    values = [v for v in values if v and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


class Report:
    def __init__(self, data):
        self.data = data
        self.entries = parse_entries(data)
        self.by_key, self.shapes, self.impls = index(self.entries)
        self.threads = sorted({e["threads"] for e in self.entries if e["group"] != "other"}) or [1]
        self.peak = {t: self.gflops("peak", "", "fma", t) for t in self.threads}

    def gflops(self, group, shape, impl, threads):
        e = self.by_key.get((group, shape, impl, threads))
        return e["gflops"] if e else None

    def peak_at(self, threads):
        p = self.peak.get(threads)
        if p is None and self.peak.get(1):
            p = self.peak[1] * threads  # no all-threads peak measured: assume it scales
        return p

    def baseline_shape(self, group, shape):
        """Where the baselines of a row live: for a conv layer, its im2col GEMM entries."""
        if not group.startswith("layers"):
            return group, shape
        for s in self.shapes.get("im2col", []):
            if s.startswith(shape + " M="):
                return "im2col", s
        return None, None

    def ratios(self, group, shape, impl, threads):
        """(vs Eigen, vs best other baseline, name of that baseline) for one cell."""
        v = self.gflops(group, shape, impl, threads)
        bg, bs = self.baseline_shape(group, shape)
        if v is None or bg is None:
            return None, None, None
        eigen = self.gflops(bg, bs, "Eigen", threads)
        others = [(self.gflops(bg, bs, b, threads), b) for b in BASELINES if b != impl]
        others = [(x, b) for x, b in others if x]
        best, best_name = max(others) if others else (None, None)
        return (v / eigen if eigen else None), (v / best if best else None), best_name


# ---- the SVG bar chart --------------------------------------------------------------------

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#e377c2", "#17becf", "#bcbd22"]
BASELINE_COLORS = {"Eigen": "#7f7f7f", "OpenBLAS": "#8c564b", "oneDNN": "#c7a76c"}


def colors_for(impls):
    out, k = {}, 0
    for i in impls:
        if i in BASELINE_COLORS:
            out[i] = BASELINE_COLORS[i]
        else:
            out[i] = PALETTE[k % len(PALETTE)]
            k += 1
    return out


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def nice_step(span, ticks=6):
    raw = span / ticks
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def bar_chart(title, rows, impls, colors, peak, peak_label):
    """rows: [(label, {impl: gflops})]. Horizontal grouped bars, one group per shape.
    A label is split in two lines before " M=" (the GEMM sizes of an im2col shape)."""
    font, char_w = 12, 7.2  # DejaVu Sans at 12 px: about 7 px per character
    split = lambda label: label.replace(" M=", "\nM=").split("\n")  # noqa: E731
    longest = max((len(line) for r in rows for line in split(r[0])), default=10)
    label_w = min(440, max(120, int(longest * char_w) + 16))
    plot_w, right = 520, 60
    width = label_w + plot_w + right
    bar_h, gap = 12, 10
    # legend: items in rows that fit the width
    legend_items, x, y, legend_rows = [], 0, 0, 1
    for i in impls:
        w = 22 + len(i) * char_w + 18
        if x + w > width - 20:
            x, y, legend_rows = 0, y + 18, legend_rows + 1
        legend_items.append((x, y, i))
        x += w
    top = 40 + legend_rows * 18 + 22
    group_h = [max(len([i for i in impls if r[1].get(i) is not None]) * bar_h, 30) + gap for r in rows]
    height = top + sum(group_h) + 50
    vmax = max([v for _, vals in rows for v in vals.values() if v] + [peak or 0, 1e-9])
    step = nice_step(vmax * 1.05)
    xmax = step * math.ceil(vmax * 1.05 / step)
    sx = lambda v: label_w + plot_w * v / xmax  # noqa: E731

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
           f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="{font}">',
           f'<rect width="100%" height="100%" fill="white"/>',
           f'<text x="10" y="22" font-size="16" font-weight="bold">{esc(title)}</text>']
    for lx, ly, i in legend_items:
        out.append(f'<rect x="{10 + lx:.0f}" y="{34 + ly}" width="14" height="12" fill="{colors[i]}"/>')
        out.append(f'<text x="{10 + lx + 20:.0f}" y="{44 + ly}">{esc(i)}</text>')
    plot_top, plot_bottom = top - 8, height - 42
    # grid and x axis
    v = 0.0
    while v <= xmax + 1e-9:
        x = sx(v)
        out.append(f'<line x1="{x:.1f}" y1="{plot_top}" x2="{x:.1f}" y2="{plot_bottom}" stroke="#e0e0e0"/>')
        out.append(f'<text x="{x:.1f}" y="{plot_bottom + 16}" text-anchor="middle" fill="#333">{v:g}</text>')
        v += step
    out.append(f'<line x1="{label_w}" y1="{plot_bottom}" x2="{label_w + plot_w}" y2="{plot_bottom}" stroke="#333"/>')
    out.append(f'<line x1="{label_w}" y1="{plot_top}" x2="{label_w}" y2="{plot_bottom}" stroke="#333"/>')
    out.append(f'<text x="{label_w + plot_w / 2:.0f}" y="{plot_bottom + 34}" text-anchor="middle">'
               f'GFLOP/s (higher is better)</text>')
    # bars
    y = top
    for (label, vals), gh in zip(rows, group_h):
        present = [i for i in impls if vals.get(i) is not None]
        lines = split(label)
        mid = y + (gh - gap) / 2 - (len(lines) - 1) * 7
        for n, line in enumerate(lines):
            out.append(f'<text x="{label_w - 8}" y="{mid + 4 + 14 * n:.1f}" text-anchor="end">{esc(line)}</text>')
        for k, i in enumerate(present):
            by = y + k * bar_h
            w = max(0.5, sx(vals[i]) - label_w)
            out.append(f'<rect x="{label_w}" y="{by:.1f}" width="{w:.1f}" height="{bar_h - 2}" fill="{colors[i]}">'
                       f'<title>{esc(i)}: {fmt_gflops(vals[i])} GFLOP/s</title></rect>')
            out.append(f'<text x="{label_w + w + 3:.1f}" y="{by + bar_h - 3:.1f}" font-size="9" fill="#333">'
                       f'{fmt_gflops(vals[i])}</text>')
        y += gh
        out.append(f'<line x1="{label_w}" y1="{y - gap / 2:.1f}" x2="{label_w + plot_w}" y2="{y - gap / 2:.1f}" '
                   f'stroke="#f0f0f0"/>')
    if peak:
        x = sx(peak)
        out.append(f'<line x1="{x:.1f}" y1="{plot_top}" x2="{x:.1f}" y2="{plot_bottom}" stroke="#d62728" '
                   f'stroke-width="1.5" stroke-dasharray="6,4"/>')
        out.append(f'<text x="{x - 4:.1f}" y="{plot_top - 4}" text-anchor="end" fill="#d62728" font-size="11">'
                   f'{esc(peak_label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# ---- the markdown -------------------------------------------------------------------------


def cpu_model():
    try:
        info = Path("/proc/cpuinfo").read_text()
        for key in ("model name", "Model", "Hardware", "cpu model"):
            m = re.search(rf"^{key}\s*:\s*(.+)$", info, re.M)
            if m:
                return m.group(1).strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True).stdout.strip()
        except OSError:
            pass
    return platform.processor() or platform.machine()


def physical_cores():
    try:
        info = Path("/proc/cpuinfo").read_text()
        pairs = set(re.findall(r"^physical id\s*:\s*(\d+)\s*$.*?^core id\s*:\s*(\d+)\s*$", info, re.M | re.S))
        if pairs:
            return len(pairs)
    except OSError:
        pass
    return None


def git_commit():
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True)
        if rev.returncode == 0:
            return rev.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")
    except OSError:
        pass
    return "unknown"


EXPLANATION = """\
## How to read this report

- **GFLOP/s**: billions of floating-point operations per second; higher is better. A
  multiply-add counts as 2 FLOPs. The FLOP count of an entry is fixed by the problem, not by
  the algorithm: 2·M·N·K for a matrix product, 2·N·OC·OH·OW·C·KH·KW for a convolution (the
  op's `flops()`), the same for the data gradient dx and the weight gradient dw (each is a
  product as large as the forward). So GFLOP/s of two implementations of the same entry
  compare exactly like their speeds. Times are wall-clock. A row marked ★ is the
  variant edl chooses for that pass: dx and dw may come from different variants.
- **Peak**: the most this machine can do at all, measured by `peak/fma` — chains of fused
  multiply-adds that never touch memory (`bench/peak_bench.cpp` says why it needs 12
  independent chains). No real kernel reaches it: a very good SGEMM gets 70–90 % on large
  matrices, less on thin ones. How much depends on the core as well as the code: the peak
  table's last column (`peak/ukernel`) is the most edl's micro-kernel does with everything in
  L1 — with AVX2 about all of the peak, with AVX-512 on the machine of docs/gemm.md about 83 %.
- **% peak**: GFLOP/s divided by the peak measured with the same number of threads. The peak is
  that of the SIMD this build compiles for; OpenBLAS and oneDNN choose theirs when they run, so
  in a portable build (SSE2 or AVX2 peak) they can pass 100 %.
- **× Eigen**: GFLOP/s divided by Eigen's on the same shape and thread count (above 1: faster
  than Eigen). For a conv layer the yardstick is Eigen's SGEMM on the layer's **im2col shape**:
  the matrix product alone, without building the column matrix, so a GEMM-based conv can
  hardly beat 1×. For dx and dw it is still the forward's GEMM shape: a rough guide only.
- **× best other**: GFLOP/s divided by the fastest *other* baseline library (Eigen, OpenBLAS,
  oneDNN — whichever were built in) on the same shape and threads, named in the cell.
- **Implementations**: `matmul.<variant>` and `conv2d.<variant>` are edl's registered variants,
  called through the registry (`edl::call`, which allocates the output on each call): the
  reference (plain loops, the specification) and the fast ones. Every conv variant is credited
  with the direct convolution's FLOPs, so GFLOP/s is a speed on the same work for all of them;
  `conv2d.winograd` and `conv2d.winograd4` do 2.25× and 4× fewer multiply-adds, so their
  % peak can pass 100 % (it is an effective speed, not the machine's arithmetic); `conv2d.dense`
  multiplies by the layer's whole matrix, exactly the counted work on a 3×3 map with padding 1,
  less on smaller maps and several times more on larger ones, where it runs only in the
  benchmark (docs/convolution.md). `Eigen`, `OpenBLAS`, `oneDNN`
  are the libraries called directly into a preallocated output.
- **im2col shapes**: a convolution becomes one matrix product W (OC, C·KH·KW) × col
  (C·KH·KW, batch·OH·OW): M = OC, K = C·KH·KW, N = batch·OH·OW. Few rows (small M) or a
  short inner dimension (small K) make a GEMM hard to run at peak: watch the small layers.
- **Threads**: every entry runs with 1 thread and with all of them. Two threads cannot do more
  than twice one; on a shared or virtual machine, other work and "steal time" lower the numbers
  (see the load average below), so compare entries of one run with each other.
"""


def section_peak(r):
    lines = ["## Peak", "", "| threads | peak GFLOP/s | per thread | GEMM micro-kernel in L1 |", "|---:|---:|---:|---:|"]
    for t in r.threads:
        p, uk = r.peak.get(t), r.gflops("peak", "", "ukernel", t)
        uk_cell = f"{fmt_gflops(uk)} ({100 * uk / p:.0f} %)" if uk and p else fmt_gflops(uk) if uk else "—"
        lines.append(f"| {t} | {fmt_gflops(p)} | {fmt_gflops(p / t) if p else '—'} | {uk_cell} |")
    simd = r.data.get("context", {}).get("edl_simd")
    # The arithmetic for this build's vectors, at the clock the benchmark library reports (often
    # the base clock: a measured peak above it is the core running faster, e.g. in turbo).
    lanes = re.search(r"\((\d+) float lanes", simd or "")
    mhz = r.data.get("context", {}).get("mhz_per_cpu")
    theory = "The theoretical value is lanes × 2 FLOPs × FMA units × clock"
    if lanes and mhz:
        n, ghz = int(lanes.group(1)), mhz / 1000
        theory += (f": here {n} × 2 × 2 × {ghz:.2f} ≈ {n * 4 * ghz:.0f} GFLOP/s per core with two FMA units at "
                   f"the reported {ghz:.2f} GHz (a measured peak above that means the core runs faster than "
                   "its reported clock, as in turbo).")
    else:
        theory += "."
    lines += ["", "Measured with " + (f"`{simd}`" if simd else "the build's SIMD") + ". " + theory, ""]
    if any(r.gflops("peak", "", "ukernel", t) for t in r.threads):
        lines += ["The last column is `peak/ukernel`: the GEMM's micro-kernel alone, on packed panels of A "
                  "and B that stay in the L1 cache, as a percentage of the peak. It is the ceiling of "
                  "edl's GEMM on this machine (were packing, blocking and memory free); the "
                  "rest of the gap to the peak is the price of feeding the FMAs: the loads of B and the "
                  "broadcasts of A that every step of the tile needs (`kernels/common/gemm_ukernel.h`).", ""]
    # Register-only chains scale perfectly with cores, unless other processes take them.
    p1 = r.peak.get(1)
    for t in r.threads:
        pt = r.peak.get(t)
        if t > 1 and p1 and pt and pt < 0.8 * t * p1:
            lines += [f"> **Warning:** the {t}-thread peak is only {pt / p1:.1f}× the 1-thread peak (a perfect "
                      f"{t}× is expected: the chains share nothing). Other processes were using the cores, or "
                      f"there are fewer physical cores than threads: the {t}-thread numbers below are not "
                      "reliable.", ""]
    return lines


def section_machine(r, meta):
    ctx = r.data.get("context", {})
    cores = physical_cores()
    lines = ["## Machine", "", "| | |", "|---|---|"]
    lines.append(f"| CPU | {cpu_model()} |")
    lines.append(f"| cores | {cores if cores else '?'} physical, {os.cpu_count()} logical "
                 f"(benchmark sees {ctx.get('num_cpus', '?')}; all threads = {ctx.get('edl_threads', '?')}) |")
    if ctx.get("mhz_per_cpu"):
        lines.append(f"| clock (reported) | {ctx['mhz_per_cpu']} MHz |")
    caches = ctx.get("caches") or []
    if caches:
        cs = ", ".join(f"L{c['level']} {c['type'].lower()} {c['size'] // 1024} KiB"
                       + (f" (shared by {c['num_sharing']} CPUs)" if c.get("num_sharing", 0) > 1 else "")
                       for c in caches)
        lines.append(f"| caches | {cs} |")
    for key, title in (("edl_simd", "SIMD of this build"), ("edl_compiler", "compiler"), ("edl_baselines", "baselines"),
                       ("edl_environment", "environment")):
        if ctx.get(key):
            lines.append(f"| {title} | {ctx[key]} |")
    load = ctx.get("load_avg")
    if load:
        lines.append(f"| load average at start | {', '.join(f'{x:.2f}' for x in load)} |")
    runs = max((e["runs"] for e in r.entries), default=1)
    lines.append(f"| run | {ctx.get('date', '?')}, commit {meta.get('commit', '?')}"
                 + (f", {meta['seconds'] / 60:.1f} min" if meta.get("seconds") else "")
                 + (f"; every number is the best of {runs} repetitions" if runs > 1 else "") + " |")
    lines.append("")
    if load and ctx.get("num_cpus") and load[0] > 0.25 * ctx["num_cpus"]:
        lines += [f"> **The machine was busy** (load {load[0]:.1f} on {ctx['num_cpus']} CPUs when the run "
                  "started): other processes took CPU time, so these numbers are lower and noisier than "
                  "on an idle machine. Rerun on a quiet machine for clean numbers.", ""]
    return lines


def cell_label(group, shape):
    if group == "gemm":
        m = re.fullmatch(r"(\d+)\^3", shape)
        return f"M=N=K={m.group(1)}" if m else shape
    return shape


def section_group(r, key, title, what, out_dir, charts):
    shapes = r.shapes.get(key, [])
    if not shapes:
        return []
    impls = r.impls[key]
    lines = [f"## {title}", "", f"Rows: {what}. "
             + ("Ratios use the library SGEMMs on the layer's im2col shape; ★ marks the variant edl picks "
                "for the layer by itself (the registry's dispatch). " if key.startswith("layers") else ""), ""]
    head = "| shape | implementation |"
    sep = "|---|---|"
    for t in r.threads:
        th = f"{t} thread" + ("s" if t > 1 else "")
        head += f" GFLOP/s, {th} | % peak | × Eigen | × best other |"
        sep += "---:|---:|---:|---|"
    lines += [head, sep]
    for s in shapes:
        present = [i for i in impls if any(r.by_key.get((key, s, i, t)) for t in r.threads)]
        best = {t: max((r.gflops(key, s, i, t) or 0) for i in present) for t in r.threads}
        for n, i in enumerate(present):
            chosen = any((r.by_key.get((key, s, i, t)) or {}).get("chosen") for t in r.threads)
            row = f"| {cell_label(key, s) if n == 0 else ''} | {i}{' ★' if chosen else ''} |"
            for t in r.threads:
                e = r.by_key.get((key, s, i, t))
                v = e["gflops"] if e else None
                if e and e["error"]:
                    row += f" skipped: {e['error']} | | | |"
                    continue
                g = fmt_gflops(v)
                if v is not None and v == best[t] and len(present) > 1:
                    g = f"**{g}**"
                p = r.peak_at(t)
                pct = f"{100 * v / p:.0f} %" if v and p else "—"
                ve, vb, bn = r.ratios(key, s, i, t)
                row += f" {g} | {pct} | {fmt_ratio(ve)} | {fmt_ratio(vb) + (' ' + bn if bn and vb else '')} |"
            lines.append(row)
    lines.append("")
    colors = colors_for(impls)
    for t in r.threads:
        rows = [(cell_label(key, s), {i: r.gflops(key, s, i, t) for i in impls}) for s in shapes]
        if not any(v for _, vals in rows for v in vals.values()):
            continue
        fname = f"{key.replace('/', '_')}_threads{t}.svg"
        peak = r.peak_at(t)
        th = f"{t} thread" + ("s" if t > 1 else "")
        svg = bar_chart(f"{title} — {th}", rows, impls, colors, peak, f"peak {fmt_gflops(peak)} GFLOP/s" if peak else "")
        (out_dir / fname).write_text(svg)
        charts.append(fname)
        lines += [f"![{title}, {th}]({fname})", ""]
    return lines


def section_summary(r):
    """Geometric means of × Eigen and % peak per implementation and group: the one-line answer."""
    lines = ["## At a glance", "",
             "Geometric mean over the shapes of each group (a ratio of 1.20× means 20 % faster than Eigen "
             "on a typical shape of the group).", ""]
    head, sep = "| group | implementation |", "|---|---|"
    for t in r.threads:
        head += f" × Eigen, {t}T | % peak, {t}T |"
        sep += "---:|---:|"
    lines += [head, sep]
    any_row = False
    for key, title, _ in GROUPS:
        for i in r.impls.get(key, []):
            if i == "Eigen":
                continue
            row = f"| {title} | {i} |"
            ok = False
            for t in r.threads:
                shapes = r.shapes.get(key, [])
                ve = geomean([r.ratios(key, s, i, t)[0] for s in shapes])
                p = r.peak_at(t)
                pp = geomean([(r.gflops(key, s, i, t) or 0) / p for s in shapes]) if p else None
                ok |= ve is not None or pp is not None
                row += f" {fmt_ratio(ve)} | {f'{100 * pp:.0f} %' if pp else '—'} |"
            if ok:
                lines.append(row)
                any_row = True
    lines.append("")
    return lines if any_row else []


def section_training_step(r):
    """Per conv layer, what one training step of it costs: the forward, dx and dw, each by the
    variant dispatch picks for that pass (the ★ rows above), added up."""
    shapes = r.shapes.get("layers/forward", [])
    if not shapes:
        return []
    lines = ["## Conv layers, one training step (forward + dx + dw, batch 128)", "",
             "Each pass by the variant edl picks for it (★ in the three tables above): the time a "
             "training step spends in the layer, and its work (three direct-convolution FLOP counts) "
             "per second. A network's first layer needs no dx in training; it is included all the same.",
             ""]
    head, sep = "| layer | variants (forward / dx / dw) |", "|---|---|"
    for t in r.threads:
        th = f"{t} thread" + ("s" if t > 1 else "")
        head += f" ms, {th} | GFLOP/s | % peak |"
        sep += "---:|---:|---:|"
    lines += [head, sep]
    def chosen(key, shape, t):  # the ★ entry of one pass, if it ran
        for i in r.impls.get(key, []):
            e = r.by_key.get((key, shape, i, t))
            if e and e["chosen"] and not e["error"] and e["gflops"]:
                return e
        return None

    any_row = False
    for s in shapes:
        names, cells = None, ""
        for t in r.threads:
            passes = [chosen("layers/" + p, s, t) for p in ("forward", "dx", "dw")]
            if None in passes:
                cells += " — | — | — |"
                continue
            ms = sum(e["ms"] for e in passes)
            gflop = sum(e["gflops"] * e["ms"] / 1e3 for e in passes)  # GFLOP/s × s
            rate = gflop / (ms / 1e3)
            peak = r.peak_at(t)
            cells += f" {ms:.2f} | {fmt_gflops(rate)} | {f'{100 * rate / peak:.0f} %' if peak else '—'} |"
            names = names or " / ".join(e["impl"].split(".", 1)[-1] for e in passes)  # conv2d.implicit -> implicit
            any_row = True
        lines.append(f"| {s} | {names or '—'} |{cells}")
    return lines + [""] if any_row else []


def section_other(r):
    other = [e for e in r.entries if e["group"] == "other"]
    if not other:
        return []
    lines = ["## Appendix: per-op entries (ops_bench.cpp)", "", "| entry | time (ms) | GFLOP/s |", "|---|---:|---:|"]
    for e in other:
        lines.append(f"| {e['shape']} | {e['ms']:.3f} | {fmt_gflops(e['gflops'])} |")
    return lines + [""]


def write_report(data, out_dir, meta):
    out_dir.mkdir(parents=True, exist_ok=True)
    r = Report(data)
    lines = ["# edl benchmark report", "",
             f"Generated {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} by `bench/report.py` from "
             f"`{meta.get('json', 'edl_bench.json')}`. Regenerate with `./dev.sh report`.", "",
             "What a technique buys, in numbers: how close edl's kernels get to what the machine can do "
             "(the measured peak) and to the libraries people actually use (Eigen, OpenBLAS, oneDNN), on "
             "square matrices and on the shapes real CIFAR networks produce.", ""]
    lines += EXPLANATION.splitlines() + [""]
    lines += section_machine(r, meta)
    lines += section_peak(r)
    lines += section_summary(r)
    charts = []
    for key, title, what in GROUPS:
        lines += section_group(r, key, title, what, out_dir, charts)
    lines += section_training_step(r)
    lines += section_other(r)
    report = out_dir / "report.md"
    report.write_text("\n".join(lines).rstrip() + "\n")
    return report, charts


def run_bench(bench, json_path, flt, min_time, repetitions, extra):
    cmd = [str(bench), f"--benchmark_filter={flt}", f"--benchmark_out={json_path}", "--benchmark_out_format=json"]
    if min_time:
        cmd.append(f"--benchmark_min_time={min_time}")
    if repetitions > 1:
        cmd.append(f"--benchmark_repetitions={repetitions}")
    cmd += extra
    print("report: running", " ".join(f"'{c}'" if " " in c or "|" in c else c for c in cmd), flush=True)
    t0 = time.monotonic()
    try:
        done = subprocess.run(cmd)
    except OSError as e:
        sys.exit(f"report: cannot run {bench}: {e}")
    if done.returncode != 0:
        sys.exit(f"report: {bench} failed (exit {done.returncode}); its message is above")
    return time.monotonic() - t0


def read_results(json_path, flt=None):
    """The Google Benchmark JSON at json_path, or an exit with a message that names what is wrong.
    flt: the filter the file was just written with (an empty file then means it matched nothing)."""
    try:
        text = json_path.read_text()
    except OSError as e:
        sys.exit(f"report: cannot read {json_path}: {e.strerror}")
    if not text.strip() and flt is not None:
        sys.exit(f"report: no benchmark entry matches --filter '{flt}' "
                 "(list them: edl_bench --benchmark_list_tests)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        sys.exit(f"report: {json_path} is not JSON ({e.msg}, line {e.lineno}): "
                 "give the file edl_bench wrote with --benchmark_out")
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        sys.exit(f"report: {json_path} has no \"benchmarks\" list: not a Google Benchmark JSON output")
    return data


def checked(convert, ok, need):
    """An argparse type: convert(text), refused naming `need` when that fails or not ok(value)."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {need}; got '{text}'")
        return value
    return parse


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--bench", default=str(ROOT / "build" / "bench" / "edl_bench"), help="the edl_bench binary")
    ap.add_argument("--json", help="read this Google Benchmark JSON instead of running the benchmark")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"), help="output directory (bench/results)")
    ap.add_argument("--filter", default=REPORT_FILTER, help=f"benchmark filter (default {REPORT_FILTER})")
    ap.add_argument("--all", action="store_true", help="run every entry, per-op ones included (appendix)")
    ap.add_argument("--min-time", type=checked(float, lambda v: 0 < v < float("inf"), "seconds above 0, e.g. 0.05"),
                    help="--benchmark_min_time for a quicker, noisier run (e.g. 0.05)")
    ap.add_argument("--repetitions", default=1, type=checked(int, lambda v: v >= 1, "a whole number, at least 1"),
                    help="run every entry N times and keep the best (a shared machine); N times longer")
    ap.add_argument("extra", nargs="*", help="more flags for edl_bench (after --)")
    args = ap.parse_args()

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.json:
        json_path = Path(args.json)
        data = read_results(json_path)
    else:
        json_path = out_dir / "edl_bench.json"
        if not Path(args.bench).exists():
            sys.exit(f"report: {args.bench} not found: build first (./dev.sh build) or pass --bench / --json")
        flt = "." if args.all else args.filter
        seconds = run_bench(args.bench, json_path, flt, args.min_time, args.repetitions, args.extra)
        # Keep what the JSON cannot know in its context, so --json can rebuild the same report.
        data = read_results(json_path, flt)
        env = ", ".join(f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "EDL_BENCH_REFERENCE")
                        if k in os.environ)
        data.setdefault("context", {}).update(edl_commit=git_commit(), edl_run_seconds=round(seconds, 1),
                                              edl_environment=env or "none of OMP_NUM_THREADS, OMP_WAIT_POLICY, "
                                                                     "EDL_BENCH_REFERENCE set")
        json_path.write_text(json.dumps(data, indent=2) + "\n")
    ctx = data.get("context", {})
    meta = {"commit": ctx.get("edl_commit", "unknown"), "seconds": ctx.get("edl_run_seconds"),
            "json": json_path.name if json_path.parent.resolve() == out_dir.resolve() else str(json_path)}
    report, charts = write_report(data, out_dir, meta)
    took = f" (benchmark ran {meta['seconds'] / 60:.1f} min)" if meta.get("seconds") else ""
    print(f"report: wrote {report} and {len(charts)} charts in {out_dir}{took}")


if __name__ == "__main__":
    main()
