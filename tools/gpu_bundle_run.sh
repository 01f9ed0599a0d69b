#!/usr/bin/env bash
# The GPU bundle's `run` (copied there by tools/gpu_bundle.sh): everything a lent GPU machine
# is for, in one command of at most about 8 minutes, with LSATTN_REQUIRE_GPU=1 so that nothing
# skips silently:
#   1. the device, the tiled kernels' capability and occupancy (stops here if they cannot run);
#   2. every CUDA test, the [gpu] cases included (and `lsattn run --device cuda` on golden cases),
#      with the CPU kernel tests (bf16, fp32 paths) on this machine's CPU beside them;
#   3. the host CPU's projection GEMM, fp32 and bf16 on each bf16 path it has (AMX included);
#      the benchmarks: cuBLAS bf16 GEMM, the LS core (mma and WMMA kernels) and layer at 1K-64K,
#      then PyTorch's SDPA and FlexAttention on the same shapes with the machine's own PyTorch;
#   4. compute-sanitizer memcheck, racecheck, synccheck and initcheck on the [gpu] cases except
#      the large boundary ones, all at once, in the time left;
#   5. the SASS of the attention kernels (ldmatrix / mma counts), when cuobjdump is there.
# Every log and JSON goes into one archive: ARCHIVE, else $OUT/lsattn-gpu-results.tar.gz, else
# ./lsattn-gpu-results.tar.gz. Exit status 0 only when every test and sanitizer run was clean.
#
#   DIR/run [ARCHIVE]
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
archive=$(realpath -m "${1:-${OUT:-$PWD}/lsattn-gpu-results.tar.gz}")  # absolute: run changes directory
work=$(mktemp -d)
logs=$work/lsattn-gpu-results
mkdir -p "$logs"
summary=$logs/summary.txt
status=0
start=$(date +%s)
deadline=$((start + ${LSATTN_BUNDLE_SECONDS:-470}))
export LSATTN_REQUIRE_GPU=1
tests="test_cuda test_cuda_bidirectional test_cuda_causal test_cuda_vision test_cuda_ls_heads test_cuda_cli"
cpu_tests="test_bf16 test_cpu_kernels"  # the CPU kernels' run-time paths on this machine's CPU
cd "$here"  # test_cuda_cli reads test/data/ from here

say() { echo "$*" | tee -a "$summary"; }
step() { printf '\n== %s (%ds)\n' "$1" "$(($(date +%s) - start))" | tee -a "$summary"; }
left() { local s=$((deadline - $(date +%s))); [ "$s" -gt 5 ] && echo "$s" || echo 5; }
finish() {
  step "done: exit status $status"
  cp "$here/MANIFEST" "$logs/" 2>/dev/null
  mkdir -p "$(dirname "$archive")"
  tar -czf "$archive" -C "$work" lsattn-gpu-results && echo "results: $archive"
  exit "$status"
}

step "bundle"
cat "$here/MANIFEST" | tee -a "$summary"

# cuBLAS is not shipped (540 MB): the machine's CUDA toolkit, or the one PyTorch brought.
cublas=""
for d in ${CUDA_HOME:+$CUDA_HOME/lib64} ${CUDA_HOME:+$CUDA_HOME/lib} /usr/local/cuda/lib64 /usr/local/cuda/lib \
         /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-13*/lib64 /usr/local/cuda-13*/targets/x86_64-linux/lib; do
  if [ -e "$d/libcublas.so.13" ]; then cublas=$d; break; fi
done
if [ -z "$cublas" ] && command -v python3 > /dev/null; then
  cublas=$(python3 -c 'import nvidia.cublas, os; print(os.path.join(list(nvidia.cublas.__path__)[0], "lib"))' 2>/dev/null || true)
  [ -e "$cublas/libcublas.so.13" ] || cublas=""
fi
export LD_LIBRARY_PATH=$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}  # the CPU tests have no RUNPATH
if [ -n "$cublas" ]; then
  export LD_LIBRARY_PATH=$cublas:$LD_LIBRARY_PATH
  say "cuBLAS: $cublas"
else
  say "cuBLAS 13 not found (CUDA toolkit or PyTorch's nvidia-cublas): the programs cannot start"
