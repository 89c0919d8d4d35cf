#!/usr/bin/env bash
# setup.sh — installs the Debian/Ubuntu packages edl needs, and only those that are missing.
# Idempotent: a second run installs nothing. As root it runs apt-get; otherwise it prints the
# exact command to run and fails.
set -euo pipefail

packages=(
  cmake make g++             # the build (g++ brings OpenMP's libgomp)
  libeigen3-dev              # second oracle and speed baseline; SVD for low-rank layers
  libxsimd-dev               # portable SIMD (AVX-512, AVX2, NEON, scalar from one source)
  libfmt-dev                 # error messages
  nlohmann-json3-dev         # safetensors headers, run configurations
  libcli11-dev               # the edl command line
  catch2                     # tests (Catch2 2.13)
  libbenchmark-dev           # benchmarks (Google Benchmark)
  libcurl4-openssl-dev       # edl download: fetching CIFAR from its official address
  zlib1g-dev                 # edl download: unpacking the .tar.gz
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  echo "setup: installing ${missing[*]}"
  bash -c "$cmd"
else
  echo "setup: missing packages: ${missing[*]}" >&2
  echo "setup: run as root:  sudo bash -c '$cmd'" >&2
  exit 1
fi
