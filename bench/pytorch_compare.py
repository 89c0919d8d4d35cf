#!/usr/bin/env python3
"""pytorch_compare.py — training throughput of edl and PyTorch, side by side.

Measures images/s of full training steps (forward, loss, backward, SGD update) at batch 128
for ResNet-20 (akamaster/pytorch_resnet_cifar10) and ResNet-18 (kuangliu/pytorch-cifar), on
the same number of threads, in edl (`edl train`) and in PyTorch (the models are defined
below, with edl's parameter names and shapes; their parameter counts are checked).

  /usr/bin/python3 bench/pytorch_compare.py                       both models, 2 threads, 3 runs each
  /usr/bin/python3 bench/pytorch_compare.py --models resnet20 --steps 10 --repetitions 1
  /usr/bin/python3 bench/pytorch_compare.py --threads 1 --json results.json
  /usr/bin/python3 bench/pytorch_compare.py --skip-torch          edl only

Use Debian's /usr/bin/python3 (python3-torch); another python without torch measures edl only.
Python 3 standard library and torch.

What one run measures:
  edl      `edl train --model M --max-steps W+S --threads T --batch-size 128` on CIFAR-10, in a
           fresh process; the number is the one its last line prints: all W+S steps, the first
           (which allocates) included, over their wall time. Its data loader (reading and
           augmenting the next batch) runs in the background on the same cores.
  PyTorch  W warm-up steps, then S timed steps on synthetic batches (random normal images,
           random labels) generated before the clock starts: no data loading at all. SGD lr 0.1,
           momentum 0.9, Nesterov, weight decay 5e-4; cross entropy with label smoothing 0.1
           (edl train's settings, but for its learning rate: 0.2 on a cosine schedule, which
           does not change the speed).
Both engines run with the same OpenMP wait policy: OMP_WAIT_POLICY as the caller set it, else
the runtime's default, where idle threads spin a while before they sleep. Both start a parallel
region per loop, hundreds per step, and on this machine a sleeping thread takes tens of
microseconds to wake: with passive (idle threads sleep at once, what ./dev.sh sets for a shared
machine; README, "Threads") edl trained ResNet-20 at 512-531 images/s against 562-569 with the
default (edl train --profile, 40 steps), and PyTorch at 212 against 235 (an earlier machine).
Set OMP_WAIT_POLICY=passive to compare both that way.
Subnormal floats are flushed to zero in both.

Runs alternate (edl, PyTorch, edl, PyTorch, ...) because the machine may be shared: a
background job that starts or stops mid-benchmark then slows both engines alike instead of
only the one measured at that moment. The table gives every run and the median of each engine.
"""

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# What both engines run with: the caller's choice, else the OpenMP runtime's default.
WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY", "runtime default")

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError:  # main() says so and measures edl only
    torch = None

ROOT = Path(__file__).resolve().parent.parent
BATCH = 128
MODELS = ["resnet20", "resnet18"]
DEFAULT_STEPS = {"resnet20": 30, "resnet18": 5}  # ResNet-18 is about 10x slower per step
EXPECTED_PARAMETERS = {"resnet20": 269_722, "resnet18": 11_173_962}

# ---- the PyTorch models -----------------------------------------------------------------------

