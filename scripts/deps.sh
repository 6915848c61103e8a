#!/usr/bin/env bash
# Installs the Debian packages cairn needs, only those missing. python3-torch
# (PyTorch 1.13, CPU) is for tests/integration/torch_mirror.sh: cairn's
# networks against PyTorch's, and the benchmark's mirrors checked.
#   scripts/deps.sh          build + run + test
#   scripts/deps.sh bench    also what the benchmarks compare against
set -eu
pkgs=(
	build-essential pkg-config
	libinih-dev libjansson-dev libssl-dev libcurl4-openssl-dev
	libopenblas-dev liblapacke-dev
	libgdal-dev gdal-bin libdeflate-dev
	libopenmpi-dev openmpi-bin
	slurm-wlm munge nginx-light
	dataset-fashion-mnist python3 zlib1g-dev
	python3-torch
)
if [ "${1:-}" = bench ]; then
	pkgs+=(snakemake libdnnl-dev curl time)
fi
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing Debian packages: ${missing[*]}; run as root or install them with apt-get" >&2
	exit 2
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
