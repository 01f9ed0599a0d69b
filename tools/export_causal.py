#!/usr/bin/env python3
"""Export a causal Transformer-LS layer or language model to safetensors for lsattn.

Two kinds of file:

* **layer** (``lsattn run --variant causal``): the ``ChunkedLSAttention`` state_dict under
  the published names (``r_r_bias``, ``r_w_bias``, ``dconv_1.weight``, ``dconv_1.bias``,
  ``r_net.weight``, ``r_net_chunk.weight``, ``r_net_chunk.bias``, ``proj_query.weight``,
  ``proj_out.weight``, ``proj_val.weight``, ``proj_key.weight`` (+ ``.bias`` each when
  ``use_bias``), ``dual_ln_dproj.*``, ``dual_ln_win.*``) and a ``__metadata__`` with string
  values for ``n_head``, ``d_model``, ``chunk_size``, ``chunk_rank``, ``window_len``,
  ``use_bias`` ("true"/"false"), ``clamp_len``, ``cpos_clamp_len``;
* **model** (``lsattn lm`` / ``lsattn bpc``): the ``TransformerLSModel`` state_dict
  (``in_emb.weight``, ``out_emb.bias``, ``layers.N.attn.*``, ``layers.N.norm1.*``,
  ``layers.N.norm2.*``, ``layers.N.ff.fc1.*``, ``layers.N.ff.fc2.*``) with, in addition,
  ``d_inner``, ``n_layer``, ``vocab_size``, ``mem_len``, ``pre_ln``, ``use_gelu`` in the
  metadata.

**Tied embedding.** ``out_emb.weight`` is the same tensor as ``in_emb.weight`` in the
published model. safetensors cannot store shared tensors, so the file holds
``in_emb.weight`` and ``out_emb.bias`` only and *omits* ``out_emb.weight``; the lsattn
loader ties them (it also accepts a file that has ``out_emb.weight``, if it equals
``in_emb.weight``). Buffers that are not parameters (e.g. a positional ``inv_freq``, fairseq's
``version`` entries) are dropped: lsattn computes the positional tables itself.

``mem_len`` is a run-time choice (the published training used mem_len = tokens_per_sample,
the published eval ``--mem-len 32768``); the metadata value can be overridden on the lsattn
command line with ``--mem-len``.

Library use::

    import sys; sys.path.insert(0, "tools")
    from export_causal import export_layer, export_model
    export_layer(attn_module_or_state_dict, {"n_head": 8, "d_model": 512, "chunk_size": 16,
                 "chunk_rank": 1, "window_len": 512}, "attn.safetensors")
    export_model(model_or_state_dict, {... + "d_inner", "n_layer", "vocab_size", "mem_len",
                 "pre_ln", "use_gelu"}, "model.safetensors")

Exporting from a fairseq checkpoint of the published code
-----------------------------------------------------------

The published training (``autoregressive/launch/*.sh``) is fairseq with the
``transformer-ls`` architecture (``autoregressive/model_lib/model_wrapper.py``). A fairseq
checkpoint (``checkpoint_best.pt``) is a dict: ``"model"`` holds the state_dict of the
fairseq model and ``"cfg"`` (fairseq >= 0.10; ``"args"``, a Namespace, before) its
configuration. The fairseq model ``TransformerLS`` keeps its decoder as ``decoder``, and
``TransformerLSDecoder`` keeps the ``TransformerLSModel`` as ``model``, so every key starts
with **``decoder.model.``** (``decoder.model.in_emb.weight``,
``decoder.model.layers.0.attn.proj_query.weight``, ..., plus the buffer
``decoder.model.pos_emb.inv_freq``), checked against the published code (commit 1527c5c).
The exporter finds that prefix by itself (``--checkpoint-prefix auto``, the default)::

    python3 tools/export_causal.py model --checkpoint checkpoint_best.pt --out enwik8.safetensors
    python3 tools/export_causal.py layer --checkpoint checkpoint_best.pt --layer 0 --out attn0.safetensors

``--layer N`` (``layer`` only) selects ``<prefix>layers.N.attn.``; an explicit
``--checkpoint-prefix`` overrides the detection. To keep the prefix in the file instead, pass
``--prefix decoder.model.`` on export and ``--prefix decoder.model.`` to lsattn.

``vocab_size``, ``d_model``, ``n_layer``, ``d_inner``, ``chunk_rank`` and ``use_bias`` are
inferred from the tensor shapes (and checked against any value given). ``n_head``,
``chunk_size``, ``window_len``, ``mem_len``, ``pre_ln``, ``use_gelu``, ``clamp_len`` and
``cpos_clamp_len`` are read from the checkpoint's ``cfg["model"]`` / ``args``, whose field
names are exactly these (``TransformerLSConfig`` in model_wrapper.py); a command-line flag
overrides them (the published eval overrides ``mem_len`` to 32768; lsattn's ``--mem-len``
does the same at run time). The published scripts use ``--pre-ln --use-gelu``, l = 16,
r = 1, w = 512, 8 heads, clamps -1. Training with ``--fp16`` stores fp16 tensors; they are
written as F32. The weights are loaded strictly into the reference module
(``tools/reference/causal_attention_ls.py``) before writing, so a wrong prefix or shape is
caught. ``vocab_size`` is the fairseq dictionary's length (4 special symbols + the
characters), and token ids are dictionary indices.

Without ``--checkpoint`` the CLI exports a freshly built reference module, with
``--randomize`` drawing the fixtures' non-trivial weights.
"""