if torch is not None:  # the classes derive from nn.Module, which needs torch

    class OptionAShortcut(nn.Module):
        """akamaster's option-A shortcut: x[:, :, ::2, ::2] and planes//4 zero channels on each side
        (it fits only the blocks that halve the resolution and double the planes)."""

        def __init__(self, in_planes, planes, stride):
            super().__init__()
            self.pad = planes // 4
            assert stride == 2 and in_planes + 2 * self.pad == planes, "option A: stride 2, planes = 2*in_planes"

        def forward(self, x):
            return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))

    class BasicBlock(nn.Module):
        """Two 3x3 conv+BN; the shortcut is built by the network (option A or a 1x1 conv+BN)."""

        def __init__(self, in_planes, planes, stride, shortcut):
            super().__init__()
            self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.shortcut = shortcut

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return F.relu(out + self.shortcut(x))

    def conv_bn_shortcut(in_planes, planes, stride):
        """kuangliu's shortcut: a 1x1 conv (with the block's stride) and BN."""
        return nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def make_layer(in_planes, planes, n, stride, make_shortcut):
        """n blocks; only the first may change the shape (stride, planes). Identity shortcuts are
        an empty nn.Sequential, as in both reference repositories."""
        blocks = []
        for i in range(n):
            s = stride if i == 0 else 1
            shortcut = make_shortcut(in_planes, planes, s) if s != 1 or in_planes != planes else nn.Sequential()
            blocks.append(BasicBlock(in_planes, planes, s, shortcut))
            in_planes = planes
        return nn.Sequential(*blocks)

    class ResNet20(nn.Module):
        """akamaster/pytorch_resnet_cifar10 resnet20: 16/32/64 planes, 3 blocks each, global average pool."""

        def __init__(self, num_classes=10):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
            self.layer1 = make_layer(16, 16, 3, 1, OptionAShortcut)
            self.layer2 = make_layer(16, 32, 3, 2, OptionAShortcut)
            self.layer3 = make_layer(32, 64, 3, 2, OptionAShortcut)
            self.linear = nn.Linear(64, num_classes)
            for m in self.modules():  # akamaster's _weights_init
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.kaiming_normal_(m.weight)

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.layer3(self.layer2(self.layer1(out)))
            out = F.adaptive_avg_pool2d(out, 1).flatten(1)
            return self.linear(out)

    class ResNet18(nn.Module):
        """kuangliu/pytorch-cifar ResNet18: 3x3 stem, no max pool, [2, 2, 2, 2] blocks, 1x1 conv+BN shortcuts."""

        def __init__(self, num_classes=10):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.layer1 = make_layer(64, 64, 2, 1, conv_bn_shortcut)
            self.layer2 = make_layer(64, 128, 2, 2, conv_bn_shortcut)
            self.layer3 = make_layer(128, 256, 2, 2, conv_bn_shortcut)
            self.layer4 = make_layer(256, 512, 2, 2, conv_bn_shortcut)
            self.linear = nn.Linear(512, num_classes)

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
            out = F.avg_pool2d(out, 4).flatten(1)
            return self.linear(out)

    TORCH_MODELS = {"resnet20": ResNet20, "resnet18": ResNet18}


def torch_model(name):
    """A fresh PyTorch model, its parameter count checked against edl's."""
    model = TORCH_MODELS[name]()
    n = sum(p.numel() for p in model.parameters())
    assert n == EXPECTED_PARAMETERS[name], f"PyTorch {name} has {n:,} parameters, edl's {EXPECTED_PARAMETERS[name]:,}"
    return model


# ---- one timed run of each engine ---------------------------------------------------------------


