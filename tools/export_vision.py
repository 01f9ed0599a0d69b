#!/usr/bin/env python3
"""Export a 2D (ViL-LS) Transformer-LS attention layer to ``weights.safetensors`` for lsattn.

The file holds the layer's state_dict under the published names (spec 3.2), optionally
behind a prefix:

* ``qkv.weight`` [3C, C] (+ ``qkv.bias`` [3C] when ``qkv_bias``), ``proj.weight``,
  ``proj.bias``;
* ``to_dynamic_projection.weight`` [nh*r, C], ``.bias`` [nh*r] (only when dp_rank > 0);
* ``dual_ln_dp.weight``/``.bias``, ``dual_ln_full.weight``/``.bias`` [C];
* (rpe) ``local_relative_position_bias_table`` [2(w+wp-1)(2wp+w+1)+1, nh] and the buffer
  ``relative_position_index`` [w*w, (w+2wp)^2], stored as **I64** (everything else F32);

and a ``__metadata__`` block with string values for ``num_heads``, ``dim``, ``nx``,
``ny``, ``w``, ``dp_rank``, ``nglo``, ``rpe`` ("true"/"false") and ``qkv_bias``
("true"/"false") (what ``lsattn run --variant vision --weights ...`` reads). ``nx`` is the
number of patch rows and ``ny`` the number of patch columns of the grid the layer runs on
(tokens ``nglo + row*ny + col``); they are forward arguments, not parameters, so they
must be given (a stage of MsViT at 224 px: 56 x 56 for stage 1 with p4, 28 x 28 for
stage 2).

Library use::

    import sys; sys.path.insert(0, "tools")
    from export_vision import export_attention, export_state_dict
    export_attention(module, {"num_heads": 3, "dim": 96, "nx": 56, "ny": 56, "w": 7,
                              "dp_rank": 8, "nglo": 1, "rpe": True, "qkv_bias": True},
                     "weights.safetensors")

Exporting one block's attention from a trained MsViT (ViL-LS) checkpoint
-------------------------------------------------------------------------

Checked against the published ``imagenet/models/msvit.py`` and ``imagenet/utils/checkpoint.py``
(commit 1527c5c): the ``Checkpointer`` saves ``{"net": net.state_dict(), "arch": ...,
"epoch": ..., "best_acc": ..., "optimizer": ..., "scheduler": ...}`` where ``net`` is the
``DistributedDataParallel`` (or ``DataParallel``) wrapper, so the keys start with
``module.``. Stage S of ``MsViT`` is ``layerS``, an ``nn.Sequential`` of
``[PatchEmbed, AttnBlock, MlpBlock, AttnBlock, MlpBlock, ...]``, and an ``AttnBlock`` holds
its attention as ``attn``: block K (0-based) of stage S is at
**``module.layerS.<2K+1>.attn.``** (``module.layer1.1.attn.`` for the first block of stage 1).
``--stage S --block K`` builds that prefix (``module.`` only if the checkpoint has it)::

    python3 tools/export_vision.py --checkpoint model_best.pth --stage 1 --block 0 \
        --num-heads 3 --nglo 1 --nx 56 --ny 56 --out stage1_block0.safetensors

In the arch string (``l1,h3,d96,n1,s1,g1,p4,f7,a0,r8_...``) ``h`` is num_heads, ``d`` dim,
``g`` nglo, ``f`` the window w, ``r`` dp_rank, ``a0`` means rpe (``rpe = not ape``), and
``s0`` a stage of full attention (no LS attention to export). ``nx = ny`` is the image size
divided by the product of the patch sizes ``p`` up to the stage (224 px: 56 for stage 1 with
p4, 28 for stage 2). ``--checkpoint-prefix`` gives any other prefix.

``dim``, ``qkv_bias``, ``rpe``, ``dp_rank`` (needs ``num_heads``) and, with rpe, ``w`` (from
the table's and the index's rows) and ``num_heads`` are read from the tensor shapes and
checked against any flag given;
``nglo``, ``nx`` and ``ny`` cannot be inferred (the arch string's ``g`` is nglo: ViL-LS
stages 1 and 2 use g1). The weights are loaded strictly into the reference module
(``tools/reference/vision_attention_ls.py``), so a wrong prefix or shape is caught, and a
stored ``relative_position_index`` must equal the published formula (spec 3.5); a
checkpoint without that buffer gets the formula's index. The block's pre-LayerNorm (eps 1e-6,
spec 3.6) is not part of the attention: the attention's input is ``LN(x)``.

Without ``--checkpoint`` the CLI exports a freshly built reference module, with
``--randomize`` drawing the fixtures' non-trivial weights.
"""

import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "reference"))

from export_lra_attention import canonicalize_header, to_bool  # noqa: E402

