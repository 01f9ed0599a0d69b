#!/usr/bin/env python3
"""Turns lsattn_bench's JSON output into the markdown tables of docs/performance.md.

usage: bench/report.py docs/results/bench-cpu.json > table.md

Every ratio is taken within the one run in the file: LS vs full attention at the same
(batch, length), and each kernel's FLOP/s as a fraction of the run's BM_Gemm FLOP/s.
"""
import json
import sys


def main(path):
    with open(path) as f:
        run = json.load(f)
    rows = {}
    gemm = None
    causal = []
    for b in run["benchmarks"]:
        name = b["name"].replace("/real_time", "")
        parts = name.split("/")
        if parts[0] == "BM_Gemm":
            gemm = b["FLOP/s"]
            continue
        if parts[0] == "BM_CausalLayer":
            causal.append((int(parts[1]), b))
            continue
        key = (int(parts[1]), int(parts[2]))
        rows.setdefault(key, {})[parts[0]] = b
    ctx = run["context"]
    print(f"Machine: {ctx.get('num_cpus')} CPUs at {ctx.get('mhz_per_cpu')} MHz, run {ctx.get('date')}.")
    print(f"Yardstick: Eigen GEMM (16384×512)·(512×512), same threading: **{gemm / 1e9:.1f} GFLOP/s**.\n")
    print("| batch | L | LS time (ms) | LS GFLOP/s | LS / GEMM | LS peak MiB | full time (ms) | full GFLOP/s | full / GEMM | full peak MiB | full / LS time |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (batch, length), r in sorted(rows.items()):
        ls = r.get("BM_LongShortLayer")
        full = r.get("BM_FullAttentionLayer")
        cells = [str(batch), str(length)]
        for b in (ls, full):
            if b is None:
                cells += ["–"] * 4
            else:
                cells += [f"{b['real_time']:.1f}", f"{b['FLOP/s'] / 1e9:.1f}", f"{b['FLOP/s'] / gemm:.0%}",
                          f"{b['peak_MiB']:.1f}"]
        cells.append(f"{full['real_time'] / ls['real_time']:.1f}×" if ls and full else "–")
        print("| " + " | ".join(cells) + " |")
    by_length = {length: r["BM_LongShortLayer"]["real_time"] for (batch, length), r in rows.items()
                 if batch == 1 and "BM_LongShortLayer" in r}
    if 4096 in by_length and 65536 in by_length:
        print(f"\nLS time ratio t(64K)/t(4K), batch 1: **{by_length[65536] / by_length[4096]:.1f}** (16 would be exactly linear).")

    if causal:
        print("\nCausal layer (D = 512, 8 heads, l = 16, r = 1, w = 512, memory M = 2048, batch 1):\n")
        print("| L | time (ms) | GFLOP/s | / GEMM | tokens/s | peak MiB |")
        print("|---|---|---|---|---|---|")
        for length, b in sorted(causal):
            print(f"| {length} | {b['real_time']:.1f} | {b['FLOP/s'] / 1e9:.1f} | {b['FLOP/s'] / gemm:.0%} | "
                  f"{b['tokens/s']:.0f} | {b['peak_MiB']:.1f} |")


if __name__ == "__main__":
    main(sys.argv[1])
