#!/usr/bin/env python3
"""lsattn against PyTorch on the same shapes, same precision, same machine, in one run.

usage: build/peers-venv/bin/python bench/peers.py --published-repo /path/to/transformer-ls \\
           [--lsattn-bench build/bench/lsattn_bench] [--lengths 1024 4096 16384] \\
           [--out docs/results/peers-cpu.json]

The virtual environment with PyTorch from PyPI comes from bench/peers_venv.sh. The published
modules come from a checkout of github.com/NVIDIA/transformer-ls given by path: they are read
and run, never copied. Every work is timed with one thread and with all of the machine's
threads, in fp32 and in bf16 (torch.autocast("cpu", torch.bfloat16)); lsattn is timed by its
Google Benchmark binary with OMP_NUM_THREADS set, in fp32 and with LSATTN_BENCH_DTYPE=bf16 (bf16
products, fp32 accumulation, softmax and LayerNorm: the same split as autocast), before any
PyTorch work starts in this process.

Works so far (issue 12 lists more; batch 1, fp32 weights):
  projection_gemm        the projection product alone, (16384 x 512)·(512 x 512): BM_ProjectionGemm
                         vs F.linear without bias (MKL in fp32, oneDNN under bf16 autocast)
  ls_layer               bidirectional Transformer-LS layer, D = 512, 8 heads, w = 128, r = 64, the
                         --lengths and 64K: BM_LongShortLayer vs the published LRA AttentionLS
  full_attention_layer   four Linear(512, 512) + softmax attention, 8 heads:
                         BM_FullAttentionLayer vs the same Linears + SDPA
  causal_layer           the published enwik8 layer, D = 512, 8 heads, l = 16, r = 1, w = 512,
                         memory 2048: BM_CausalLayer vs the published ChunkedLSAttention (its
                         position inputs, the model's job, made once outside the timing)
  causal_full_attention  four Linear + causal attention, 8 heads: BM_FullMhaCausal vs the same
                         Linears + SDPA(is_causal=True)
  vision_stage1          ViL-LS stage 1, C = 96, 3 heads, w = 7, r = 8, one global token, RPE,
                         56 x 56 patches (L = 3137 tokens): BM_VisionLayer vs the published 2D
                         AttentionLS
  lra_text               the paper's LRA text setting, D = 64, 2 heads, w = 8, r = 32, L = 1K, 4K
                         (batch 1 and 32), 16K: BM_LraTextLayer vs the published LRA AttentionLS
  ls_heads_causal        LS-attention heads, D = 512, 8 heads: 4 local (w = 256 keys) + 4 global,
                         causal, L = 16K: BM_LsHeadsCausal vs Linear + FlexAttention
                         (torch.compile'd, sliding-window block mask) for the local heads + SDPA
                         (is_causal) for the global ones
  ls_gpt_causal          the LS-attention author's current GPT attention, D = 768, 12 heads of
                         64: 11 local (w = 100 keys) + 1 global, causal, L = 8K: BM_LsGptCausal vs
                         the same PyTorch composition

Output: JSON {"torch", "cpu", "cpu_flags", "command", "commit", "date", "rows": [{"work", "L",
"batch", "threads", "dtype", "lsattn_ms", "torch_ms"}]}; bench/report.py renders it in
docs/performance.md. Each PyTorch time is the median of at least 3 calls (and 1 s) after a
warm-up; lsattn's is the median of 3 Google Benchmark repetitions (each at least 0.5 s) of the
mean real time.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))
from export_lra_attention import build_module, randomize_  # noqa: E402
import published  # noqa: E402  (imports the published modules from a checkout, unchanged)

LS_CONFIG = {"num_head": 8, "head_dim": 64, "transformer_dim": 512, "window_size": 128, "num_landmarks": 64,
             "pooling_mode": "MEAN"}
CAUSAL = {"d_model": 512, "n_head": 8, "chunk_size": 16, "chunk_rank": 1, "window_len": 512, "cache": 2048}
VISION_SIDE = 56


def work_table(lengths):
    """work -> [(batch, L, the lsattn benchmark's name without /real_time)]."""
    return {
        # The machine's GEMM on the projection shape, both sides: what every layer row stands on.
        "projection_gemm": [(1, 16384, "BM_ProjectionGemm/16384")],
        # The LS layer also at 64K (issue 12: 1K … 64K), the only work that long.
        "ls_layer": [(1, n, f"BM_LongShortLayer/1/{n}") for n in sorted(set(lengths) | {65536})],
        "full_attention_layer": [(1, n, f"BM_FullAttentionLayer/1/{n}") for n in lengths],
        "causal_layer": [(1, n, f"BM_CausalLayer/1/{n}") for n in lengths],
        "causal_full_attention": [(1, n, f"BM_FullMhaCausal/1/{n}") for n in lengths if n >= 4096],
        "vision_stage1": [(1, 1 + VISION_SIDE * VISION_SIDE, f"BM_VisionLayer/1/{VISION_SIDE}")],
        "lra_text": [(1, 1024, "BM_LraTextLayer/1/1024"), (1, 4096, "BM_LraTextLayer/1/4096"),
                     (32, 4096, "BM_LraTextLayer/32/4096"), (1, 16384, "BM_LraTextLayer/1/16384")],
        "ls_heads_causal": [(1, 16384, "BM_LsHeadsCausal/1/16384")],
        "ls_gpt_causal": [(1, 8192, "BM_LsGptCausal/8192")],
    }


class FullAttentionLayer(torch.nn.Module):
    """Four Linear(D, D) and multi-head softmax attention through SDPA: lsattn's full layer."""

    def __init__(self, dim=512, heads=8, causal=False):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.q, self.k, self.v, self.o = (torch.nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x):
        batch, length, dim = x.shape

        def split(t):
            return t.view(batch, length, self.heads, dim // self.heads).transpose(1, 2)

        context = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)),
                                                 is_causal=self.causal)
        return self.o(context.transpose(1, 2).reshape(batch, length, dim))


