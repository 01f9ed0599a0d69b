#!/usr/bin/env python3
"""Turns one lsattn_bench JSON run into docs/performance.md (tables and plots).

usage: bench/report.py docs/results/bench-cpu.json [--out docs/performance.md] [--notes docs/performance-notes.md]
                      [--published docs/results/published.json]
                      [--gpu-baselines docs/results/gpu-baselines.json] [--bench-cuda docs/results/bench-cuda.json]

Every ratio is taken within the one run: LS vs full attention at the same (batch, length),
each kernel's FLOP/s as a fraction of the run's BM_Gemm FLOP/s. The hand-written reading of
the figures comes from --notes and is appended unchanged. Plots need matplotlib (Debian
python3-matplotlib); without it the tables are still written.

GPU section (issue 5), written when either GPU file exists: --gpu-baselines is the output of
bench/gpu_baselines.py (PyTorch SDPA and FlexAttention); --bench-cuda is Google Benchmark JSON
from build/bench/lsattn_bench_cuda, read tolerantly: a group is found by name prefix
(BM_CudaLsCore, BM_CudaLsLayer, BM_CudaGemmBf16), L is the argument named L or the last
numeric one, times go through `time_unit`, throughput is the counter `TFLOPS` (or `TFLOP/s`,
or `FLOPS`/`FLOP/s` ÷ 1e12), memory `peak_MiB` (or `device_MiB`); with repetitions the median
aggregate is used. Whatever is missing is shown as –.
"""
import argparse
import json
import os
import subprocess

COUNTED = """Multiply-add = 2 FLOPs; softmax, LayerNorm, masking and copies are not counted.
- LS layer (bidirectional): projections `2·L·D·(4D + nh·r)` (W_q, W_k, W_v, W_o, dconv_fc) +
  compression `4·L·r·D` + attention `4·L·D·(r + w + 2·ext)` over a full block's keys.
- Attention proper alone: the compression and attention terms above (no projections).
- Full layer: `8·L·D²` + `4·L²·D`.
- Causal layer: projections of queries, window rows, cache summaries and outputs, `dconv_1`,
  the position tables, and per query `2·D·(3w + 3k)` for its w window keys and k visible
  compressed keys (content, position and value terms).
- 2D layer: qkv and proj `8·N·C²`, the dynamic projection, and per patch `4·C·(r + 13² + 1)`.
- LS heads / full MHA: `8·L·D²` + `4·dh` per visible (query, key) pair and head.
- Peak MiB: the heap high-water mark during the timed calls above the heap before them (every
  malloc of the process is counted by `bench/peak_memory.cpp`): output and all scratch, not the input."""


def load(path):
    with open(path) as f:
        run = json.load(f)
    groups = {}
    for b in run["benchmarks"]:
        parts = b["name"].replace("/real_time", "").split("/")
        groups.setdefault(parts[0], []).append((tuple(int(p) for p in parts[1:]), b))
    return run, groups


def ms(b):
    return f"{b['real_time']:.1f}"


