#!/usr/bin/env python3
"""Generate the golden LRA attention fixtures in test/data/lra/<case>/.

Each case directory gets:
  weights.safetensors   state_dict under the published names + config __metadata__
  input.safetensors     input.x (B, L, D) f32, optional input.mask (B, L) f32 1/0,
                        optional input.cls_embed (B, 1, D) f32
  expected.safetensors  output.y f32 (B, L, D), or (B, L+1, D) with the cls row first
                        when input.cls_embed is given; __metadata__ holds the CLI
                        command that must reproduce it and the fp32-vs-fp64 noise.

Expected outputs come from tools/reference/lra_attention_ls.py, an independent
re-implementation of the spec (not the published NVIDIA code). Before generating,
the script runs sanity checks on that reference, including a comparison against a
naive per-token float64 loop implementation written separately below.

Usage:  /usr/bin/python3 tools/reference/make_lra_fixtures.py [--out test/data/lra]
        [--published-repo PATH]   # also compare against the published AttentionLS
"""

import argparse
import copy
import math
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))

from lra_attention_ls import ReferenceAttentionLS  # noqa: E402
from export_lra_attention import (export_attention, randomize_, build_module,  # noqa: E402
                                  canonicalize_header)

SEED = 20240607


def _mask(B, L, padded):
    """Float 1/0 mask with the (b, t) pairs in ``padded`` set to 0."""
    m = torch.ones(B, L)
    for b, t in padded:
        m[b, t] = 0.0
    return m


# name: config, B, L (of input.x), mask (None = no mask file), cls_embed?, note
CASES = [
    dict(name="basic", nh=2, dh=8, w=4, r=3, B=2, L=16,
         mask=_mask(2, 16, [(1, 5), (1, 6), (1, 13), (1, 14), (1, 15)]), cls=False),
    dict(name="odd_window", nh=2, dh=4, w=3, r=2, B=1, L=12, mask=None, cls=False),
    dict(name="window1", nh=2, dh=4, w=1, r=2, B=2, L=7,
         mask=_mask(2, 7, [(1, 3), (1, 6)]), cls=False),
    dict(name="rank0", nh=1, dh=8, w=4, r=0, B=1, L=8, mask=_mask(1, 8, [(0, 5)]), cls=False),
    dict(name="window0", nh=2, dh=4, w=0, r=4, B=1, L=9, mask=_mask(1, 9, [(0, 7), (0, 8)]),
         cls=False),
    dict(name="cls_embed", nh=2, dh=4, w=4, r=2, B=2, L=8,
         mask=_mask(2, 8, [(0, 7), (1, 2), (1, 6), (1, 7)]), cls=True),
    dict(name="cls_pooling", nh=2, dh=4, w=2, r=2, B=1, L=7, pooling="CLS",
         mask=_mask(1, 7, [(0, 4), (0, 6)]), cls=False),
    dict(name="cls_self_only", nh=2, dh=4, w=0, r=0, B=1, L=5, mask=_mask(1, 5, [(0, 3)]),
         cls=True),
    dict(name="ragged", nh=2, dh=4, w=4, r=2, B=2, L=10, mask=_mask(2, 10, [(1, 8), (1, 9)]),
         cls=False, pad_to=12),
]

COMMAND = ("lsattn run --variant lra --weights test/data/lra/{c}/weights.safetensors "
           "--input test/data/lra/{c}/input.safetensors --output OUT.safetensors")


def make_module(nh, dh, w, r, pooling="MEAN", gen=None):
    m = ReferenceAttentionLS(nh, dh, nh * dh, w, r, pooling)
    randomize_(m, gen)
    return m.eval()


def run_padded(module, x, mask, cls, pad_to):
    """Run with x/mask padded to ``pad_to`` (zeros / mask 0), cut back to the input length."""
    L = x.shape[1]
    if pad_to and pad_to > L:
        x = F.pad(x, (0, 0, 0, pad_to - L))
        mask = F.pad(mask, (0, pad_to - L))
    y = module(x, mask, cls)
    extra = 1 if (cls is not None) else 0
    return y[:, :L + extra]