def run_torch(name, threads, warmup, steps):
    """Images/s of `steps` training steps after `warmup` untimed ones, on pre-generated batches."""
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    model = torch_model(name)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    # A few distinct batches, reused in turn: their content does not change the speed.
    batches = [(torch.randn(BATCH, 3, 32, 32), torch.randint(0, 10, (BATCH,))) for _ in range(min(warmup + steps, 8))]

    def step(i):
        images, labels = batches[i % len(batches)]
        loss = criterion(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for i in range(warmup):
        step(i)
    start = time.perf_counter()
    for i in range(warmup, warmup + steps):
        step(i)
    return steps * BATCH / (time.perf_counter() - start)


def run_edl(edl, name, threads, steps, data_dir):
    """Images/s that `edl train` reports for a run of `steps` steps (it checks the parameter count too)."""
    with tempfile.TemporaryDirectory(prefix="edl_compare_") as out:
        cmd = [str(edl), "train", "--model", name, "--max-steps", str(steps), "--threads", str(threads),
               "--batch-size", str(BATCH), "--out", out]
        if data_dir:
            cmd += ["--data-dir", data_dir]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)  # the same environment as PyTorch
    if proc.returncode != 0:
        sys.exit(f"edl train failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    params = re.search(r"^model: \S+ \((\d+) parameters\)", proc.stdout, re.M)
    done = re.search(r"^done: \d+ steps .*?([\d.]+) training images/s", proc.stdout, re.M)
    if not params or not done:
        sys.exit(f"could not find the model and done lines in the output of {' '.join(cmd)}:\n{proc.stdout}")
    n = int(params.group(1))
    assert n == EXPECTED_PARAMETERS[name], f"edl {name} has {n:,} parameters, expected {EXPECTED_PARAMETERS[name]:,}"
    return float(done.group(1))


# ---- the report ---------------------------------------------------------------------------------


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def summarize(runs):
    """{engine: [images/s, ...]} -> the median of each engine and edl's median over PyTorch's."""
    medians = {engine: statistics.median(r) for engine, r in runs.items()}
    ratio = medians["edl"] / medians["torch"] if len(medians) == 2 else None
    return {"runs": runs, "median": medians, "edl_over_torch": ratio}


def table(results):
    """Markdown: one row per model and engine; the ratio stands in the edl row."""
    names = {"edl": "edl", "torch": "PyTorch"}
    lines = ["| model | engine | runs (images/s) | median | edl / PyTorch |", "|---|---|---|---:|---:|"]
    for model, res in results.items():
        ratio = "n/a" if res["edl_over_torch"] is None else f"{res['edl_over_torch']:.2f}"
        for engine, runs in res["runs"].items():
            cells = ", ".join(f"{r:.1f}" for r in runs)
            lines.append(f"| {model} | {names[engine]} | {cells} | {res['median'][engine]:.1f} | "
                         f"{ratio if engine == 'edl' else ''} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated, from: %(default)s")
    ap.add_argument("--threads", type=int, default=2, help="compute threads of both engines (default %(default)s)")
    ap.add_argument("--steps", type=int,
                    help="timed steps per run (default: " + ", ".join(f"{m} {s}" for m, s in DEFAULT_STEPS.items()) + ")")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps before them (default %(default)s)")
    ap.add_argument("--repetitions", type=int, default=3, help="runs of each engine per model (default %(default)s)")
    ap.add_argument("--edl", type=Path, default=Path("build/edl"), help="edl binary, relative to the repository root "
                    "(default %(default)s)")
    ap.add_argument("--data-dir", help="CIFAR-10 folder for edl (default: edl's own search)")
    ap.add_argument("--json", type=Path, help="also write the results to this file")
    ap.add_argument("--skip-edl", action="store_true", help="measure PyTorch only")
    ap.add_argument("--skip-torch", action="store_true", help="measure edl only")
    args = ap.parse_args()

    models = args.models.split(",")
    for m in models:
        if m not in MODELS:
            ap.error(f"unknown model {m!r}: choose from {', '.join(MODELS)}")
    if args.threads < 1 or args.repetitions < 1 or (args.steps is not None and args.steps < 1) or args.warmup < 0:
        ap.error("--threads, --steps and --repetitions must be at least 1, --warmup at least 0")
    data_dir = str(Path(args.data_dir).resolve()) if args.data_dir else None  # edl runs in ROOT
    engines = []
    if not args.skip_edl:
        edl = ROOT / args.edl
        if not (edl.is_file() and os.access(edl, os.X_OK)):
            print(f"edl binary not found at {edl}: build it with ./dev.sh build (in {ROOT})", file=sys.stderr)
            sys.exit(2)
        engines.append("edl")
    if not args.skip_torch:
        if torch is None:
            print("PyTorch is not installed for this python (apt-get install python3-torch); measuring edl only",
                  file=sys.stderr)
        else:
            engines.append("torch")
    if not engines:
        ap.error("nothing to measure: both engines are skipped or unavailable")

    load = os.getloadavg()[0]
    results = {}
    for model in models:
        steps = args.steps or DEFAULT_STEPS[model]
        if "torch" in engines:
            torch_model(model)  # fails before any timing if the counts differ
        print(f"{model}: {EXPECTED_PARAMETERS[model]:,} parameters; {args.warmup} warm-up + {steps} timed steps",
              file=sys.stderr)
        runs = {engine: [] for engine in engines}
        for rep in range(args.repetitions):
            for engine in engines:  # alternating: see the top of this file
                if engine == "edl":
                    ips = run_edl(edl, model, args.threads, args.warmup + steps, data_dir)
                else:
                    ips = run_torch(model, args.threads, args.warmup, steps)
                runs[engine].append(ips)
                print(f"  run {rep + 1}/{args.repetitions} {engine:5}: {ips:.1f} images/s", file=sys.stderr, flush=True)
        results[model] = summarize(runs)

    torch_version = torch.__version__ if torch is not None else "not installed"
    command = " ".join([sys.executable, *sys.argv])
    cpu = f"{cpu_model()} ({os.cpu_count()} logical CPUs)"
    print(f"\n`{command}`: {args.threads} threads, batch {BATCH}, {args.warmup} warm-up steps, "
          f"{args.repetitions} repetitions; PyTorch {torch_version}; CPU {cpu}; "
          f"load average {load:.2f} at the start; OMP_WAIT_POLICY (both engines): {WAIT_POLICY}\n")
    print(table(results))
    print("\nedl: `edl train --max-steps W+S` on CIFAR-10; its number counts every step, the first one included, "
          "and its background data loader (reading, crop and flip) shares the cores.\n"
          "PyTorch: the timed steps only, on synthetic batches made before timing: no data loading.")

    if args.json:
        args.json.write_text(json.dumps({
            "command": command, "threads": args.threads, "batch_size": BATCH, "warmup": args.warmup,
            "repetitions": args.repetitions, "torch_version": torch_version, "cpu": cpu,
            "load_average_at_start": load,
            "omp_wait_policy": WAIT_POLICY,
            "timed_steps": {model: args.steps or DEFAULT_STEPS[model] for model in models},
            "images_per_second": results,
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