def plots(groups, gemm, image_dir):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    os.makedirs(image_dir, exist_ok=True)
    made = []
    series = [("BM_LongShortLayer", "LS layer (bidirectional)"), ("BM_FullAttentionLayer", "full attention layer"),
              ("BM_CausalLayer", "causal LS layer (M = 2048)"), ("BM_LsHeadsCausal", "LS heads (causal)"),
              ("BM_FullMhaCausal", "full MHA (causal)")]
    for key, ylabel, name in (("real_time", "time per call (ms)", "perf_time.png"),
                              ("peak_MiB", "peak heap (MiB)", "perf_memory.png")):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for group, label in series:
            points = sorted((args[-1], b[key]) for args, b in groups.get(group, []) if len(args) == 1 or args[0] == 1)
            if points:
                ax.loglog([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
        ax.set_xlabel("sequence length L (batch 1)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(image_dir, name), dpi=110)
        plt.close(fig)
        made.append(name)
    return made


def load_json(path):
    if not path or not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


TIME_UNIT_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}


def cuda_groups(run):
    """Google Benchmark JSON → {group name: {L: {"ms", "tflops", "peak_MiB"}}} (L = None without one)."""
    groups = {}
    rows = run.get("benchmarks", [])
    medians = {b.get("run_name", b["name"]) for b in rows
               if b.get("run_type") == "aggregate" and b.get("aggregate_name") == "median"}
    for b in rows:
        run_name = b.get("run_name", b["name"])
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") != "median":
                continue
        elif run_name in medians:
            continue  # the repetitions of a benchmark that has a median
        if b.get("error_occurred"):
            continue
        parts = run_name.split("/")
        named, numbers = {}, []
        for part in parts[1:]:
            if ":" in part:
                key, _, value = part.partition(":")
                if value.lstrip("-").isdigit():
                    named[key] = int(value)
            elif part.lstrip("-").isdigit():
                numbers.append(int(part))
        length = named.get("L", named.get("length", numbers[-1] if numbers else None))
        if "batch" in named and named["batch"] != 1 or len(numbers) >= 2 and "L" not in named and numbers[0] != 1:
            continue  # batch 1 only (the baselines' batch)
        tflops = None
        for key, scale in (("TFLOPS", 1.0), ("TFLOP/s", 1.0), ("FLOPS", 1e-12), ("FLOP/s", 1e-12)):
            if isinstance(b.get(key), (int, float)):
                tflops = b[key] * scale
                break
        time_ms = b["real_time"] * TIME_UNIT_MS.get(b.get("time_unit", "ns"), 1e-6) if "real_time" in b else None
        memory = next((b[key] for key in ("peak_MiB", "device_MiB") if isinstance(b.get(key), (int, float))), None)
        groups.setdefault(parts[0], {})[length] = {"ms": time_ms, "tflops": tflops, "MiB": memory}
    return groups


def find_group(groups, prefix):
    """The group named prefix, else the first (sorted) whose name starts with it."""
    if prefix in groups:
        return groups[prefix]
    for name in sorted(groups):
        if name.startswith(prefix):
            return groups[name]
    return {}


def gpu_section(baselines, cuda_run, baselines_path, cuda_path):
    """The GPU (issue 5) section: lsattn's CUDA rows beside SDPA and FlexAttention."""
    base = {}
    gemm_torch = None
    notes = []
    if baselines:
        for row in baselines.get("rows", []):
            if row.get("name") == "dense_gemm_bf16":
                gemm_torch = row
            else:
                base.setdefault(row.get("L"), {})[row.get("name")] = row
    groups = cuda_groups(cuda_run) if cuda_run else {}
    core, layer = find_group(groups, "BM_CudaLsCore"), find_group(groups, "BM_CudaLsLayer")
    gemm_cuda = next(iter(find_group(groups, "BM_CudaGemmBf16").values()), None)

    def fmt(value, spec, suffix=""):
        return "–" if value is None else f"{value:{spec}}{suffix}"

    def milliseconds(value):
        if value is None:
            return "–"
        return f"{value:.{0 if value >= 100 else 1 if value >= 10 else 2 if value >= 1 else 3}f}"

    def ratio(numerator, denominator, suffix="×"):
        return "–" if not numerator or not denominator else f"{numerator / denominator:.2f}{suffix}"

    def base_ms(length, name):
        row = base.get(length, {}).get(name)
        return row.get("median_ms") if row and not row.get("skipped") else None

    out = ["", "## GPU (issue 5)", ""]
    if baselines and baselines.get("dry_run"):
        out += ["**DRY RUN (CPU, float32): these are not GPU figures; do not commit them.**", ""]
    cuda_device = None
    if cuda_run:
        ctx = cuda_run.get("context", {})
        cuda_device = next((ctx[k] for k in ("device", "gpu", "cuda_device", "device_name") if ctx.get(k)), None)
    if baselines:
        out.append(f"- device: {baselines.get('device')} (torch {baselines.get('torch')}, CUDA {baselines.get('cuda')}; "
                   f"`{baselines_path}`, {baselines.get('date', 'undated')})")
    if cuda_run:
        ctx = cuda_run.get("context", {})
        out.append(f"- lsattn: `{cuda_path}` ({ctx.get('date', 'undated')}" + (f", device {cuda_device}" if cuda_device else "")
                   + ")")
        if baselines and cuda_device and cuda_device != baselines.get("device"):
            out.append("- **the two files come from different devices: the ratios below mix them**")
    shape = baselines or {}
    out.append(f"- shapes: batch 1, {shape.get('dtype', 'bfloat16')}, {shape.get('heads', 8)} heads × head_dim "
               f"{shape.get('head_dim', 64)} (D = {shape.get('model_dim', 512)}), w = {shape.get('window', 128)} "
               f"(ext {shape.get('extension', 64)}), r = {shape.get('rank', 64)}; attention core only for SDPA, "
               "FlexAttention and the LS core (given Q, K, V); the LS layer adds projections, LayerNorms and the "
               "compression")
    yardstick, yardstick_name = None, None
    if gemm_cuda and gemm_cuda.get("tflops"):
        yardstick, yardstick_name = gemm_cuda["tflops"], "BM_CudaGemmBf16"
    torch_gemm_name = "torch.matmul " + "×".join(str(n) for n in (gemm_torch or {}).get("shape", [8192] * 3))
    if not yardstick and gemm_torch and gemm_torch.get("tflops"):
        yardstick, yardstick_name = gemm_torch["tflops"], torch_gemm_name
    gemm_cells = []
    if gemm_cuda and gemm_cuda.get("tflops"):
        gemm_cells.append(f"lsattn `BM_CudaGemmBf16` (cuBLAS) **{gemm_cuda['tflops']:.0f} TFLOP/s**")
    if gemm_torch and gemm_torch.get("tflops"):
        gemm_cells.append(f"{torch_gemm_name} **{gemm_torch['tflops']:.0f} TFLOP/s**")
    out.append("- dense bf16 GEMM yardstick: " + ("; ".join(gemm_cells) if gemm_cells else "not measured")
               + (f" (ratios use {yardstick_name})" if yardstick else ""))
    out.append("- FLOPs: " + (baselines.get("flop_counting") if baselines else
                              "attention core 4·head_dim·heads per visible (query, key) pair")
               + "; the LS rows' TFLOP/s are lsattn_bench_cuda's own counters")
    if baselines:
        out.append("- memory (PyTorch rows): " + baselines.get("peak_memory", "torch.cuda.max_memory_allocated"))

    lengths = sorted({length for length in base if length is not None} | {length for length in core if length is not None}
                     | {length for length in layer if length is not None})
    names = [("sdpa_full", "SDPA full"), ("flex_window", "Flex window"), ("flex_window_plus_global", "Flex window + r")]
    out += ["", "Median ms per call (lower is better) and the ratios of issue 5:", "",
            "| L | SDPA full | Flex window | Flex window + r | LS core | LS layer | Flex window / LS core "
            "| Flex window + r / LS core | SDPA full / LS core |",
            "|---|---|---|---|---|---|---|---|---|"]
    for length in lengths:
        core_ms = core.get(length, {}).get("ms")
        cells = [str(length)] + [milliseconds(base_ms(length, name)) for name, _ in names]
        cells += [milliseconds(core_ms), milliseconds(layer.get(length, {}).get("ms"))]
        cells += [ratio(base_ms(length, name), core_ms) for name in ("flex_window", "flex_window_plus_global", "sdpa_full")]
        out.append("| " + " | ".join(cells) + " |")

    out += ["", "Throughput (each row's own FLOP count: exact visible pairs for FlexAttention, full blocks plus the "
            "compression for the LS core) and device memory in MiB (inputs, output and scratch: PyTorch's "
            "`peak_total_MiB`, lsattn's `device_MiB`/`peak_MiB`):", "",
            "| L | SDPA full TFLOP/s | Flex window TFLOP/s | Flex window + r TFLOP/s | LS core TFLOP/s | LS core / GEMM "
            "| LS core MiB | LS layer MiB | SDPA full MiB | Flex window MiB | Flex window + r MiB |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for length in lengths:
        rows = base.get(length, {})
        c = core.get(length, {})
        cells = [str(length)]
        cells += [fmt(rows[name].get("tflops") if name in rows and not rows[name].get("skipped") else None, ".1f")
                  for name, _ in names]
        cells += [fmt(c.get("tflops"), ".1f"), f"{c['tflops'] / yardstick:.0%}" if c.get("tflops") and yardstick else "–"]
        cells += [fmt(c.get("MiB"), ".1f"), fmt(layer.get(length, {}).get("MiB"), ".1f")]
        cells += [fmt(rows[name].get("peak_total_MiB") if name in rows and not rows[name].get("skipped") else None, ".1f")
                  for name, _ in names]
        out.append("| " + " | ".join(cells) + " |")

    skipped = sorted({(row["name"], row["skipped"]) for rows in base.values() for row in rows.values()
                      if row.get("skipped")})
    for name, reason in skipped:
        notes.append(f"- {name} skipped: {reason}")

    # The goals of issue 5, checked where both sides were measured.
    efficiency = [(length, core[length]["tflops"] / yardstick) for length in lengths
                  if length >= 8192 and core.get(length, {}).get("tflops") and yardstick]
    speed = [(length, base_ms(length, "flex_window") / core[length]["ms"]) for length in lengths
             if length >= 4096 and core.get(length, {}).get("ms") and base_ms(length, "flex_window")]
    out += ["", "Goals (issue 5), from the rows above:"]
    if efficiency:
        met = all(value >= 0.30 for _, value in efficiency)
        out.append(f"- LS core ≥ 30% of the dense bf16 GEMM at L ≥ 8K: **{'met' if met else 'not met'}** ("
                   + ", ".join(f"{length // 1024}K {value:.0%}" for length, value in efficiency) + ")")
    else:
        out.append("- LS core ≥ 30% of the dense bf16 GEMM at L ≥ 8K: not measured (needs the LS core rows and a GEMM)")
    if speed:
        met = all(value > 1.0 for _, value in speed)
        out.append(f"- LS core faster than FlexAttention with the same window at L ≥ 4K: **{'met' if met else 'not met'}** ("
                   + ", ".join(f"{length // 1024}K {value:.2f}×" for length, value in speed) + " Flex / LS time)")
    else:
        out.append("- LS core faster than FlexAttention with the same window at L ≥ 4K: not measured "
                   "(needs the LS core and flex_window rows)")
    if notes:
        out += [""] + notes
    return out


PEER_WORKS = {
    "projection_gemm": "the projection product alone, (16384 × 512)·(512 × 512) without bias: the library's GEMM vs "
                       "F.linear (MKL in fp32, oneDNN under bf16 autocast), the yardstick of the rows below",
    "ls_layer": "LS layer (D = 512, 8 heads, w = 128, r = 64) vs the published LRA AttentionLS",
    "full_attention_layer": "full attention layer (4 Linear + attention, D = 512, 8 heads) vs Linear + SDPA",
    "causal_layer": "the published enwik8 causal layer (D = 512, 8 heads, l = 16, r = 1, w = 512, memory 2048) vs the "
                    "published ChunkedLSAttention",
    "causal_full_attention": "4 Linear + causal attention (D = 512, 8 heads) vs Linear + SDPA(is_causal=True)",
    "vision_stage1": "ViL-LS stage 1 (C = 96, 3 heads, w = 7, r = 8, one global token, RPE, 56 × 56 patches, L = "
                     "3137 tokens) vs the published 2D AttentionLS",
    "lra_text": "the paper's LRA text setting (D = 64, 2 heads, w = 8, r = 32) vs the published LRA AttentionLS",
    "ls_heads_causal": "LS-attention heads (D = 512, 8 heads: 4 local with w = 256 keys, 4 global, causal) vs Linear + "
                       "FlexAttention (compiled, sliding-window block mask) for the local heads + SDPA(is_causal) for "
                       "the global ones",
    "ls_gpt_causal": "the LS-attention author's current GPT attention (D = 768, 12 heads: 11 local with w = 100 keys, "
                     "1 global, causal) vs the same PyTorch composition",
}


def peers_section(peers, path):
    """The 'lsattn vs PyTorch' table from bench/peers.py: speed-up = PyTorch time / lsattn time."""
    lines = ["", "## lsattn vs PyTorch (same shapes, same machine, one run)", "",
             f"`{peers['command']}` (commit {peers['commit']}, {peers['date']}; raw rows: `{path}`). "
             f"PyTorch {peers['torch']} from PyPI; CPU {peers['cpu']} with {', '.join(peers['cpu_flags'])}; "
             f"all threads = {peers['threads_all']}"
             + (f"; lsattn's kernel paths: fp32 {peers['lsattn_paths']['fp32']}, bf16 {peers['lsattn_paths']['bf16']}"
                if peers.get("lsattn_paths") else "")
             + ". Speed-up = PyTorch ms / lsattn ms (> 1: lsattn faster; "
             "issue 12's goal is ≥ 1.25 everywhere). bf16: PyTorch under `torch.autocast('cpu', torch.bfloat16)`, "
             "lsattn with `Precision::bf16` (bf16 products, fp32 accumulation, softmax and LayerNorm).", "",
             "| work | batch | L | threads | lsattn fp32 ms | PyTorch fp32 ms | speed-up fp32 | lsattn bf16 ms | PyTorch bf16 ms | speed-up bf16 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    cells = {(r["work"], r.get("batch", 1), r["L"], r["threads"], r["dtype"]): r for r in peers["rows"]}

    def pair(row):
        lsattn, torch_ms = row.get("lsattn_ms"), row.get("torch_ms")
        if lsattn is None or torch_ms is None:
            return "– | – | –"
        return f"{lsattn:.1f} | {torch_ms:.1f} | {torch_ms / lsattn:.2f}"

    for work, title in PEER_WORKS.items():
        for (w, batch, length, threads, dtype), row in sorted(cells.items()):
            if w != work or dtype != "fp32":
                continue
            bf16 = cells.get((w, batch, length, threads, "bf16"), {})
            lines.append(f"| {work} | {batch} | {length} | {threads} | {pair(row)} | {pair(bf16)} |")
    lines += ["", "Works: " + "; ".join(f"`{w}`: {t}" for w, t in PEER_WORKS.items()) + "."]
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("json")
    ap.add_argument("--out", default="docs/performance.md")
    ap.add_argument("--notes", default="docs/performance-notes.md")
    ap.add_argument("--published", default="docs/results/published.json",
                    help="optional output of bench/time_published.py")
    ap.add_argument("--peers", default="docs/results/peers-cpu.json",
                    help="optional output of bench/peers.py (lsattn vs PyTorch)")
    ap.add_argument("--gpu-baselines", default="docs/results/gpu-baselines.json",
                    help="optional output of bench/gpu_baselines.py")
    ap.add_argument("--bench-cuda", default="docs/results/bench-cuda.json",
                    help="optional Google Benchmark JSON of lsattn_bench_cuda")
    args = ap.parse_args()
    gpu_baselines = load_json(args.gpu_baselines)
    bench_cuda = load_json(args.bench_cuda)
    run, groups = load(args.json)
    gemm = groups["BM_Gemm"][0][1]["FLOP/s"]
    ctx = run["context"]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "unknown"
    out = ["# Performance", "",
           "Generated by `bench/report.py` from one run of `lsattn_bench`; compare ratios, not absolute times",
           "(the machines are shared and noisy). Raw JSON: `" + args.json + "`.", "",
           "## How to reproduce", "```sh",
           "cmake --preset release && cmake --build --preset release --target lsattn_bench",
           "./build/bench/lsattn_bench --benchmark_out=docs/results/bench-cpu.json --benchmark_out_format=json --benchmark_min_time=0.5",
           "/usr/bin/python3 bench/report.py docs/results/bench-cpu.json", "```", "",
           "## The run",
           f"- machine: {ctx.get('num_cpus')} CPUs at {ctx.get('mhz_per_cpu')} MHz, "
           + ", ".join(f"L{c['level']} {c['size'] // 1024} KiB" for c in ctx.get("caches", []) if c.get("type") != "Instruction"),
           f"- commit: {commit} (the report's; the benchmark binary was built from the working tree of the run)",
           f"- date: {ctx.get('date')}",
           f"- yardstick: the library's fp32 GEMM (its packed AVX-512 kernel where the CPU has AVX-512F, else Eigen), (16384×512)·(512×512), same threading: **{gemm / 1e9:.1f} GFLOP/s**",
           "- GPU: see [GPU (issue 5)](#gpu-issue-5) below" if gpu_baselines or bench_cuda else
           "- GPU: figures outstanding: no GPU machine has run `lsattn_bench_cuda` or `bench/gpu_baselines.py` yet",
           "",
           "## What is counted", COUNTED, ""]

    rows = {}
    for name in ("BM_LongShortLayer", "BM_FullAttentionLayer"):
        for a, b in groups.get(name, []):
            rows.setdefault(a, {})[name] = b
    out += ["## Bidirectional layer vs full attention (D = 512, 8 heads, w = 128, r = 64, fp32, all threads)", "",
            "| batch | L | LS ms | LS GFLOP/s | LS / GEMM | LS peak MiB | full ms | full / GEMM | full peak MiB | full / LS time |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for (batch, length), r in sorted(rows.items()):
        ls, full = r.get("BM_LongShortLayer"), r.get("BM_FullAttentionLayer")
        cells = [str(batch), str(length)]
        cells += [ms(ls), f"{ls['FLOP/s'] / 1e9:.1f}", f"{ls['FLOP/s'] / gemm:.0%}", f"{ls['peak_MiB']:.1f}"] if ls else ["–"] * 4
        cells += [ms(full), f"{full['FLOP/s'] / gemm:.0%}", f"{full['peak_MiB']:.1f}"] if full else ["–"] * 3
        cells.append(f"{full['real_time'] / ls['real_time']:.1f}×" if ls and full else "–")
        out.append("| " + " | ".join(cells) + " |")
    t = {a[1]: b["real_time"] for a, b in groups.get("BM_LongShortLayer", []) if a[0] == 1}
    if 4096 in t and 65536 in t:
        out += ["", f"t(64K)/t(4K), batch 1: **{t[65536] / t[4096]:.1f}** (16 is exactly linear)."]

    def simple(title, group, key_name):
        if group not in groups:
            return []
        lines = ["", f"## {title}", "", f"| batch | {key_name} | ms | GFLOP/s | / GEMM | tokens/s | peak MiB |",
                 "|---|---|---|---|---|---|---|"]
        for a, b in sorted(groups[group]):
            batch, size = (a[0], a[1]) if len(a) == 2 else (1, a[0])
            lines.append(f"| {batch} | {size} | {ms(b)} | {b['FLOP/s'] / 1e9:.1f} | {b['FLOP/s'] / gemm:.0%} | "
                         f"{b['tokens/s']:.0f} | {b['peak_MiB']:.1f} |")
        return lines

    out += simple("Bidirectional attention proper alone (precomputed Q, K, V, logits; LN, projection, joint softmax)",
                  "BM_LongShortAttentionOnly", "L")
    out += simple("Causal layer (D = 512, 8 heads, l = 16, r = 1, w = 512, memory M = 2048)", "BM_CausalLayer", "L")
    out += simple("2D layer (ViL-LS stage 1: C = 96, 3 heads, w = 7, r = 8, one global token, RPE; n × n patches)",
                  "BM_VisionLayer", "n")
    if "BM_LsHeadsCausal" in groups and "BM_FullMhaCausal" in groups:
        full = {a: b for a, b in groups["BM_FullMhaCausal"]}
        out += ["", "## LS-attention heads vs full multi-head attention (D = 512, 8 heads, causal; "
                "heads 0–3 local with w = 256)", "", "| batch | L | LS heads ms | full MHA ms | LS / full time |",
                "|---|---|---|---|---|"]
        for a, b in sorted(groups["BM_LsHeadsCausal"]):
            if a in full:
                out.append(f"| {a[0]} | {a[1]} | {ms(b)} | {ms(full[a])} | {b['real_time'] / full[a]['real_time']:.2f} |")

    if os.path.exists(args.published):
        with open(args.published) as f:
            published = json.load(f)
        ls = {a[1]: b for a, b in groups.get("BM_LongShortLayer", []) if a[0] == 1}
        out += ["", f"## The PyTorch module on the same shapes ({published['module']}, torch {published['torch']}, "
                f"{published['threads']} threads; `bench/time_published.py`)", "",
                "| L | PyTorch ms | lsattn LS layer ms | PyTorch / lsattn |", "|---|---|---|---|"]
        for r in published["results"]:
            b = ls.get(r["length"])
            out.append(f"| {r['length']} | {r['ms']:.1f} | {ms(b) if b else '–'} | "
                       + (f"{r['ms'] / b['real_time']:.1f}× |" if b else "– |"))

    peers = load_json(args.peers)
    if peers:
        out += peers_section(peers, args.peers)

    if gpu_baselines or bench_cuda:
        out += gpu_section(gpu_baselines, bench_cuda, args.gpu_baselines, args.bench_cuda)

    image_dir = os.path.join(os.path.dirname(args.out), "images")
    made = plots(groups, gemm, image_dir)
    if made:
        out += ["", "## Plots (batch 1, log-log)", ""] + [f"![{m}](images/{m})" for m in made]
    if os.path.exists(args.notes):
        with open(args.notes) as f:
            out += ["", f.read().rstrip()]
    with open(args.out, "w") as f:
        f.write("\n".join(out) + "\n")
    print("wrote", args.out, "and", len(made), "plots")


if __name__ == "__main__":
    main()