# ---------------------------------------------------------------------------------
# Naive float64 per-token implementation, written independently of the vectorised
# reference (loops over batch, head, query, key), used only to cross-check it.
# ---------------------------------------------------------------------------------
def _ln(x, ln):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + ln.eps) * ln.weight.double() + ln.bias.double()


def _lin(x, lin):
    return x @ lin.weight.double().t() + lin.bias.double()


def naive_forward(m, X, mask, cls_embed=None):
    X = X.double()
    mask = torch.ones(X.shape[:2], dtype=torch.float64) if mask is None else mask.double()
    if m.cls_from_seq:
        cls_embed, X, mask = X[:, :1], X[:, 1:], mask[:, 1:]
    has_cls = cls_embed is not None
    B, L, D = X.shape
    H, dh, r, w = m.num_head, m.head_dim, m.num_landmarks, m.window_size
    ext = max(w // 2, 1)
    sc = 1.0 / math.sqrt(dh)
    out = torch.zeros(B, L + (1 if has_cls else 0), D, dtype=torch.float64)
    for b in range(B):
        valid = [t for t in range(L) if mask[b, t] != 0]
        q = _lin(X[b], m.W_q) * sc                 # (L, D)
        k = _ln(_lin(X[b], m.W_k), m.dual_ln_l)
        v = _ln(_lin(X[b], m.W_v), m.dual_ln_l)
        gk, gv = [], []                            # global keys/values, merged D-vectors
        if has_cls:
            c = cls_embed[b, 0].double()
            qc, kc, vc = _lin(c, m.W_q) * sc, _lin(c, m.W_k), _lin(c, m.W_v)
            gk.append(kc)
            gv.append(vc)
        if r > 0:
            s = _lin(X[b], m.dconv_fc)             # (L, H*r)
            for j in range(r):
                kk = torch.zeros(D, dtype=torch.float64)
                vv = torch.zeros(D, dtype=torch.float64)
                for h in range(H):
                    col = s[valid, h * r + j]
                    p = torch.exp(col - col.max())
                    p = p / p.sum()
                    sl = slice(h * dh, (h + 1) * dh)
                    kk[sl] = (p[:, None] * k[valid, sl]).sum(0)
                    vv[sl] = (p[:, None] * v[valid, sl]).sum(0)
                gk.append(kk)
                gv.append(vv)
        gk = [_ln(g, m.dual_ln_s) for g in gk]
        gv = [_ln(g, m.dual_ln_s) for g in gv]
        C = torch.zeros(L, D, dtype=torch.float64)
        for h in range(H):
            sl = slice(h * dh, (h + 1) * dh)
            for t in valid:
                keys = [g[sl] for g in gk]
                vals = [g[sl] for g in gv]
                if w > 0:
                    g0 = (t // w) * w
                    for s_ in range(g0 - ext, g0 + w + ext):
                        if 0 <= s_ < L and mask[b, s_] != 0:
                            keys.append(k[s_, sl])
                            vals.append(v[s_, sl])
                elif r == 0:
                    keys.append(k[t, sl])
                    vals.append(v[t, sl])
                logits = torch.stack([q[t, sl] @ kk for kk in keys])
                p = torch.softmax(logits, 0)
                C[t, sl] = sum(pi * vi for pi, vi in zip(p, vals))
        if has_cls:
            oc = torch.zeros(D, dtype=torch.float64)
            for h in range(H):
                sl = slice(h * dh, (h + 1) * dh)
                logits = torch.stack([qc[sl] @ kc[sl]] + [qc[sl] @ C[t, sl] for t in valid])
                p = torch.softmax(logits, 0)
                oc[sl] = p[0] * vc[sl] + sum(p[i + 1] * C[t, sl] for i, t in enumerate(valid))
            out[b, 0] = _lin(oc, m.W_o)
            out[b, 1:] = _lin(C, m.W_o)
        else:
            out[b] = _lin(C, m.W_o)
    return out


# ---------------------------------------------------------------------------------
@torch.no_grad()
def sanity_checks(gen):
    torch.manual_seed(1)
    # (a) padding at the end (content arbitrary, mask 0) leaves valid rows unchanged.
    for (nh, dh, w, r) in [(2, 4, 4, 3), (2, 4, 1, 2), (2, 4, 0, 2), (1, 8, 3, 0)]:
        m = make_module(nh, dh, w, r, gen=gen)
        L, Lp = 12, 24
        x = torch.randn(2, L, nh * dh, generator=gen)
        x_p = torch.cat([x, 5 * torch.randn(2, Lp - L, nh * dh, generator=gen)], 1)
        mask_p = torch.cat([torch.ones(2, L), torch.zeros(2, Lp - L)], 1)
        cls = torch.randn(2, 1, nh * dh, generator=gen)
        for c in (None, cls):
            y = m(x, torch.ones(2, L), c)
            y_p = m(x_p, mask_p, c)
            n = y.shape[1]
            d = (y - y_p[:, :n]).abs().max().item()
            assert d < 1e-5, ("(a) padded != unpadded", nh, dh, w, r, c is not None, d)
            # (b) padded query rows output W_o.bias.
            d = (y_p[:, n:] - m.W_o.bias).abs().max().item()
            assert d == 0.0, ("(b) padded rows != W_o.bias", d)
    print("sanity (a) padded run == unpadded run on valid rows: ok")
    print("sanity (b) padded query rows == W_o.bias: ok")

    # (c) window covering everything, r == 0, no padding == plain softmax attention
    #     over LN_l(W_k X), LN_l(W_v X).
    for (nh, dh, L) in [(2, 4, 8), (1, 8, 6), (3, 2, 5)]:
        m = make_module(nh, dh, L, 0, gen=gen)      # w = L: one block, ext = L//2 >= ...
        x = torch.randn(2, L, nh * dh, generator=gen)
        y = m(x, torch.ones(2, L))
        q = m._split(m.W_q(x)) / math.sqrt(dh)
        k = m._split(m.dual_ln_l(m.W_k(x)))
        v = m._split(m.dual_ln_l(m.W_v(x)))
        y_ref = m.W_o(m._merge(torch.softmax(q @ k.transpose(-1, -2), -1) @ v))
        d = (y - y_ref).abs().max().item()
        assert d < 1e-5, ("(c) full window != softmax attention", d)
    print("sanity (c) full window, r=0 == plain softmax attention on LN_l K/V: ok")

    # (d) vectorised reference (fp64) vs naive per-token loops (fp64) on every case config.
    worst = 0.0
    for case in CASES:
        m = make_module(case["nh"], case["dh"], case["w"], case["r"], case.get("pooling", "MEAN"),
                        gen).double()
        L = case.get("pad_to") or case["L"]
        D = case["nh"] * case["dh"]
        x = torch.randn(2, L, D, generator=gen, dtype=torch.float64)
        mask = (torch.rand(2, L, generator=gen) > 0.3).double()
        mask[:, :2] = 1.0
        cls = torch.randn(2, 1, D, generator=gen, dtype=torch.float64) if case["cls"] else None
        y = m(x, mask, cls)
        y_n = naive_forward(m, x, mask, cls)
        d = (y - y_n).abs().max().item()
        worst = max(worst, d)
        assert d < 1e-10, ("(d) vectorised != naive", case["name"], d)
    print(f"sanity (d) vectorised fp64 == naive per-token fp64 loops: ok (max diff {worst:.2e})")


def compare_published(repo, module, config, x, mask, cls, pad_to):
    pub = build_module(config, repo).eval()
    pub.load_state_dict(module.state_dict(), strict=True)
    with torch.no_grad():
        y_ref = run_padded(module, x, mask, cls, pad_to)
        y_pub = run_padded(pub, x, mask, cls, pad_to)
    return (y_ref - y_pub).abs().max().item()


@torch.no_grad()
def main():
    from safetensors.torch import save_file

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "test", "data", "lra"))
    ap.add_argument("--published-repo", help="also compare with the published AttentionLS")
    ap.add_argument("--skip-sanity", action="store_true")
    args = ap.parse_args()

    torch.set_num_threads(1)
    if not args.skip_sanity:
        sanity_checks(torch.Generator().manual_seed(SEED + 1))

    gen = torch.Generator().manual_seed(SEED)
    print(f"\n{'case':14s} {'x':>12s} {'mask':>8s} {'cls':>10s} {'y':>12s}  fp32-vs-fp64")
    for case in CASES:
        name = case["name"]
        nh, dh, w, r = case["nh"], case["dh"], case["w"], case["r"]
        B, L, D = case["B"], case["L"], nh * dh
        pooling = case.get("pooling", "MEAN")
        config = dict(num_head=nh, head_dim=dh, transformer_dim=D, window_size=w,
                      num_landmarks=r, pooling_mode=pooling)
        module = make_module(nh, dh, w, r, pooling, gen)
        x = torch.randn(B, L, D, generator=gen)
        mask = case["mask"]
        cls = torch.randn(B, 1, D, generator=gen) if case["cls"] else None
        run_mask = mask if mask is not None else torch.ones(B, L)
        pad_to = case.get("pad_to")

        y = run_padded(module, x, run_mask, cls, pad_to)
        y64 = run_padded(copy.deepcopy(module).double(), x.double(), run_mask.double(),
                         None if cls is None else cls.double(), pad_to)
        diff = (y.double() - y64).abs().max().item()
        assert torch.isfinite(y).all()

        d = os.path.join(args.out, name)
        os.makedirs(d, exist_ok=True)
        export_attention(module, config, os.path.join(d, "weights.safetensors"))
        inputs = {"input.x": x.contiguous()}
        if mask is not None:
            inputs["input.mask"] = mask.contiguous()
        if cls is not None:
            inputs["input.cls_embed"] = cls.contiguous()
        save_file(inputs, os.path.join(d, "input.safetensors"))
        canonicalize_header(os.path.join(d, "input.safetensors"))
        meta = {
            "command": COMMAND.format(c=name),
            "generator": "tools/reference/make_lra_fixtures.py (independent spec "
                         "re-implementation tools/reference/lra_attention_ls.py, fp32)",
            "fp64_max_abs_diff": f"{diff:.3e}",
        }
        if pad_to:
            meta["note"] = (f"L={L} is not a multiple of window_size={w}; the published code "
                            f"cannot run it. Expected output computed by padding x with zeros "
                            f"and mask 0 to L={pad_to}, running the module, and keeping the "
                            f"first {L} rows. input.safetensors holds the unpadded L={L} input.")
        if pooling.lower() == "cls":
            meta["note"] = ("pooling_mode CLS: x[:, 0] is the cls token (mask column 0 too); "
                            "output row 0 is the cls output, rows 1.. the tokens.")
        save_file({"output.y": y.contiguous()}, os.path.join(d, "expected.safetensors"),
                  metadata=meta)
        canonicalize_header(os.path.join(d, "expected.safetensors"))

        extra = ""
        if args.published_repo:
            dp = compare_published(args.published_repo, module, config, x, run_mask, cls,
                                   pad_to)
            extra = f"  published-vs-reference {dp:.3e}"
        print(f"{name:14s} {str(tuple(x.shape)):>12s} {'yes' if mask is not None else 'no':>8s} "
              f"{str(tuple(cls.shape)) if cls is not None else '-':>10s} "
              f"{str(tuple(y.shape)):>12s}  {diff:.3e}{extra}")


if __name__ == "__main__":
    main()