import argparse
import json
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_lra_attention import canonicalize_header, to_bool  # noqa: E402  (one copy for every exporter)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "reference"))

LAYER_KEYS = ("n_head", "d_model", "chunk_size", "chunk_rank", "window_len", "use_bias",
              "clamp_len", "cpos_clamp_len")
MODEL_KEYS = LAYER_KEYS + ("d_inner", "n_layer", "vocab_size", "mem_len", "pre_ln", "use_gelu")
BOOL_KEYS = ("use_bias", "pre_ln", "use_gelu")
DEFAULTS = {"use_bias": False, "clamp_len": -1, "cpos_clamp_len": -1}


def metadata(config, keys):
    """String metadata for ``keys``; booleans as "true"/"false", defaults filled in."""
    if not isinstance(config, dict):
        config = vars(config)
    meta = {}
    for k in keys:
        if k not in config or config[k] is None:
            if k in DEFAULTS:
                config = dict(config, **{k: DEFAULTS[k]})
            else:
                raise KeyError(f"config lacks {k!r}")
        v = config[k]
        meta[k] = ("true" if to_bool(v) else "false") if k in BOOL_KEYS else str(int(v))
    if int(meta["d_model"]) % int(meta["n_head"]) != 0:
        raise ValueError("d_model must be divisible by n_head")
    return meta


def _is_extra(key):
    """Non-parameter entries a published/fairseq state_dict may carry."""
    base = key.rsplit(".", 1)[-1]
    return base in ("inv_freq", "version", "_float_tensor")


def _write(tensors, meta, path, prefix):
    from safetensors.torch import save_file

    out = {prefix + k: v.detach().to("cpu", torch.float32).contiguous()
           for k, v in tensors.items()}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file(out, path, metadata=meta)
    canonicalize_header(path)
    return path


def _state_dict(obj):
    return obj.state_dict() if hasattr(obj, "state_dict") else dict(obj)


def export_layer(module_or_state_dict, config, path, prefix=""):
    """Write a ChunkedLSAttention (module or state_dict, published names) to ``path``."""
    sd = {k: v for k, v in _state_dict(module_or_state_dict).items() if not _is_extra(k)}
    return _write(sd, metadata(config, LAYER_KEYS), path, prefix)


def export_model(module_or_state_dict, config, path, prefix=""):
    """Write a TransformerLSModel (module or state_dict) to ``path``; ``out_emb.weight`` omitted."""
    sd = {k: v for k, v in _state_dict(module_or_state_dict).items() if not _is_extra(k)}
    if "out_emb.weight" in sd:
        if "in_emb.weight" in sd and not torch.equal(sd["out_emb.weight"], sd["in_emb.weight"]):
            raise ValueError("out_emb.weight differs from in_emb.weight; the published model ties them")
        del sd["out_emb.weight"]
    return _write(sd, metadata(config, MODEL_KEYS), path, prefix)