CONFIG_KEYS = ("num_heads", "dim", "nx", "ny", "w", "dp_rank", "nglo", "rpe", "qkv_bias")
BOOL_KEYS = ("rpe", "qkv_bias")
INDEX_KEY = "relative_position_index"


def metadata(config):
    """String metadata for CONFIG_KEYS; booleans as "true"/"false"."""
    if not isinstance(config, dict):
        config = vars(config)
    missing = [k for k in CONFIG_KEYS if config.get(k) is None]
    if missing:
        raise KeyError(f"config lacks {missing}")
    meta = {k: ("true" if to_bool(config[k]) else "false") if k in BOOL_KEYS
            else str(int(config[k])) for k in CONFIG_KEYS}
    if int(meta["dim"]) % int(meta["num_heads"]) != 0:
        raise ValueError("dim must be divisible by num_heads")
    return meta


def export_state_dict(state_dict, config, path, prefix=""):
    """Write ``state_dict`` (published names) to ``path``: F32, the index buffer I64."""
    from safetensors.torch import save_file

    tensors = {}
    for k, v in state_dict.items():
        dtype = torch.int64 if k.endswith(INDEX_KEY) else torch.float32
        tensors[prefix + k] = v.detach().to("cpu", dtype).contiguous()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file(tensors, path, metadata=metadata(config))
    canonicalize_header(path)
    return path


def export_attention(module, config, path, prefix=""):
    """Export an AttentionLS-like 2D ``module`` (published or reference) to ``path``."""
    return export_state_dict(module.state_dict(), config, path, prefix)


def build_module(config):
    from vision_attention_ls import ReferenceAttentionLS2D
    return ReferenceAttentionLS2D(int(config["dim"]), int(config["num_heads"]),
                                  to_bool(config["qkv_bias"]), to_bool(config["rpe"]),
                                  int(config["nglo"]), int(config["dp_rank"]), int(config["w"]))


@torch.no_grad()
def randomize_(module, generator=None):
    """Non-trivial weights (as the fixtures): Linear weights and biases N(0, 0.3), LN weight
    N(1, 0.2), LN bias N(0, 0.2), RPE table N(0, 0.5). The index buffer is not touched."""
    for name, p in module.named_parameters():
        noise = torch.randn(p.shape, generator=generator, dtype=torch.float32).to(p)
        if name.startswith("dual_ln_"):
            p.copy_(1.0 + 0.2 * noise if name.endswith(".weight") else 0.2 * noise)
        elif name == "local_relative_position_bias_table":
            p.copy_(0.5 * noise)
        else:
            p.copy_(0.3 * noise)
    return module


def _load_checkpoint(path, key=None):
    ckpt = torch.load(path, map_location="cpu")
    if key:
        return ckpt[key]
    if isinstance(ckpt, dict) and not any(torch.is_tensor(v) for v in ckpt.values()):
        # "net": the published MsViT Checkpointer (imagenet/utils/checkpoint.py).
        for k in ("net", "model", "state_dict", "model_state_dict", "module"):
            if k in ckpt and isinstance(ckpt[k], dict):
                return ckpt[k]
    return ckpt


def msvit_prefix(state_dict, stage, block):
    """Prefix of block ``block`` (0-based) of stage ``stage`` in a published MsViT state_dict:
    layerS.<2K+1>.attn. (index 0 is the PatchEmbed, then AttnBlock/MlpBlock pairs), behind
    the ``module.`` of a (Distributed)DataParallel wrapper when the keys have it."""
    if stage < 1 or block < 0:
        raise SystemExit("--stage is 1-based (1..4), --block 0-based")
    wrapper = "module." if any(k.startswith("module.") for k in state_dict) else ""
    return f"{wrapper}layer{stage}.{2 * block + 1}.attn."


def checkpoint_prefix(state_dict, args):
    if (args.stage is None) != (args.block is None):
        raise SystemExit("--stage and --block go together")
    if args.stage is not None:
        if args.checkpoint_prefix is not None:
            raise SystemExit("give --checkpoint-prefix or --stage/--block, not both")
        return msvit_prefix(state_dict, args.stage, args.block)
    return args.checkpoint_prefix or ""


