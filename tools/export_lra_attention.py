#!/usr/bin/env python3
"""Export an LRA Transformer-LS attention layer to ``weights.safetensors`` for lsattn.

The file holds the layer's state_dict under the published names (``W_q.weight``,
``W_q.bias``, ..., ``dual_ln_s.weight``, ``dual_ln_l.bias``, ``dconv_fc.weight``...),
optionally behind a prefix, and a ``__metadata__`` block with string values for
``num_head``, ``head_dim``, ``transformer_dim``, ``window_size``, ``num_landmarks``
and ``pooling_mode`` (what ``lsattn run --variant lra --weights ...`` reads).

Two module sources are supported:

* the published ``AttentionLS`` from a checkout of NVIDIA/transformer-ls
  (``--published-repo PATH``; imported from ``PATH/lra/attention_transformer_ls.py``);
* the independent spec re-implementation ``tools/reference/lra_attention_ls.py``
  (the default when no published checkout is given).

Library use::

    import sys; sys.path.insert(0, "tools")
    from export_lra_attention import export_attention
    export_attention(module, {"num_head": 2, "head_dim": 32, "transformer_dim": 64,
                              "window_size": 8, "num_landmarks": 32,
                              "pooling_mode": "MEAN"}, "weights.safetensors")

Exporting one layer of a trained LRA checkpoint (``lra/model.py``'s ``Model``).
``lra/run_tasks.py`` saves the best model as ``<chk_path>/<expname>_output.model``
containing ``{"model_state_dict": model.module.state_dict()}`` (``model`` is the
``nn.DataParallel`` around ``ModelForSC``, or ``ModelForSCDual`` for retrieval, so
``.module`` strips DataParallel's prefix). ``ModelForSC`` holds the ``Model`` as
``.model``; ``Model`` holds its layers as ``transformer_0``, ``transformer_1``, ... (or one
shared ``transformer`` with ``--tied_weights``) and each layer its attention as ``mha``.
So layer N's attention sits under **``model.transformer_N.mha.``** (checked against the
published ``lra/model.py`` and ``lra/model_wrapper.py``, commit 1527c5c)::

    python3 tools/export_lra_attention.py --checkpoint LRA_chks/listops_output.model \
        --layer 0 --num-head 2 --head-dim 32 --window-size 8 \
        --out weights.safetensors [--published-repo /path/to/transformer-ls]

(``--layer N`` is ``--checkpoint-prefix model.transformer_N.mha.``; ``--tied`` selects
``model.transformer.mha.``.) The checkpoint holds no hyperparameters: ``transformer_dim``
is read from ``W_q.weight`` and ``num_landmarks`` from ``dconv_fc.weight`` (its rows are
``num_head * num_landmarks``, zero for r = 0), and both are checked against any flag given;
``num_head``, ``head_dim`` (the published scripts: 2 x 32), ``window_size`` and
``pooling_mode`` must be given. The layer is loaded strictly into a module first, so a
wrong prefix or config is caught. From Python::

    import torch
    state_dict = torch.load("LRA_chks/listops_output.model", map_location="cpu")["model_state_dict"]
    prefix = "model.transformer_0.mha."
    layer = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    from export_lra_attention import export_state_dict
    export_state_dict(layer, {"num_head": 2, "head_dim": 32, "transformer_dim": 64,
                              "window_size": 8, "num_landmarks": 32,
                              "pooling_mode": "MEAN"}, "weights.safetensors")

With ``--cls_last_layer`` (all published LRA scripts) the **last** layer also receives the
model's learned ``model.cls_embed`` parameter (shape (1, 1, D), not LayerNormed, expanded
over the batch) as its ``cls_embed`` argument; it is not part of the attention's
state_dict: pass it to lsattn as the input ``input.cls_embed`` (B, 1, D).
``--cls-embed-out PATH`` writes it (as ``input.cls_embed``, shape (1, 1, D)) next to the
weights; lsattn wants (B, 1, D): repeat it B times along the first axis for a batch of B. The attention's input is the layer's ``norm1(X)``.

Without ``--checkpoint`` the CLI exports a freshly initialised module
(``--seed``; ``--randomize`` draws non-trivial weights, as the fixtures do).
"""

import argparse
import importlib.util
import json
import os
import struct
import sys
import types

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from exporter_common import to_bool  # noqa: E402  (shared by every exporter)

CONFIG_KEYS = ("num_head", "head_dim", "transformer_dim", "window_size",
               "num_landmarks", "pooling_mode")


def _metadata(config):
    missing = [k for k in CONFIG_KEYS if k not in config]
    if missing:
        raise KeyError(f"config lacks {missing}")
    meta = {k: str(config[k]) for k in CONFIG_KEYS}
    if int(meta["transformer_dim"]) != int(meta["num_head"]) * int(meta["head_dim"]):
        raise ValueError("transformer_dim must equal num_head * head_dim")
    return meta