# -- building reference modules and reading checkpoints --------------------------------
def build_layer(config):
    from causal_attention_ls import ReferenceChunkedLSAttention
    return ReferenceChunkedLSAttention(
        int(config["d_model"]), int(config["n_head"]), int(config["chunk_size"]),
        int(config["chunk_rank"]), int(config["window_len"]),
        to_bool(config.get("use_bias", False)), int(config.get("clamp_len", -1)),
        int(config.get("cpos_clamp_len", -1)))


def build_model(config):
    from causal_attention_ls import ReferenceTransformerLSModel
    return ReferenceTransformerLSModel(
        int(config["vocab_size"]), int(config["d_model"]), int(config["n_head"]),
        int(config["d_inner"]), int(config["n_layer"]), int(config["mem_len"]),
        int(config["chunk_size"]), int(config["chunk_rank"]), int(config["window_len"]),
        to_bool(config["pre_ln"]), to_bool(config["use_gelu"]),
        to_bool(config.get("use_bias", False)), int(config.get("clamp_len", -1)),
        int(config.get("cpos_clamp_len", -1)))


@torch.no_grad()
def randomize_(module, generator=None):
    """Non-trivial weights (as the fixtures): Linear/Embedding N(0, 1.2/sqrt(fan_in)),
    biases N(0, 0.3), LN weight N(1, 0.2), LN bias N(0, 0.2), r-biases N(0, 0.3)."""
    for name, p in module.named_parameters():      # a tied weight is listed once
        noise = torch.randn(p.shape, generator=generator, dtype=torch.float32).to(p)
        leaf = name.rsplit(".", 1)[-1]
        owner = name.rsplit(".", 2)[-2] if "." in name else ""
        if owner.startswith("dual_ln") or owner.startswith("norm"):
            p.copy_(1.0 + 0.2 * noise if leaf == "weight" else 0.2 * noise)
        elif leaf in ("r_r_bias", "r_w_bias") or leaf == "bias":
            p.copy_(0.3 * noise)
        else:                                       # Linear weight [out, in], Embedding [V, D]
            p.copy_(1.2 / p.shape[1] ** 0.5 * noise)
    return module


def _load_checkpoint(path, key=None):
    ckpt = torch.load(path, map_location="cpu")
    cfg = {}
    if isinstance(ckpt, dict):
        c = ckpt.get("cfg")
        if c is not None:
            c = c.get("model") if hasattr(c, "get") else getattr(c, "model", None)
        if c is None and ckpt.get("args") is not None:
            c = ckpt["args"]
        if c is not None:
            cfg = dict(c) if hasattr(c, "keys") else dict(vars(c))
        if key:
            ckpt = ckpt[key]
        elif not any(torch.is_tensor(v) for v in ckpt.values()):
            for k in ("model", "model_state_dict", "state_dict"):
                if k in ckpt:
                    ckpt = ckpt[k]
                    break
    return ckpt, cfg


FAIRSEQ_PREFIX = "decoder.model."   # TransformerLS.decoder -> TransformerLSDecoder.model


def checkpoint_prefix(state_dict, prefix, kind, layer=None):
    """The prefix to strip: ``prefix`` unless 'auto'; 'auto' is decoder.model. when the
    state_dict is a fairseq one of the published model, else ''. ``layer`` appends
    ``layers.N.attn.`` (kind 'layer' only)."""
    if layer is not None and kind != "layer":
        raise SystemExit("--layer applies to the 'layer' kind only")
    if prefix == "auto":
        prefix = FAIRSEQ_PREFIX if (FAIRSEQ_PREFIX + "in_emb.weight") in state_dict else ""
        if kind == "layer" and layer is None and not (prefix + "proj_query.weight") in state_dict \
                and (prefix + "layers.0.attn.proj_query.weight") in state_dict:
            raise SystemExit("this is a model checkpoint: give --layer N for one attention layer")
    if layer is not None:
        prefix += f"layers.{layer}.attn."
    return prefix