def infer_config(sd, config):
    """Fill/check the hyperparameters readable from the tensor shapes of a layer state_dict."""
    cfg = dict(config)

    def setk(k, v):
        if cfg.get(k) is not None and (to_bool(cfg[k]) if k in BOOL_KEYS else int(cfg[k])) != v:
            raise SystemExit(f"{k}={cfg[k]} given, but the tensors say {v}")
        cfg[k] = v

    setk("dim", int(sd["qkv.weight"].shape[1]))
    setk("qkv_bias", "qkv.bias" in sd)
    rpe = "local_relative_position_bias_table" in sd
    setk("rpe", rpe)
    if rpe:
        setk("num_heads", int(sd["local_relative_position_bias_table"].shape[1]))
        if INDEX_KEY in sd:
            n = sd[INDEX_KEY].shape[0]
            w = int(round(n ** 0.5))
            if w * w != n:
                raise SystemExit(f"{INDEX_KEY} has {n} rows, not a square")
            setk("w", w)
        rows = int(sd["local_relative_position_bias_table"].shape[0])
        from vision_attention_ls import rpe_table_rows
        ws = [w for w in range(2, 1025) if rpe_table_rows(w) == rows]
        if not ws:
            raise SystemExit(f"local_relative_position_bias_table has {rows} rows: no w gives "
                             "2(w+wp-1)(2wp+w+1)+1 rows")
        setk("w", ws[0])
    if cfg.get("num_heads") is None:
        raise SystemExit("--num-heads is needed (it cannot be read from the tensors without rpe)")
    if "to_dynamic_projection.weight" in sd:
        rows = int(sd["to_dynamic_projection.weight"].shape[0])
        if rows % int(cfg["num_heads"]):
            raise SystemExit(f"to_dynamic_projection has {rows} rows, not a multiple of num_heads")
        setk("dp_rank", rows // int(cfg["num_heads"]))
    else:
        setk("dp_rank", 0)
    for k in ("w", "nglo", "nx", "ny"):
        if cfg.get(k) is None:
            raise SystemExit(f"--{k} is needed (it cannot be read from the tensors)")
    return cfg


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output .safetensors path")
    ap.add_argument("--checkpoint", help="torch checkpoint (MsViT or a bare state_dict)")
    ap.add_argument("--checkpoint-key", default=None,
                    help="key of the state_dict inside the checkpoint dict (default: auto)")
    ap.add_argument("--checkpoint-prefix", default=None,
                    help="prefix of the attention's keys in the checkpoint, e.g. module.layer1.1.attn.")
    ap.add_argument("--stage", type=int, default=None,
                    help="MsViT stage S (1-4): with --block K, prefix [module.]layerS.<2K+1>.attn.")
    ap.add_argument("--block", type=int, default=None, help="block K (0-based) of --stage")
    ap.add_argument("--prefix", default="", help="prefix for the exported key names")
    ap.add_argument("--num-heads", type=int)
    ap.add_argument("--dim", type=int)
    ap.add_argument("--w", type=int)
    ap.add_argument("--dp-rank", type=int)
    ap.add_argument("--nglo", type=int)
    ap.add_argument("--nx", type=int, help="patch rows of the grid")
    ap.add_argument("--ny", type=int, help="patch columns of the grid (default: nx)")
    ap.add_argument("--rpe", choices=("true", "false"))
    ap.add_argument("--qkv-bias", choices=("true", "false"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--randomize", action="store_true",
                    help="draw non-trivial random weights instead of the default init")
    args = ap.parse_args(argv)

    config = {"num_heads": args.num_heads, "dim": args.dim, "w": args.w,
              "dp_rank": args.dp_rank, "nglo": args.nglo, "nx": args.nx,
              "ny": args.ny if args.ny is not None else args.nx,
              "rpe": args.rpe, "qkv_bias": args.qkv_bias}

    if args.checkpoint:
        ckpt = _load_checkpoint(args.checkpoint, args.checkpoint_key)
        pre = checkpoint_prefix(ckpt, args)
        layer = {k[len(pre):]: v for k, v in ckpt.items() if k.startswith(pre)}
        if not layer:
            raise SystemExit(f"no key starts with {pre!r}; keys are e.g. {list(ckpt)[:20]}")
        config = infer_config(layer, config)
        module = build_module(config)
        if config["rpe"] and INDEX_KEY in layer:
            if not torch.equal(layer[INDEX_KEY].long(), module.relative_position_index):
                raise SystemExit(f"the checkpoint's {INDEX_KEY} differs from the published "
                                 "formula (spec 3.5); refusing to export")
        elif config["rpe"]:
            print(f"note: no {INDEX_KEY} in the checkpoint; using the formula's index")
            layer[INDEX_KEY] = module.relative_position_index
        module.load_state_dict(layer, strict=True)
    else:
        defaults = {"num_heads": 2, "dim": 16, "w": 2, "dp_rank": 2, "nglo": 1, "nx": 4,
                    "rpe": "true", "qkv_bias": "true"}
        for k, v in defaults.items():
            if config[k] is None:
                config[k] = v
        if config["ny"] is None:
            config["ny"] = config["nx"]
        torch.manual_seed(args.seed)
        module = build_module(config)
        if args.randomize:
            randomize_(module, torch.Generator().manual_seed(args.seed))

    export_attention(module, config, args.out, args.prefix)
    print(f"wrote {args.out}: {len(module.state_dict())} tensors, prefix {args.prefix!r}, "
          f"metadata {metadata(config)}")


if __name__ == "__main__":
    main()