def canonicalize_header(path):
    """Rewrite a safetensors header with sorted keys, so regenerated files are byte-identical.

    (The Rust writer emits ``__metadata__`` in hash-map order.) Data offsets are relative
    to the data section, so only the JSON text changes; it is space-padded to 8 bytes.
    """
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + blob[8 + n:])


def export_state_dict(state_dict, config, path, prefix="", dtype=torch.float32):
    """Write ``state_dict`` (published names) to ``path`` with the config metadata."""
    from safetensors.torch import save_file

    tensors = {prefix + k: v.detach().to("cpu", dtype).contiguous()
               for k, v in state_dict.items()}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file(tensors, path, metadata=_metadata(config))
    canonicalize_header(path)
    return path


def export_attention(module, config, path, prefix=""):
    """Export an AttentionLS-like ``module`` (published or reference) to ``path``.

    ``config`` is a dict (or namespace) with at least the keys of CONFIG_KEYS;
    ``prefix`` (e.g. ``"model.transformer_0.mha."``) is prepended to every key.
    """
    if not isinstance(config, dict):
        config = vars(config)
    return export_state_dict(module.state_dict(), config, path, prefix)


def published_config(config):
    """Namespace with the fields the published AttentionLS(config) reads (spec 1.1)."""
    # run_tasks.py passes its whole argparse namespace; mirror its defaults (dropouts off).
    ns = types.SimpleNamespace(
        num_head=int(config["num_head"]), head_dim=int(config["head_dim"]),
        transformer_dim=int(config["transformer_dim"]),
        embedding_dim=int(config["transformer_dim"]), transformer_hidden_dim=128,
        num_landmarks=int(config["num_landmarks"]), window_size=int(config["window_size"]),
        attention_dropout=0.0, dropout_prob=0.0, fp32_attn=False, conv_kernel_size=-1,
        conv_zero_init=False, pooling_mode=str(config["pooling_mode"]), cls_token=False,
        cls_last_layer=False, max_seq_len=int(config.get("max_seq_len", 4096)),
        attention_grad_checkpointing=False, attn_type="lsta", model="lsta",
        mixed_precision=False, num_layers=2, vocab_size=512, learn_pos_emb=1,
        tied_weights=False, linformer_k=256, rp_dim=256, num_hash=2)
    for k, v in config.get("extra", {}).items():
        setattr(ns, k, v)
    return ns


