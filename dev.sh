#!/usr/bin/env bash
# dev.sh — one entry point for setting up, building, training, testing and benchmarking.
#
#   ./dev.sh train [edl train flags]   set up, build, train a CNN on the CIFAR-10 found here
#                                      (no flags: ResNet-20 for 3 epochs into runs/quickstart)
#   ./dev.sh test  [--portable]        set up, build, run the whole test suite (ctest)
#   ./dev.sh build [--portable]        set up and build only
#   ./dev.sh bench [benchmark flags]   set up, build, run the operator benchmarks
#   ./dev.sh report [report.py flags]  set up, build, run peak/GEMM/layer benchmarks, write
#                                      bench/results/report.md (~8 min after the build; bench/README.md)
#
# Builds go to build/ (native: -march=native) or build-portable/ (no -march=native: runs on
# any CPU of the architecture). Everything is idempotent: re-running only redoes what changed.
set -euo pipefail
cd "$(dirname "$0")"

jobs=$(nproc 2>/dev/null || echo 2)
# Idle OpenMP threads sleep instead of spinning: on a shared machine spinning threads of two
# programs starve each other (README, "Threads"); alone, it costs nothing measurable.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

build() {
  local dir=build native=ON
  if [ "${1:-}" = "--portable" ]; then dir=build-portable native=OFF; fi
  scripts/setup.sh
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DEDL_NATIVE="$native" >/dev/null
  cmake --build "$dir" -j "$jobs"
  BUILD_DIR=$dir
}

cmd=${1:-}
shift || true
case "$cmd" in
  build)
    build "${1:-}"
    ;;
  test)
    build "${1:-}"
    ctest --test-dir "$BUILD_DIR" -j "$jobs" --output-on-failure
    ;;
  train)
    build
    # The quick start: the course recipe shortened to 3 epochs (edl train alone runs all 30).
    [ $# -gt 0 ] || set -- --model resnet20 --epochs 3 --warmup 0.3 --out runs/quickstart
    "$BUILD_DIR/edl" train "$@"
    ;;
  bench)
    build
    "$BUILD_DIR/bench/edl_bench" "$@"
    ;;
  report)
    build
    python3 bench/report.py --bench "$BUILD_DIR/bench/edl_bench" "$@"
    ;;
  *)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    [ -z "$cmd" ] || { echo "dev.sh: unknown command '$cmd'" >&2; exit 2; }
    ;;
esac
