#!/usr/bin/env python3
"""GPU baselines for issue 5: full attention and FlexAttention with the Transformer-LS window,
on the shapes of lsattn's CUDA benchmark (bench/bench_cuda.cu), so that bench/report.py can set
them beside the LS core in docs/performance.md.

usage: python3 bench/gpu_baselines.py [--lengths 1K,2K,...,64K] [--repeats 30] [--warmup 10]
                                      [--out docs/results/gpu-baselines.json]
       python3 bench/gpu_baselines.py --dry-run     # CPU, float32, tiny sizes: tests the script

Needs PyTorch >= 2.5 (FlexAttention) and a CUDA device; nothing else. Shapes: batch 1, bf16,
8 heads of head_dim 64 (D = 512), window w = 128 (ext = w/2 = 64 keys on each side of a
segment), r = 64 global keys. Only the attention core is timed: Q, K, V of shape
(B, heads, L, head_dim) are given; no projections, LayerNorms or compression.

Rows (each L unless stated):
- sdpa_full: torch.nn.functional.scaled_dot_product_attention, bidirectional, no mask, flash
  backend (the full attention core).
- flex_window: FlexAttention (torch.compile'd) with a block mask equal to the bidirectional
  Transformer-LS window (spec §1.3 step 8): query t of segment s = t // w sees keys
  [s·w − ext, (s+1)·w + ext), clipped to [0, L).
- flex_window_plus_global: the same window plus r extra keys/values concatenated in front of
  the sequence (KV length r + L) and visible to every query: the key set of the LS core (the r
  compressed keys and the window, one softmax).
- dense_gemm_bf16: torch.matmul of 8192 × 8192 by 8192 × 8192 (the TFLOP/s yardstick).

FLOPs: multiply-add = 2; an attention core counts 4·head_dim per visible (query, key) pair and
head (QKᵀ and PV; softmax, masking and scaling not counted): 4·L·L·dh·nh for full attention,
4·pairs·dh·nh for the window, where `pairs` is counted from the mask itself, edges included
(about 2w keys per query, fewer at the sequence ends), and + 4·L·r·dh·nh for the global keys.
GEMM: 2·M·N·K.

Timing: `warmup` calls (the first compiles FlexAttention), then `repeats` calls, each between
two CUDA events; the median is reported (and the minimum). Memory: one further call after
torch.cuda.reset_peak_memory_stats(): peak_MiB is torch.cuda.max_memory_allocated() minus the
memory allocated before the call (output and scratch, not the inputs); peak_total_MiB is the
high-water mark itself (inputs included).

A row that fails (no FlexAttention in this torch, out of memory, a compile error) is kept with
its reason in `skipped`, and the other rows still run.
"""
import argparse
import datetime
import json
import math
import os
import statistics
import sys
import tempfile
import time
import warnings

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "docs", "results", "gpu-baselines.json")

FLOP_COUNTING = ("multiply-add = 2 FLOPs; attention core: 4·head_dim·heads per visible (query, key) pair "
                 "(QK^T and PV only; softmax, masking and scaling not counted); full attention: pairs = L·L; "
                 "window: pairs counted from the mask (segment s = t // w sees keys [s·w − ext, (s+1)·w + ext) "
                 "clipped to [0, L), ext = max(w // 2, 1)); window + global: that + L·r; GEMM: 2·M·N·K")
PEAK_MEMORY = ("peak_MiB: torch.cuda.max_memory_allocated() during one call, after reset_peak_memory_stats(), "
               "minus the memory allocated before the call (output and scratch, not the inputs); "
               "peak_total_MiB: the high-water mark itself")


def parse_lengths(text):
    lengths = []
    for item in text.split(","):
        item = item.strip().upper()
        if not item:
            continue
        lengths.append(int(item[:-1]) * 1024 if item.endswith("K") else int(item))
    return lengths


def short_reason(error):
    line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {line[:300]}"


class Timer:
    """Times a callable on the benchmark's device: CUDA events around each call, or
    perf_counter on the CPU (dry run)."""

    def __init__(self, device):
        self.device = device

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def run(self, fn, warmup, repeats):
        out = None
        for _ in range(warmup):
            out = fn()
        self.sync()
        del out
        times = []
        if self.device.type == "cuda":
            events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                      for _ in range(repeats)]
            for start, end in events:
                start.record()
                fn()
                end.record()
            self.sync()
            times = [start.elapsed_time(end) for start, end in events]
        else:
            for _ in range(repeats):
                begin = time.perf_counter()
                fn()
                times.append((time.perf_counter() - begin) * 1e3)
        return statistics.median(times), min(times)

    def peak(self, fn):
        """(peak above the allocations before the call, peak total) in MiB, or (None, None) on the CPU."""
        if self.device.type != "cuda":
            return None, None
        self.sync()
        torch.cuda.reset_peak_memory_stats(self.device)
        before = torch.cuda.memory_allocated(self.device)
        out = fn()
        self.sync()
        peak = torch.cuda.max_memory_allocated(self.device)
        del out
        return (peak - before) / 2**20, peak / 2**20


