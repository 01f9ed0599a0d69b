#!/usr/bin/env bash
# Everything issue 5 asks of a GPU machine, in one command: build the CUDA tests and benchmark
# for this GPU, run every GPU test, run them again under compute-sanitizer (memcheck and
# racecheck), run the GPU benchmarks (and the PyTorch baselines when torch is installed) and
# regenerate docs/performance.md. Logs go to docs/results/gpu/. Exit status 1 if any test or
# sanitizer run failed (the later steps still run, so one call collects everything).
#
#   tools/gpu_verify.sh                 # all of it
#   LSATTN_SKIP_RACECHECK=1 tools/gpu_verify.sh   # racecheck is the slow part
#   LSATTN_PREBUILT=build-ci tools/gpu_verify.sh  # binaries built elsewhere (sm_80;90), e.g. a GPU
#                                                 # machine without compilers or Catch2/benchmark
set -uo pipefail
cd "$(dirname "$0")/.."
logs=docs/results/gpu
mkdir -p "$logs"
status=0
step() { printf '\n== %s\n' "$*" | tee -a "$logs/summary.txt"; }
: > "$logs/summary.txt"

step "device"
if ! nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee -a "$logs/summary.txt"; then
  echo "no NVIDIA GPU visible (nvidia-smi failed): this script verifies on a GPU machine" | tee -a "$logs/summary.txt"
  exit 1
fi

tests="test_cuda test_cuda_bidirectional test_cuda_causal test_cuda_vision test_cuda_ls_heads"
build=${LSATTN_PREBUILT:-build-gpu}
if [ -n "${LSATTN_PREBUILT:-}" ]; then
  step "prebuilt binaries in $build"
else
  step "build (CMAKE_CUDA_ARCHITECTURES=native)"
  cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DLSATTN_ENABLE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=native \
    -DLSATTN_BUILD_EXAMPLES=OFF > "$logs/configure.txt" 2>&1 || { echo "configure failed: $logs/configure.txt"; exit 1; }
  # shellcheck disable=SC2086
  cmake --build build-gpu -j "$(nproc)" --target $tests lsattn_bench_cuda > "$logs/build.txt" 2>&1 ||
    { echo "build failed: $logs/build.txt"; exit 1; }
fi

step "GPU tests"
for t in $tests; do
  if "$build"/test/$t > "$logs/$t.txt" 2>&1; then result=passed; else result=FAILED; status=1; fi
  echo "$t: $result ($(tail -n 2 "$logs/$t.txt" | head -n 1))" | tee -a "$logs/summary.txt"
done

sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
tools="memcheck"
[ -n "${LSATTN_SKIP_RACECHECK:-}" ] || tools="memcheck racecheck"
for tool in $tools; do
  step "compute-sanitizer --tool $tool (the [gpu] tests)"
  for t in $tests; do
    if "$sanitizer" --tool "$tool" --error-exitcode 1 "$build"/test/$t "[gpu]" > "$logs/$t.$tool.txt" 2>&1; then
      result=clean
    else
      result=ERRORS; status=1
    fi
    echo "$t: $result ($(grep -m1 -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$logs/$t.$tool.txt" || echo 'no summary'))" |
      tee -a "$logs/summary.txt"
  done
done

step "benchmarks"
"$build"/bench/lsattn_bench_cuda --benchmark_out=docs/results/bench-cuda.json --benchmark_out_format=json \
  > "$logs/bench-cuda.txt" 2>&1 || status=1
tail -n 20 "$logs/bench-cuda.txt" | tee -a "$logs/summary.txt"
if python3 -c "import torch" 2>/dev/null; then
  python3 bench/gpu_baselines.py > "$logs/gpu-baselines.txt" 2>&1 || status=1
else
  echo "PyTorch not installed: bench/gpu_baselines.py skipped" | tee -a "$logs/summary.txt"
fi
if [ -f docs/results/bench-cpu.json ]; then python3 bench/report.py docs/results/bench-cpu.json >> "$logs/summary.txt" 2>&1; fi

step "done: exit status $status (details in $logs/)"
exit $status