fi
for program in "$here"/bin/*; do
  missing=$(ldd "$program" 2>&1 | grep 'not found')
  if [ -n "$missing" ]; then say "$(basename "$program"): missing libraries: $missing"; status=1; fi
done
[ "$status" -eq 0 ] || finish

step "device"
if ! nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | tee -a "$summary"; then
  say "no NVIDIA GPU visible (nvidia-smi failed): this bundle verifies the CUDA backend on a GPU machine"
  status=1
  finish
fi
if ! "$here/bin/lsattn_cuda_info" 2>&1 | tee -a "$summary"; then
  say "lsattn_cuda_info failed: no usable device, or the tiled kernels cannot run here; nothing else is meaningful"
  status=1
  finish
fi

step "host CPU"
{ lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Socket)'; echo "flags: $(grep -m1 -o -E 'avx512f|avx512_bf16|avx512_fp16|amx_tile|amx_bf16|amx_int8' /proc/cpuinfo | sort -u | tr '\n' ' ')"; } 2>&1 |
  tee -a "$summary"

step "tests (LSATTN_REQUIRE_GPU=1, all at once; and the CPU kernel tests)"
for t in $tests $cpu_tests; do
  (timeout "$(($(left) * 2 / 5))" "$here/bin/$t" --durations yes > "$logs/$t.txt" 2>&1; echo $? > "$logs/$t.rc") &
done
wait
for t in $tests $cpu_tests; do
  rc=$(cat "$logs/$t.rc")
  if [ "$rc" = 0 ]; then result=passed; elif [ "$rc" = 124 ]; then result="TIMED OUT"; status=1; else result=FAILED; status=1; fi
  say "$t: $result ($(grep -E '^(All tests passed|test cases:)' "$logs/$t.txt" | tail -n 1))"
done

step "host CPU: projection GEMM (16384 x 512 x 512), one thread, per path"
# The amx path has run nowhere else (the project's machine has no AMX): its first timing.
for variant in "fp32 -" "bf16 avx512_bf16" "bf16 amx"; do
  set -- $variant
  if [ "$2" = amx ] && ! grep -q -m1 -w amx_bf16 /proc/cpuinfo; then say "bf16 amx: no AMX on this CPU"; continue; fi
  line=$(OMP_NUM_THREADS=1 LSATTN_BENCH_DTYPE=$1 LSATTN_BF16_PATH=$([ "$2" = - ] || echo "$2") timeout 60 \
    "$here/bin/lsattn_bench" --benchmark_filter='^BM_ProjectionGemm/' --benchmark_min_time=0.5 2>&1 | grep -E '^BM_|rror' | tail -n 1)
  say "$1 ${2/-/}: ${line:-no result}"
done

step "benchmarks (nothing else running)"
timeout "$(($(left) / 3))" "$here/bin/lsattn_bench_cuda" --benchmark_min_time=0.2 \
  --benchmark_out="$logs/bench-cuda.json" --benchmark_out_format=json > "$logs/bench-cuda.txt" 2>&1 || status=1
grep -E '^BM_' "$logs/bench-cuda.txt" | tee -a "$summary"
if python3 -c 'import torch; assert torch.cuda.is_available()' 2> /dev/null; then
  timeout "$(($(left) / 2))" python3 "$here/gpu_baselines.py" --lengths 4K,16K,64K --repeats 20 --warmup 5 \
    --out "$logs/gpu-baselines.json" > "$logs/gpu-baselines.txt" 2>&1 || say "gpu_baselines.py: exit $? (see gpu-baselines.txt)"
  tail -n 15 "$logs/gpu-baselines.txt" | tee -a "$summary"
else
  say "PyTorch with CUDA not importable: gpu_baselines.py skipped"
fi

step "compute-sanitizer: memcheck racecheck synccheck initcheck on [gpu]~[boundaries], all at once"
sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
budget=$(($(left) - 25))
for tool in memcheck racecheck synccheck initcheck; do
  for t in $tests; do
    (OMP_NUM_THREADS=1 timeout "$budget" "$sanitizer" --tool "$tool" --error-exitcode 1 "$here/bin/$t" '[gpu]~[boundaries]' \
      > "$logs/$t.$tool.txt" 2>&1; echo $? > "$logs/$t.$tool.rc") &
  done
done
wait
for tool in memcheck racecheck synccheck initcheck; do
  for t in $tests; do
    rc=$(cat "$logs/$t.$tool.rc")
    if [ "$rc" = 0 ]; then result=clean; elif [ "$rc" = 124 ]; then result="INCOMPLETE (timed out)"; status=1; else result=ERRORS; status=1; fi
    say "$tool $t: $result ($(grep -m1 -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$logs/$t.$tool.txt" || echo 'no summary'))"
  done
done

step "SASS of the attention kernels"
if command -v cuobjdump > /dev/null || [ -x /usr/local/cuda/bin/cuobjdump ]; then
  dump=$(command -v cuobjdump || echo /usr/local/cuda/bin/cuobjdump)
  "$dump" -sass "$here/bin/lsattn_cuda_info" > "$logs/sass.txt" 2>&1
  awk '/Function :/ { name = $3 } /LDSM/ { ldsm[name]++ } /HMMA/ { hmma[name]++ } /LDGSTS/ { cp[name]++ }
       / LD\.E| LDG/ { ld[name]++ }
       END { for (n in hmma) printf "%s: %d LDSM, %d HMMA, %d LDGSTS, %d global loads\n", n, ldsm[n], hmma[n], cp[n], ld[n] }' \
    "$logs/sass.txt" | tee -a "$summary"
else
  say "cuobjdump not found: SASS not inspected"
fi
finish