class LsHeadsTorch(torch.nn.Module):
    """LS-attention heads in PyTorch: Linear projections, FlexAttention with a causal sliding
    window of `window` keys for the first `local` heads, SDPA(is_causal) for the others."""

    def __init__(self, dim, heads, local, window):
        super().__init__()
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
        self.heads, self.local, self.window = heads, local, window
        self.q, self.k, self.v, self.o = (torch.nn.Linear(dim, dim) for _ in range(4))
        self.flex = torch.compile(flex_attention, dynamic=False)
        self.create_block_mask = create_block_mask
        self.masks = {}

    def block_mask(self, length):
        if length not in self.masks:
            window = self.window

            def sliding(b, h, q, kv):
                return (q >= kv) & (q - kv < window)

            self.masks[length] = self.create_block_mask(sliding, None, None, length, length, device="cpu")
        return self.masks[length]

    def forward(self, x):
        batch, length, dim = x.shape
        split = [t.view(batch, length, self.heads, dim // self.heads).transpose(1, 2) for t in (self.q(x), self.k(x), self.v(x))]
        local = self.flex(*(t[:, :self.local] for t in split), block_mask=self.block_mask(length))
        rest = F.scaled_dot_product_attention(*(t[:, self.local:] for t in split), is_causal=True)
        context = torch.cat([local, rest], dim=1)
        return self.o(context.transpose(1, 2).reshape(batch, length, dim))


def torch_time(call):
    """Median milliseconds of call() over >= 3 calls and >= 1 s, after one warm-up."""
    call()
    times, started = [], time.perf_counter()
    while len(times) < 3 or time.perf_counter() - started < 1.0:
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def torch_works(repo):
    """work -> function(L) returning a call() that runs PyTorch's module once on fresh inputs."""
    generator = torch.Generator().manual_seed(0)
    ls = randomize_(build_module(LS_CONFIG, repo), generator).eval()
    full, causal_full = FullAttentionLayer().eval(), FullAttentionLayer(causal=True).eval()
    layer_module, model_module, _ = published.autoregressive(repo)
    c = CAUSAL
    causal = layer_module.ChunkedLSAttention(d_model=c["d_model"], n_head=c["n_head"], chunk_size=c["chunk_size"],
                                             chunk_rank=c["chunk_rank"], window_len=c["window_len"], dropout=0.0,
                                             use_bias=False).eval()
    text_config = dict(LS_CONFIG, num_head=2, head_dim=32, transformer_dim=64, window_size=8, num_landmarks=32)
    lra_text = randomize_(build_module(text_config, repo), generator).eval()
    ls_heads = LsHeadsTorch(512, 8, 4, 256).eval()
    ls_gpt = LsHeadsTorch(768, 12, 11, 100).eval()
    transformer_ls_2d, _ = published.imagenet(repo)
    vision = transformer_ls_2d.AttentionLS(96, num_heads=3, qkv_bias=True, rpe=True, nglo=1, dp_rank=8, w=7).eval()

    def tokens(length, dim=512, batch=1):
        return torch.randn(batch, length, dim, generator=torch.Generator().manual_seed(1))

    def causal_call(length):
        h, cache = tokens(length), tokens(c["cache"])
        key_pe, window_pe, mask = published.positional_inputs(model_module, c["d_model"], c["cache"], length,
                                                              c["chunk_size"], c["chunk_rank"], c["window_len"])
        return lambda: causal(h, cache, key_pe, window_pe, mask)

    projection_weight = torch.randn(LS_CONFIG["transformer_dim"], LS_CONFIG["transformer_dim"], generator=generator)
    return {
        "projection_gemm": lambda b, n: (lambda x: lambda: F.linear(x, projection_weight))(tokens(n)),
        "ls_layer": lambda b, n: (lambda x: lambda: ls(x, torch.ones(b, n)))(tokens(n)),
        "full_attention_layer": lambda b, n: (lambda x: lambda: full(x))(tokens(n)),
        "causal_layer": lambda b, n: causal_call(n),
        "causal_full_attention": lambda b, n: (lambda x: lambda: causal_full(x))(tokens(n)),
        "vision_stage1": lambda b, n: (lambda x: lambda: vision(x, VISION_SIDE, VISION_SIDE))(tokens(n, 96)),
        "lra_text": lambda b, n: (lambda x: lambda: lra_text(x, torch.ones(b, n)))(tokens(n, 64, b)),
        "ls_heads_causal": lambda b, n: (lambda x: lambda: ls_heads(x))(tokens(n)),
        "ls_gpt_causal": lambda b, n: (lambda x: lambda: ls_gpt(x))(tokens(n, 768)),
    }


def time_torch(works, work, batch, length, threads, dtype):
    torch.set_num_threads(threads)
    run = works[work](batch, length)

    def call():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
            run()

    return torch_time(call)


def time_lsattn(binary, table, threads, dtype):
    """({(work, batch, L): ms}, {"fp32": path, "bf16": path}: the kernel paths it took) from one run
    of the benchmark binary with OMP_NUM_THREADS = threads."""
    wanted = {name: (work, batch, length) for work, sizes in table.items() for batch, length, name in sizes}
    pattern = "^(" + "|".join(wanted) + ")(/|$)"  # the names end in /real_time
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), LSATTN_BENCH_DTYPE=dtype)
    result = subprocess.run([binary, f"--benchmark_filter={pattern}", "--benchmark_format=json",
                             "--benchmark_min_time=0.5", "--benchmark_repetitions=3",
                             "--benchmark_report_aggregates_only=true"],
                            env=env, capture_output=True, text=True, check=True)
    report = json.loads(result.stdout)
    paths = {key: report["context"].get(f"lsattn_{key}_path") for key in ("fp32", "bf16")}
    times = {}
    for bench in report["benchmarks"]:
        if bench.get("aggregate_name") != "median":
            continue
        key = bench["run_name"].removesuffix("/real_time")
        unit = {"ms": 1.0, "us": 1e-3, "ns": 1e-6, "s": 1e3}[bench["time_unit"]]
        times[wanted[key]] = bench["real_time"] * unit
    return times, paths