def load_published_class(repo):
    """Import ``AttentionLS`` from a checkout of NVIDIA/transformer-ls."""
    path = os.path.join(repo, "lra", "attention_transformer_ls.py")
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    sys.path.insert(0, os.path.join(repo, "lra"))
    spec = importlib.util.spec_from_file_location("attention_transformer_ls", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.AttentionLS


def build_module(config, published_repo=None):
    """Published AttentionLS if ``published_repo`` is given, else the reference one."""
    if published_repo:
        cls = load_published_class(published_repo)
        try:
            return cls(published_config(config))
        except AttributeError as e:
            raise SystemExit(f"published AttentionLS needs a config field we do not set: {e}; "
                             "add it with --extra name=value")
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
    from lra_attention_ls import ReferenceAttentionLS
    return ReferenceAttentionLS(config["num_head"], config["head_dim"], config["transformer_dim"],
                                config["window_size"], config["num_landmarks"],
                                config["pooling_mode"])


@torch.no_grad()
def randomize_(module, generator=None):
    """Non-trivial weights: Linear N(0, 0.3) incl. bias, LN weight N(1, 0.2), bias N(0, 0.2)."""
    for name, p in module.named_parameters():
        noise = torch.randn(p.shape, generator=generator, dtype=torch.float32).to(p)
        if name.startswith("dual_ln_") and name.endswith(".weight"):
            p.copy_(1.0 + 0.2 * noise)
        elif name.startswith("dual_ln_"):
            p.copy_(0.2 * noise)
        else:
            p.copy_(0.3 * noise)
    return module


def load_checkpoint_state_dict(path, key=None):
    """The state_dict in a torch checkpoint: ``ckpt[key]``, else the published LRA entry
    ``model_state_dict`` (or ``state_dict`` / ``model``), else the checkpoint itself."""
    ckpt = torch.load(path, map_location="cpu")
    if key:
        return ckpt[key]
    if isinstance(ckpt, dict) and not any(torch.is_tensor(v) for v in ckpt.values()):
        for k in ("model_state_dict", "state_dict", "model"):
            if k in ckpt:
                return ckpt[k]
    return ckpt


def checkpoint_prefix(args):
    """--checkpoint-prefix, or the published prefix of --layer N / --tied."""
    chosen = [x for x in (args.checkpoint_prefix is not None, args.layer is not None, args.tied) if x]
    if len(chosen) > 1:
        raise SystemExit("give one of --checkpoint-prefix, --layer, --tied")
    if args.layer is not None:
        return f"model.transformer_{args.layer}.mha."
    if args.tied:
        return "model.transformer.mha."
    return args.checkpoint_prefix or ""


def infer_config(layer, args):
    """The config of a checkpoint layer: flags, with transformer_dim and num_landmarks read
    from the tensor shapes (and checked against the flags given)."""
    dim = int(layer["W_q.weight"].shape[1])
    if args.transformer_dim is not None and args.transformer_dim != dim:
        raise SystemExit(f"--transformer-dim {args.transformer_dim}, but W_q.weight says {dim}")
    if args.num_head * args.head_dim != dim:
        raise SystemExit(f"--num-head {args.num_head} x --head-dim {args.head_dim} != "
                         f"transformer_dim {dim} (from W_q.weight)")
    if "dconv_fc.weight" not in layer:
        raise SystemExit("the layer has no dconv_fc.weight (the published AttentionLS always "
                         "has one, zero-size for r = 0): is the prefix right?")
    rows = int(layer["dconv_fc.weight"].shape[0])
    if rows % args.num_head:
        raise SystemExit(f"dconv_fc.weight has {rows} rows, not a multiple of num_head {args.num_head}")
    r = rows // args.num_head
    if args.num_landmarks is not None and args.num_landmarks != r:
        raise SystemExit(f"--num-landmarks {args.num_landmarks}, but dconv_fc.weight says {r}")
    return {"num_head": args.num_head, "head_dim": args.head_dim, "transformer_dim": dim,
            "window_size": args.window_size, "num_landmarks": r,
            "pooling_mode": args.pooling_mode}


def _parse_value(v):
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(v, v)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output .safetensors path")
    ap.add_argument("--published-repo", help="checkout of NVIDIA/transformer-ls (else: reference)")
    ap.add_argument("--checkpoint", help="torch checkpoint of an LRA model to take weights from")
    ap.add_argument("--checkpoint-key", default=None,
                    help="key of the state_dict inside the checkpoint dict (default: auto)")
    ap.add_argument("--checkpoint-prefix", default=None,
                    help="prefix of the attention's keys in the checkpoint, e.g. model.transformer_0.mha.")
    ap.add_argument("--layer", type=int, default=None,
                    help="layer N of a published LRA checkpoint: prefix model.transformer_N.mha.")
    ap.add_argument("--tied", action="store_true",
                    help="the checkpoint was trained with --tied_weights: prefix model.transformer.mha.")
    ap.add_argument("--cls-embed-out", default=None,
                    help="also write the checkpoint's model.cls_embed as input.cls_embed to this file")
    ap.add_argument("--prefix", default="", help="prefix for the exported key names")
    ap.add_argument("--num-head", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=32)
    ap.add_argument("--transformer-dim", type=int, default=None, help="default num_head*head_dim")
    ap.add_argument("--window-size", type=int, default=8)
    ap.add_argument("--num-landmarks", type=int, default=None,
                    help="r (default: from dconv_fc.weight with --checkpoint, else 32)")
    ap.add_argument("--pooling-mode", default="MEAN")
    ap.add_argument("--extra", action="append", default=[], metavar="NAME=VALUE",
                    help="extra config field for the published constructor")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--randomize", action="store_true",
                    help="draw non-trivial random weights instead of the default init")
    args = ap.parse_args(argv)

    extra = dict((kv.split("=", 1)[0], _parse_value(kv.split("=", 1)[1])) for kv in args.extra)
    if args.checkpoint:
        ckpt = load_checkpoint_state_dict(args.checkpoint, args.checkpoint_key)
        pre = checkpoint_prefix(args)
        layer = {k[len(pre):]: v for k, v in ckpt.items() if k.startswith(pre)}
        if not layer:
            raise SystemExit(f"no key starts with {pre!r}; keys are e.g. {list(ckpt)[:20]}")
        config = infer_config(layer, args)
        config["extra"] = extra
        module = build_module(config, args.published_repo)
        module.load_state_dict(layer, strict=True)
        if args.cls_embed_out:
            if "model.cls_embed" not in ckpt:
                raise SystemExit("--cls-embed-out: the checkpoint has no model.cls_embed "
                                 "(trained without --cls_token / --cls_last_layer)")
            from safetensors.torch import save_file
            save_file({"input.cls_embed": ckpt["model.cls_embed"].detach().float().contiguous()},
                      args.cls_embed_out)
            canonicalize_header(args.cls_embed_out)
    else:
        config = {"num_head": args.num_head, "head_dim": args.head_dim,
                  "transformer_dim": args.transformer_dim or args.num_head * args.head_dim,
                  "window_size": args.window_size,
                  "num_landmarks": 32 if args.num_landmarks is None else args.num_landmarks,
                  "pooling_mode": args.pooling_mode, "extra": extra}
        torch.manual_seed(args.seed)
        module = build_module(config, args.published_repo)
        if args.randomize:
            randomize_(module, torch.Generator().manual_seed(args.seed))

    export_attention(module, config, args.out, args.prefix)
    print(f"wrote {args.out}: {len(module.state_dict())} tensors, prefix {args.prefix!r}")


if __name__ == "__main__":
    main()