def _infer(sd, kind, n_head):
    """Hyperparameters readable from tensor shapes."""
    inf = {}
    attn = "" if kind == "layer" else "layers.0.attn."
    if kind == "model":
        inf["vocab_size"], inf["d_model"] = sd["in_emb.weight"].shape
        inf["n_layer"] = len({k.split(".")[1] for k in sd if k.startswith("layers.")})
        inf["d_inner"] = sd["layers.0.ff.fc1.weight"].shape[0]
    else:
        inf["d_model"] = sd["proj_query.weight"].shape[0]
    inf["use_bias"] = (attn + "proj_query.bias") in sd
    if n_head:
        inf["chunk_rank"] = sd[attn + "dconv_1.weight"].shape[0] // int(n_head)
    return inf


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=("layer", "model"))
    ap.add_argument("--out", required=True, help="output .safetensors path")
    ap.add_argument("--checkpoint", help="torch / fairseq checkpoint to take the weights from")
    ap.add_argument("--checkpoint-key", default=None,
                    help="entry of the checkpoint dict holding the state_dict (default: auto, "
                         "'model' for fairseq)")
    ap.add_argument("--checkpoint-prefix", default="auto",
                    help="prefix to strip from the checkpoint keys; 'auto' (default): "
                         "decoder.model. for a fairseq checkpoint of the published model, "
                         "else none; with --layer N, followed by layers.N.attn.")
    ap.add_argument("--layer", type=int, default=None,
                    help="layer: export the attention of layer N of a model checkpoint")
    ap.add_argument("--prefix", default="", help="prefix for the exported key names "
                                                 "(then pass --prefix to lsattn)")
    for k in MODEL_KEYS:
        ap.add_argument("--" + k.replace("_", "-"), default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--randomize", action="store_true",
                    help="draw non-trivial random weights instead of the default init")
    args = ap.parse_args(argv)
    keys = LAYER_KEYS if args.kind == "layer" else MODEL_KEYS
    given = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}

    if args.checkpoint:
        ckpt, ckpt_cfg = _load_checkpoint(args.checkpoint, args.checkpoint_key)
        pre = checkpoint_prefix(ckpt, args.checkpoint_prefix, args.kind, args.layer)
        sd = {k[len(pre):]: v for k, v in ckpt.items() if k.startswith(pre)}
        if not sd:
            raise SystemExit(f"no key starts with {pre!r}; keys are e.g. {list(ckpt)[:20]}")
        dropped = sorted(k for k in sd if _is_extra(k))
        sd = {k: v for k, v in sd.items() if not _is_extra(k)}
        # cfg["model"]["vocab_size"] is TransformerLSConfig's unused default (50): the
        # published decoder sizes the embedding by len(task.target_dictionary) instead, so
        # the vocabulary comes from in_emb.weight only.
        config = {k: ckpt_cfg[k] for k in keys if k in ckpt_cfg and k != "vocab_size"}
        config.update(given)
        for k, v in _infer(sd, args.kind, config.get("n_head")).items():
            if k in config and str(config[k]).lower() != str(v).lower() and \
                    not (k in BOOL_KEYS and to_bool(config[k]) == v):
                raise SystemExit(f"{k}={config[k]} contradicts the tensor shapes ({v})")
            config[k] = v
        module = build_layer(config) if args.kind == "layer" else build_model(config)
        if args.kind == "model" and "out_emb.weight" not in sd:
            sd["out_emb.weight"] = sd["in_emb.weight"]
        module.load_state_dict(sd, strict=True)
        if dropped:
            print(f"dropped non-parameter entries: {dropped}")
    else:
        config = dict(given)
        torch.manual_seed(args.seed)
        module = build_layer(config) if args.kind == "layer" else build_model(config)
        if args.randomize:
            randomize_(module, torch.Generator().manual_seed(args.seed))

    export = export_layer if args.kind == "layer" else export_model
    export(module, config, args.out, args.prefix)
    print(f"wrote {args.out}: {metadata(config, keys)}, prefix {args.prefix!r}")


if __name__ == "__main__":
    main()
