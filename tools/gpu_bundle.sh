#!/usr/bin/env bash
# Builds the GPU bundle: a self-contained folder to carry to a lent GPU machine, which has the
# driver and the CUDA 13 toolkit but none of this project's build dependencies (docs/cuda.md).
#
#   tools/gpu_bundle.sh DIR                # configure and build build-bundle/, then assemble DIR
#   tools/gpu_bundle.sh DIR --from BUILD   # assemble DIR from programs already built in BUILD
#                                          # (configured with LSATTN_CUDA_STATIC_RUNTIME=ON, as the
#                                          # ci preset's build-ci is)
#
# DIR gets bin/ (the CUDA tests, the CUDA benchmark, lsattn_cuda_info; the CUDA runtime linked
# statically, RUNPATH $ORIGIN/../lib), lib/ (every shared library they need except the C
# library, the driver's libcuda and cuBLAS, which the run script finds in the machine's CUDA
# toolkit or PyTorch), test/data/ (golden cases of the CLI test), gpu_baselines.py, MANIFEST and
# `run` (tools/gpu_bundle_run.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
usage="usage: tools/gpu_bundle.sh DIR [--from BUILD_DIR]"
[ $# -ge 1 ] || { echo "$usage" >&2; exit 2; }
dir=$1
shift
from=""
if [ $# -gt 0 ]; then
  [ "$1" = "--from" ] && [ $# -eq 2 ] || { echo "$usage" >&2; exit 2; }
  from=$2
fi
max_bytes=$((60 * 1024 * 1024))
tests="test_cuda test_cuda_bidirectional test_cuda_causal test_cuda_vision test_cuda_ls_heads test_cuda_cli"
# CPU tests too: the lent machine's CPU checks the CPU kernels' run-time paths on another x86-64;
# and the CPU benchmark, for the projection GEMM on each path there (AMX, where the host has it).
cpu_tests="test_bf16 test_cpu_kernels"
cpu_programs="$(for t in $cpu_tests; do echo "test/$t"; done) bench/lsattn_bench"
programs="$(for t in $tests; do echo "test/$t"; done) bench/lsattn_bench_cuda bench/lsattn_cuda_info"

if [ -z "$from" ]; then
  from=$root/build-bundle
  cmake -S "$root" -B "$from" -DCMAKE_BUILD_TYPE=Release -DLSATTN_ENABLE_CUDA=ON -DLSATTN_CUDA_STATIC_RUNTIME=ON \
    -DLSATTN_NATIVE=OFF -DLSATTN_BUILD_EXAMPLES=OFF -DLSATTN_BUILD_TESTS=ON -DLSATTN_BUILD_BENCHMARKS=ON
  # shellcheck disable=SC2086
  cmake --build "$from" -j2 --target $tests $cpu_tests lsattn_bench lsattn_bench_cuda lsattn_cuda_info
fi

for program in $programs; do
  binary=$from/$program
  [ -x "$binary" ] || { echo "gpu_bundle: $binary is missing (build it with CUDA enabled)" >&2; exit 1; }
  if readelf -d "$binary" | grep -q 'libcudart\.so'; then
    echo "gpu_bundle: $binary links the shared CUDA runtime: configure with -DLSATTN_CUDA_STATIC_RUNTIME=ON" >&2
    exit 1
  fi
  readelf -d "$binary" | grep -q 'RUNPATH.*\$ORIGIN/\.\./lib' ||
    { echo "gpu_bundle: $binary has no RUNPATH \$ORIGIN/../lib (LSATTN_CUDA_STATIC_RUNTIME=ON sets it)" >&2; exit 1; }
done

rm -rf "$dir"
mkdir -p "$dir/bin" "$dir/lib"
for program in $programs; do cp "$from/$program" "$dir/bin/"; done
for program in $cpu_programs; do
  [ -x "$from/$program" ] || { echo "gpu_bundle: $from/$program is missing" >&2; exit 1; }
  cp "$from/$program" "$dir/bin/"
done
# Shared libraries to ship: all that ldd resolves, except the C library's own, the driver's,
# cuBLAS (cuBLAS Lt alone is 540 MB; the lent machine has it in its toolkit) and the C++ runtime
# (this machine's libstdc++, static or shared, calls glibc 2.36 functions; the machine's own
# libstdc++ only needs to be GCC 12's or newer).
for program in $programs $cpu_programs; do
  ldd "$from/$program" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }'
done | sort -u | while read -r soname path; do
  case "$soname" in
    libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*|ld-linux*|libcuda.so.*|libcublas*|libstdc++*|libgcc_s*) ;;
    *) cp -L "$path" "$dir/lib/$soname" ;;
  esac
done
# The golden cases `lsattn run --device cuda` is checked against (test_cuda_cli reads them from
# test/data/ under the folder, where run starts the tests).
mkdir -p "$dir/test/data"
cp -r "$root/test/data/lra" "$root/test/data/causal" "$root/test/data/vision" "$root/test/data/lm" "$dir/test/data/"
cp "$root/bench/gpu_baselines.py" "$dir/"
cp "$root/tools/gpu_bundle_run.sh" "$dir/run"
chmod +x "$dir/run"

glibc=$(for f in "$dir"/bin/* "$dir"/lib/*; do objdump -T "$f" 2>/dev/null; done | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n 1)
{
  echo "lsattn GPU bundle"
  echo "source: $(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)"
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m), $(nvcc --version 2>/dev/null | tail -n 2 | head -n 1 || echo 'nvcc ?')"
  echo "needs: glibc >= ${glibc#GLIBC_}, libstdc++ with GLIBCXX_3.4.30 (GCC 12 or newer), an NVIDIA driver for"
  echo "       CUDA 13 (libcuda), cuBLAS 13 (libcublas.so.13, libcublasLt.so.13)"
  architectures=$(grep -m1 '^CMAKE_CUDA_ARCHITECTURES' "$from/CMakeCache.txt" | cut -d= -f2 || true)
  echo "cuda architectures: ${architectures:-80;90 (the cmake/cuda.cmake default)}"
  echo "programs: $(cd "$dir/bin" && echo *)"
  echo "shipped libraries: $(cd "$dir/lib" && echo *)"
} > "$dir/MANIFEST"

bytes=$(du -sb "$dir" | cut -f1)
if [ "$bytes" -gt "$max_bytes" ]; then
  echo "gpu_bundle: $dir is $((bytes / 1048576)) MiB, over the 60 MiB a lent machine takes" >&2
  exit 1
fi
echo "gpu_bundle: $dir ready ($((bytes / 1048576)) MiB); on the GPU machine: $dir/run [ARCHIVE]"
