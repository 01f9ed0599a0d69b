#!/usr/bin/env python3
"""Optional: times the published PyTorch Transformer-LS attention (LRA AttentionLS) on the
benchmark's shapes, so that bench/report.py can set it beside lsattn in docs/performance.md.

usage: /usr/bin/python3 bench/time_published.py --published-repo /path/to/transformer-ls \\
           [--out docs/results/published.json] [--max-length 16384]

The project does not contain the published code: pass a checkout of NVIDIA/transformer-ls.
`--reference` times the project's own PyTorch re-implementation (tools/reference) instead,
which is only useful to test this script. Shapes: D = 512, 8 heads, w = 128, r = 64, batch 1,
fp32, all of torch's CPU threads, no grad; the published module needs L % w == 0, which every
power-of-two length here satisfies. Output: JSON {"module", "threads", "torch", "results":
[{"length", "ms"}]}, the median of 3 calls after one warm-up.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from export_lra_attention import build_module  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--published-repo", help="checkout of NVIDIA/transformer-ls")
    source.add_argument("--reference", action="store_true", help="time tools/reference instead (tests this script)")
    ap.add_argument("--out", default=os.path.join(HERE, "..", "docs", "results", "published.json"))
    ap.add_argument("--max-length", type=int, default=16384)
    args = ap.parse_args()

    config = {"num_head": 8, "head_dim": 64, "transformer_dim": 512, "window_size": 128, "num_landmarks": 64,
              "pooling_mode": "MEAN"}
    module = build_module(config, None if args.reference else args.published_repo).eval()
    results = []
    length = 1024
    with torch.no_grad():
        while length <= args.max_length:
            x = torch.randn(1, length, 512)
            mask = torch.ones(1, length)
            module(x, mask)  # warm-up
            times = []
            for _ in range(3):
                start = time.perf_counter()
                module(x, mask)
                times.append((time.perf_counter() - start) * 1e3)
            results.append({"length": length, "ms": statistics.median(times)})
            print(f"L = {length:6d}: {results[-1]['ms']:.1f} ms", flush=True)
            length *= 2
    record = {"module": "reference (tools/reference)" if args.reference else "published AttentionLS",
              "threads": torch.get_num_threads(), "torch": torch.__version__, "results": results}
    with open(args.out, "w") as f:
        json.dump(record, f, indent=1)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