def cpu_description():
    model, flags = platform.processor(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    # avx512_vp2intersect tells AMD Zen 5 (full-width AVX-512: two 512-bit FMAs a cycle) from Zen 4,
    # which the VM's model name ("AMD EPYC") does not.
    wanted = ["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx512_vp2intersect",
              "amx_bf16", "amx_int8", "amx_tile"]
    return model, [f for f in wanted if f in flags]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--published-repo", required=True, help="checkout of NVIDIA/transformer-ls")
    ap.add_argument("--lsattn-bench", default=os.path.join(ROOT, "build", "bench", "lsattn_bench"))
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    ap.add_argument("--works", nargs="+", help="only these works (default: all)")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "results", "peers-cpu.json"))
    args = ap.parse_args()
    if not os.access(args.lsattn_bench, os.X_OK):
        raise SystemExit(f"--lsattn-bench: {args.lsattn_bench} is not an executable (build the lsattn_bench target)")

    works = torch_works(args.published_repo)
    table = work_table(args.lengths)
    if args.works:
        unknown = set(args.works) - set(table)
        if unknown:
            raise SystemExit(f"--works: unknown {sorted(unknown)}; known: {sorted(table)}")
        table = {work: sizes for work, sizes in table.items() if work in args.works}
    all_threads = os.cpu_count() or 1
    thread_counts = sorted({1, all_threads})
    # lsattn first, on a machine where no PyTorch work (nor torch.compile's workers) has run yet.
    lsattn_times = {(threads, dtype): time_lsattn(args.lsattn_bench, table, threads, dtype)
                    for threads in thread_counts for dtype in ("fp32", "bf16")}
    rows = []
    for threads in thread_counts:
        lsattn = {dtype: lsattn_times[(threads, dtype)][0] for dtype in ("fp32", "bf16")}
        for work, sizes in table.items():
            for batch, length, _ in sizes:
                for dtype in ("fp32", "bf16"):
                    torch_ms = time_torch(works, work, batch, length, threads, dtype)
                    lsattn_ms = lsattn[dtype].get((work, batch, length))
                    rows.append({"work": work, "L": length, "batch": batch, "threads": threads, "dtype": dtype,
                                 "lsattn_ms": lsattn_ms, "torch_ms": torch_ms})
                    shown = f"{lsattn_ms:9.1f}" if lsattn_ms is not None else "        –"
                    print(f"{work:22s} B={batch:2d} L={length:6d} threads={threads} {dtype}: lsattn {shown} ms, "
                          f"torch {torch_ms:9.1f} ms", flush=True)

    model, flags = cpu_description()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    # The kernels lsattn took on this CPU (the benchmark's context), e.g. fp32 avx2 where no AVX-512.
    paths = lsattn_times[(1, "fp32")][1]
    record = {"torch": torch.__version__, "cpu": model, "cpu_flags": flags, "threads_all": all_threads,
              "lsattn_paths": paths,
              "command": " ".join([os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(ROOT) else "python",
                                   "bench/peers.py"] + sys.argv[1:]),
              "commit": commit, "date": datetime.date.today().isoformat(), "rows": rows}
    with open(args.out, "w") as f:
        json.dump(record, f, indent=1)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