def window_mask_mod(window, extension, global_keys, key_count):
    """The bidirectional Transformer-LS window as a FlexAttention mask_mod. With global_keys = r,
    the first r key positions are the global keys (always visible) and key r + j is token j.
    Keys from key_count on are padding (hidden)."""

    def mask_mod(b, h, q_idx, kv_idx):
        first = (q_idx // window) * window - extension
        token = kv_idx - global_keys
        visible = (token >= first) & (token < first + window + 2 * extension)
        if global_keys:
            visible = visible | (kv_idx < global_keys)
        return visible & (kv_idx < key_count)

    return mask_mod


def analytic_pairs(length, window, extension):
    """Visible (query, key) pairs of the window, edges included (BidirectionalWindow::keys)."""
    pairs = 0
    for first in range(0, length, window):
        queries = min(length, first + window) - first
        keys = min(length, first + window + extension) - max(0, first - extension)
        pairs += queries * keys
    return pairs


def mask_pairs(mask_mod, q_len, kv_len, device):
    """Visible pairs counted by evaluating mask_mod on every (query, key), in row chunks."""
    rows = max(1, min(q_len, (1 << 26) // kv_len))
    zero = torch.zeros((), dtype=torch.int64, device=device)
    kv = torch.arange(kv_len, device=device)[None, :]
    total = 0
    for begin in range(0, q_len, rows):
        q = torch.arange(begin, min(q_len, begin + rows), device=device)[:, None]
        total += int(mask_mod(zero, zero, q, kv).sum().item())
    return total


def flex_api():
    """(flex_attention, create_block_mask) or raises ImportError with the reason."""
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    except ImportError as error:
        raise ImportError(f"FlexAttention is not available in torch {torch.__version__} ({error})") from error
    return flex_attention, create_block_mask


def make_block_mask(create_block_mask, mask_mod, q_len, kv_len, device):
    """Compiled, so that no L × L mask is materialised (64K² would not fit)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # newer torch prefers torch.compile(create_block_mask)
        try:
            return create_block_mask(mask_mod, None, None, q_len, kv_len, device=str(device), _compile=True)
        except TypeError:  # a torch without the _compile argument
            return torch.compile(create_block_mask)(mask_mod, None, None, q_len, kv_len, device=str(device))


def raise_recompile_limits():
    """torch.compile compiles flex_attention once per shape (dynamic=False): 2 × 7 shapes pass
    dynamo's default limit of 8, after which it would silently run eager."""
    try:
        from torch._dynamo import config
    except ImportError:
        return
    for name, value in (("cache_size_limit", 64), ("recompile_limit", 64), ("accumulated_cache_size_limit", 256),
                        ("accumulated_recompile_limit", 256)):
        if hasattr(config, name):
            setattr(config, name, max(getattr(config, name), value))


def tflops(flops, milliseconds):
    return flops / (milliseconds * 1e-3) / 1e12


class Bench:
    def __init__(self, args, device, dtype):
        self.args = args
        self.device = device
        self.dtype = dtype
        self.timer = Timer(device)
        self.rows = []
        self.compiled_flex = None
        self.eager_flex = None
        self.create_block_mask = None
        self.flex_error = None
        self.flex_mode = None

    def record(self, row):
        self.rows.append(row)
        shown = {k: v for k, v in row.items() if k in ("name", "L", "median_ms", "tflops", "peak_MiB", "skipped")}
        print(json.dumps(shown), flush=True)

    def measure(self, name, length, fn, flops, extra=None):
        row = {"name": name, "L": length, "median_ms": None, "min_ms": None, "flops": flops, "tflops": None,
               "peak_MiB": None, "peak_total_MiB": None, "skipped": None}
        row.update(extra or {})
        try:
            median, best = self.timer.run(fn, self.args.warmup, self.args.repeats)
            peak, peak_total = self.timer.peak(fn)
        except Exception as error:  # OOM, a compile failure, a missing kernel: keep the row, say why
            row["skipped"] = short_reason(error)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        else:
            row.update(median_ms=median, min_ms=best, tflops=tflops(flops, median), peak_MiB=peak,
                       peak_total_MiB=peak_total)
        self.record(row)

    def skip(self, name, length, reason, extra=None):
        row = {"name": name, "L": length, "median_ms": None, "min_ms": None, "flops": None, "tflops": None,
               "peak_MiB": None, "peak_total_MiB": None, "skipped": reason}
        row.update(extra or {})
        self.record(row)

    def qkv(self, q_len, kv_len):
        a = self.args
        shape_q = (a.batch, a.heads, q_len, a.head_dim)
        shape_kv = (a.batch, a.heads, kv_len, a.head_dim)
        generator = torch.Generator(device=self.device).manual_seed(q_len)
        return tuple(torch.randn(shape, device=self.device, dtype=self.dtype, generator=generator)
                     for shape in (shape_q, shape_kv, shape_kv))

    # --- rows -----------------------------------------------------------------------------------

    def sdpa_full(self, length):
        a = self.args
        q, k, v = self.qkv(length, length)
        flops = 4 * a.batch * a.heads * a.head_dim * length * length
        backend_name = "MATH" if a.dry_run else a.sdpa_backend.upper()
        extra = {"keys_per_query": float(length), "backend": backend_name.lower()}
        try:
            from torch.nn.attention import SDPBackend, sdpa_kernel
            backend = getattr(SDPBackend, "FLASH_ATTENTION" if backend_name == "FLASH" else backend_name)
        except (ImportError, AttributeError) as error:
            self.skip("sdpa_full", length, f"no SDPA backend selection in torch {torch.__version__} ({error})", extra)
            return

        with sdpa_kernel([backend]):
            self.measure("sdpa_full", length, lambda: F.scaled_dot_product_attention(q, k, v), flops, extra)
        del q, k, v

    def flex(self):
        """The compiled flex_attention, built once (compiling per shape happens on first call)."""
        if self.compiled_flex is None and self.flex_error is None:
            try:
                flex_attention, create_block_mask = flex_api()
                if self.device.type != "cuda" and not self.args.dry_run:
                    raise RuntimeError("FlexAttention needs a CUDA device here")
                self.create_block_mask = create_block_mask
                if self.args.no_compile:
                    self.compiled_flex, self.flex_mode = flex_attention, "eager"
                else:
                    self.compiled_flex, self.flex_mode = torch.compile(flex_attention, dynamic=False), "compiled"
                self.eager_flex = flex_attention
            except Exception as error:
                self.flex_error = short_reason(error)
        return self.compiled_flex

    def flex_row(self, name, length, global_keys):
        a = self.args
        extension = max(a.window // 2, 1)
        pairs = analytic_pairs(length, a.window, extension) + length * global_keys
        flops = 4 * a.batch * a.heads * a.head_dim * pairs
        extra = {"keys_per_query": pairs / length, "visible_pairs": pairs, "window": a.window,
                 "extension": extension, "global_keys": global_keys}
        if self.flex() is None:
            self.skip(name, length, self.flex_error, extra)
            return
        kv_len = length + global_keys
        try:
            call = self.prepare_flex(length, kv_len, global_keys, pairs, extra)
        except Exception as error:
            reason = short_reason(error)
            padded = -(-kv_len // 128) * 128
            if padded == kv_len:
                self.skip(name, length, reason, extra)
                return
            # Some torch versions want KV lengths in whole 128-blocks: pad with keys the mask hides.
            print(f"{name} L={length}: {reason}; retrying with KV padded to {padded}", flush=True)
            try:
                call = self.prepare_flex(length, padded, global_keys, pairs, extra)
                extra["note"] = f"KV padded from {kv_len} to {padded} with masked keys ({reason})"
            except Exception as second:
                self.skip(name, length, f"{reason}; padded to {padded}: {short_reason(second)}", extra)
                return
        self.measure(name, length, call, flops, extra)

    def prepare_flex(self, length, kv_len, global_keys, pairs, extra):
        """Block mask, inputs, the first (compiling) call and the check; returns the timed call."""
        a = self.args
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        mask_mod = window_mask_mod(a.window, max(a.window // 2, 1), global_keys, length + global_keys)
        counted = mask_pairs(mask_mod, length, kv_len, self.device)
        if counted != pairs:
            raise AssertionError(f"the mask has {counted} visible pairs, the window rule {pairs}")
        block_mask = make_block_mask(self.create_block_mask, mask_mod, length, kv_len, self.device)
        try:
            extra["block_sparsity_percent"] = float(block_mask.sparsity())
        except Exception:
            pass
        q, k, v = self.qkv(length, kv_len)
        try:
            self.compiled_flex(q, k, v, block_mask=block_mask)
        except Exception as error:
            if not (self.args.dry_run and self.flex_mode == "compiled"):
                raise
            # torch.compile of flex_attention may not support the CPU in this torch: eager is enough to test
            print(f"compiled FlexAttention failed on the CPU ({short_reason(error)}); using eager", flush=True)
            self.compiled_flex, self.flex_mode = self.eager_flex, "eager"
            self.compiled_flex(q, k, v, block_mask=block_mask)
        extra["mode"] = self.flex_mode
        if length <= a.check_max_length:
            extra["max_abs_err_vs_masked_sdpa"] = self.check(mask_mod, block_mask, q, k, v)
        flex = self.compiled_flex
        return lambda: flex(q, k, v, block_mask=block_mask)

    def check(self, mask_mod, block_mask, q, k, v):
        """Largest |flex − SDPA with the dense boolean mask (fp32)|: the block mask is the window."""
        q_len, kv_len = q.shape[-2], k.shape[-2]
        zero = torch.zeros((), dtype=torch.int64, device=q.device)
        dense = mask_mod(zero, zero, torch.arange(q_len, device=q.device)[:, None],
                         torch.arange(kv_len, device=q.device)[None, :])
        reference = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=dense)
        got = self.compiled_flex(q, k, v, block_mask=block_mask)
        return float((got.float() - reference).abs().max().item())

    def gemm(self):
        size = self.args.gemm_size
        generator = torch.Generator(device=self.device).manual_seed(0)
        x = torch.randn(size, size, device=self.device, dtype=self.dtype, generator=generator)
        y = torch.randn(size, size, device=self.device, dtype=self.dtype, generator=generator)
        self.measure("dense_gemm_bf16", None, lambda: torch.matmul(x, y), 2 * size**3,
                     {"shape": [size, size, size]})
        del x, y


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", default=None, help="comma-separated, K = 1024 (default 1K,2K,4K,8K,16K,32K,64K; "
                    "dry run 256,512)")
    ap.add_argument("--repeats", type=int, default=None, help="timed calls per row (default 30; dry run 3)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 10; dry run 1)")
    ap.add_argument("--out", default=None, help="JSON output (default docs/results/gpu-baselines.json; a dry run "
                    "writes to the temporary directory unless given)")
    ap.add_argument("--dry-run", action="store_true", help="CPU, float32, SDPA math backend, tiny sizes")
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--window", type=int, default=128, help="w, the segment length")
    ap.add_argument("--rank", type=int, default=64, help="r, the global (compressed) keys")
    ap.add_argument("--gemm-size", type=int, default=None, help="M = N = K of the GEMM (default 8192; dry run 256)")
    ap.add_argument("--sdpa-backend", default="flash", choices=["flash", "cudnn", "efficient"],
                    help="SDPA backend of sdpa_full on the GPU")
    ap.add_argument("--no-compile", action="store_true", help="eager FlexAttention (slow; for debugging)")
    ap.add_argument("--check-max-length", type=int, default=4096,
                    help="compare FlexAttention with a densely masked SDPA up to this L (the dense mask is L×L)")
    args = ap.parse_args()

    dry = args.dry_run
    lengths = parse_lengths(args.lengths or ("256,512" if dry else "1K,2K,4K,8K,16K,32K,64K"))
    args.repeats = args.repeats or (3 if dry else 30)
    args.warmup = args.warmup if args.warmup is not None else (1 if dry else 10)
    args.gemm_size = args.gemm_size or (256 if dry else 8192)
    out_path = args.out or (os.path.join(tempfile.gettempdir(), "gpu-baselines-dry-run.json") if dry else DEFAULT_OUT)
    if dry:
        device, dtype = torch.device("cpu"), torch.float32
    else:
        if not torch.cuda.is_available():
            sys.exit("no CUDA device: run this on a GPU machine, or use --dry-run to test the script on the CPU")
        device, dtype = torch.device("cuda"), torch.bfloat16
    for length in lengths:
        if length % args.window:
            print(f"note: L = {length} is not a multiple of w = {args.window} (the published code needs it; "
                  "the last segment is partial here)", file=sys.stderr)

    raise_recompile_limits()

    bench = Bench(args, device, dtype)
    bench.gemm()
    for length in lengths:
        bench.sdpa_full(length)
        bench.flex_row("flex_window", length, 0)
        bench.flex_row("flex_window_plus_global", length, args.rank)

    result = {
        "generator": "bench/gpu_baselines.py",
        "dry_run": dry,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (dry run)",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "dtype": str(dtype).replace("torch.", ""),
        "batch": args.batch,
        "heads": args.heads,
        "head_dim": args.head_dim,
        "model_dim": args.heads * args.head_dim,
        "window": args.window,
        "extension": max(args.window // 2, 1),
        "rank": args.rank,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "timing": "median (and min) of `repeats` calls, each between two "
                  + ("CUDA events" if device.type == "cuda" else "perf_counter readings") + ", after `warmup` calls",
        "flop_counting": FLOP_COUNTING,
        "peak_memory": PEAK_MEMORY,
        "rows": bench.rows,
    }
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print("wrote", out_path)


if __name__ == "__main__":
    main()
