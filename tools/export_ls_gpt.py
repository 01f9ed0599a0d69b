#!/usr/bin/env python3
"""Export an LS-attention GPT (nanoGPT ``model_localAttn.py``) to safetensors for ``lsattn gpt``.

The file holds the model's state_dict under its own names (``transformer.wte.weight``,
``transformer.h.<i>.attn.c_attn.weight`` or ``...attn.c_local_attn.weight`` /
``...attn.c_global_attn.weight``, ``lm_head.weight``, ...) and GPTConfig's fields in
``__metadata__`` as strings (``block_size``, ``vocab_size``, ``n_layer``, ``n_head``,
``head_dim``, ``n_embd``, ``n_local_head``, ``local_attn_span``, ``bias`` as "true"/"false",
and whatever else ``model_args`` holds, e.g. ``dropout``, which lsattn ignores). lsattn tells
the version from the names:

* **packed_heads** (github.com/suvadeep-iitb/nanoGPT, commit a1f13df and before):
  ``attn.c_attn`` packs q|k|v of all heads, and each block registers the boolean buffer
  ``attn.mask`` (1, n_head, block_size, block_size), kept in the file (lsattn checks it against
  the published formula; ``--drop-mask`` leaves it out, it is n_layer * n_head * block_size^2
  bytes);
* **split_heads** (the current code): ``attn.c_local_attn`` / ``attn.c_global_attn``.

From a checkpoint of the published ``train_localAttn.py`` (``torch.save({"model":
raw_model.state_dict(), "model_args": model_args, ...})``)::

    python3 tools/export_ls_gpt.py --checkpoint out/ckpt.pt --out gpt.safetensors

``torch.compile`` (the training default) puts ``_orig_mod.`` before every key: it is stripped
when every key has it (``--checkpoint-prefix auto``, the default; or name the prefix to strip).
``--prefix P`` puts ``P`` before every written name (then pass ``--prefix P`` to lsattn), e.g.
``--prefix _orig_mod.`` keeps the checkpoint's names as they are. ``model_args`` gives the
metadata; a flag (``--n-layer``, ``--local-attn-span``, ...) overrides it. The names and shapes
are checked against the config before anything is written (missing, unexpected or misshaped
tensors, a mask that is not the formula's), so a wrong config fails here and not in lsattn.
This needs ``torch`` (to read the pickle) and ``numpy``.

Without a checkpoint, ``--random`` writes random weights for a config given by flags, with
``numpy`` only (fixtures for tests and benchmarks; no torch, no model code)::

    python3 tools/export_ls_gpt.py --random --version split_heads --block-size 64 \\
        --vocab-size 256 --n-layer 2 --n-head 4 --head-dim 8 --n-embd 32 \\
        --n-local-head 2 --local-attn-span 8 --seed 0 --out gpt.safetensors

Linear and embedding weights ~ N(0, 0.02), LayerNorm weights ~ N(1, 0.1), biases ~ N(0, 0.02).

``--dtype F32|F16|BF16`` sets how the float tensors are stored (default F32; lsattn converts
F16 and BF16 to float as it loads). ``--local-window N`` stores lsattn's ``local_window``
(keys a local query sees, itself included; see docs/ls_gpt.md). The file is written to a
temporary beside ``--out`` and renamed over it.
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from exporter_common import to_bool  # noqa: E402  (shared by every exporter)

INT_KEYS = ("block_size", "vocab_size", "n_layer", "n_head", "head_dim", "n_embd", "n_local_head",
            "local_attn_span")
VERSIONS = ("packed_heads", "split_heads")
COMPILE_PREFIX = "_orig_mod."


def metadata(config):
    """String metadata: ints as decimals, booleans as "true"/"false", None left out."""
    meta = {}
    for k, v in config.items():
        if v is None:
            continue
        if k == "bias":
            meta[k] = "true" if to_bool(v) else "false"
        elif k in INT_KEYS or k == "local_window":
            meta[k] = str(int(v))
        else:
            meta[k] = str(v)
    return meta


def parameters(config, version):
    """(name, shape) of every parameter of the model, in the published module order."""
    d, hd, nh = int(config["n_embd"]), int(config["head_dim"]), int(config["n_head"])
    nl = int(config["n_local_head"])
    width, local, glob = nh * hd, nl * hd, (nh - nl) * hd
    inner = 4 * d + 2 * (d - width)
    bias = to_bool(config["bias"])
    out = [("transformer.wte.weight", (int(config["vocab_size"]), d)),
           ("transformer.wpe.weight", (int(config["block_size"]), d))]

    def linear(name, rows, cols):
        out.append((name + ".weight", (rows, cols)))
        if bias:
            out.append((name + ".bias", (rows,)))

    def norm(name):
        out.append((name + ".weight", (d,)))
        if bias:
            out.append((name + ".bias", (d,)))

    for i in range(int(config["n_layer"])):
        p = f"transformer.h.{i}."
        norm(p + "ln_1")
        if version == "packed_heads":
            linear(p + "attn.c_attn", 3 * width, d)
        else:
            if local > 0:
                linear(p + "attn.c_local_attn", 3 * local, d)
            if glob > 0:
                linear(p + "attn.c_global_attn", 3 * glob, d)
        linear(p + "attn.c_proj", d, width)
        norm(p + "ln_2")
        linear(p + "mlp.c_fc", inner, d)
        linear(p + "mlp.c_proj", d, inner)
    norm("transformer.ln_f")
    out.append(("lm_head.weight", (int(config["vocab_size"]), d)))
    return out


def published_mask(config, size=None):
    """The packed_heads buffer: local heads see i - span < j <= i, the others j <= i."""
    m = int(size or config["block_size"])
    i = np.arange(m)[:, None]
    j = np.arange(m)[None, :]
    causal = j <= i
    local = causal & (j > i - int(config["local_attn_span"]))
    nl, nh = int(config["n_local_head"]), int(config["n_head"])
    return np.stack([local] * nl + [causal] * (nh - nl))[None]


def version_of(names):
    packed = [n for n in names if ".attn.c_attn." in n]
    split = [n for n in names if ".attn.c_local_attn." in n or ".attn.c_global_attn." in n]
    if packed and split:
        raise SystemExit(f"both versions' attention tensors are present ({packed[0]!r}, {split[0]!r})")
    if not packed and not split:
        raise SystemExit("no attention tensors (attn.c_attn or attn.c_local_attn / attn.c_global_attn); "
                         f"keys are e.g. {sorted(names)[:8]}")
    return "packed_heads" if packed else "split_heads"


def check(tensors, config, version):
    """Strict: every parameter present with its shape, nothing else but packed_heads masks."""
    expected = dict(parameters(config, version))
    problems = []
    for name, shape in expected.items():
        if name not in tensors:
            problems.append(f"missing {name!r} {shape}")
        elif tuple(tensors[name].shape) != shape:
            problems.append(f"{name!r} has shape {tuple(tensors[name].shape)}, expected {shape}")
    n_layer = int(config["n_layer"])
    for name, value in tensors.items():
        if name in expected:
            continue
        parts = name.split(".")
        is_mask = len(parts) == 5 and parts[:2] == ["transformer", "h"] and parts[3:] == ["attn", "mask"]
        if is_mask and version == "packed_heads" and parts[2].isdigit() and int(parts[2]) < n_layer:
            m = value.shape[-1]
            if value.shape != (1, int(config["n_head"]), m, m) or m < int(config["block_size"]):
                problems.append(f"mask {name!r} has shape {value.shape}")
            elif not np.array_equal(value.astype(bool), published_mask(config, m)):
                problems.append(f"mask {name!r} is not the published formula for n_local_head = "
                                f"{config['n_local_head']}, local_attn_span = {config['local_attn_span']}")
        else:
            problems.append(f"unexpected {name!r} {tuple(value.shape)}")
    if problems:
        shown = "\n  ".join(problems[:12]) + (f"\n  ... and {len(problems) - 12} more" if len(problems) > 12 else "")
        raise SystemExit(f"the tensors do not match the config ({version}, "
                         f"{ {k: config[k] for k in INT_KEYS + ('bias',)} }):\n  {shown}")


def _bf16_bits(values):
    """float32 → bfloat16 bit patterns, rounded to nearest even (finite values)."""
    bits = np.ascontiguousarray(values, dtype="<f4").view("<u4").astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype("<u2")


def encode(value, dtype):
    """(safetensors dtype, little-endian bytes) of a numpy array; booleans stay BOOL."""
    if value.dtype == np.bool_:
        return "BOOL", np.ascontiguousarray(value, dtype=np.uint8).tobytes()
    if value.dtype.kind in "iu":
        return "I64", np.ascontiguousarray(value, dtype="<i8").tobytes()
    if dtype == "F32":
        return "F32", np.ascontiguousarray(value, dtype="<f4").tobytes()
    if dtype == "F16":
        return "F16", np.ascontiguousarray(value, dtype="<f2").tobytes()
    return "BF16", _bf16_bits(value).tobytes()


def write_safetensors(path, tensors, meta, dtype="F32"):
    """A safetensors file: sorted header keys (byte-identical reruns), widest dtype first so that
    every tensor is aligned to its element size, written through a temporary and renamed."""
    encoded = {name: (*encode(value, dtype), list(value.shape)) for name, value in tensors.items()}
    size = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "BOOL": 1}
    order = sorted(encoded, key=lambda n: (-size[encoded[n][0]], n))
    header, offset = {}, 0
    for name in order:
        kind, data, shape = encoded[name]
        header[name] = {"dtype": kind, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    if meta:
        header["__metadata__"] = meta
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = os.path.join(directory, f".{os.path.basename(path)}.tmp.{os.getpid()}")
    try:
        with open(temporary, "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text)
            for name in order:
                f.write(encoded[name][1])
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def random_tensors(config, version, seed, mask=True):
    """Random parameters for ``config`` (and the packed_heads mask buffers), numpy only."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in parameters(config, version):
        is_norm_weight = (".ln_" in name or name.startswith("transformer.ln_f")) and name.endswith(".weight")
        mean, std = (1.0, 0.1) if is_norm_weight else (0.0, 0.02)
        tensors[name] = (mean + std * rng.standard_normal(shape)).astype(np.float32)
    if version == "packed_heads" and mask:
        buffer = published_mask(config)
        for i in range(int(config["n_layer"])):
            tensors[f"transformer.h.{i}.attn.mask"] = buffer
    return tensors


def load_checkpoint(path):
    """(state_dict as numpy arrays, model_args) of a nanoGPT checkpoint or a bare state_dict."""
    import torch

    ckpt = torch.load(path, map_location="cpu")
    model_args = {}
    if isinstance(ckpt, dict) and "model" in ckpt and not torch.is_tensor(ckpt["model"]):
        model_args = dict(ckpt.get("model_args") or {})
        ckpt = ckpt["model"]
    state = {}
    for name, value in ckpt.items():
        if not torch.is_tensor(value):
            raise SystemExit(f"{path}: entry {name!r} is not a tensor; give the checkpoint's state_dict")
        value = value.detach().cpu()
        if value.is_floating_point() and value.dtype != torch.float32:
            value = value.float()   # bf16 has no numpy type; stored as --dtype asks
        state[name] = value.numpy()
    return state, model_args


def strip_prefix(state, prefix):
    """The state_dict without ``prefix`` ('auto': _orig_mod. when every key has it)."""
    if prefix == "auto":
        prefix = COMPILE_PREFIX if state and all(k.startswith(COMPILE_PREFIX) for k in state) else ""
    if not prefix:
        return state
    missing = [k for k in state if not k.startswith(prefix)]
    if missing:
        raise SystemExit(f"--checkpoint-prefix {prefix!r}: {len(missing)} keys lack it, e.g. {missing[:4]}")
    return {k[len(prefix):]: v for k, v in state.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output .safetensors path")
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="nanoGPT checkpoint (ckpt.pt: 'model' and 'model_args')")
    source.add_argument("--random", action="store_true", help="random weights for the config given by flags")
    ap.add_argument("--version", choices=VERSIONS, help="--random: which published version to write")
    ap.add_argument("--seed", type=int, default=0, help="--random: the generator's seed")
    ap.add_argument("--checkpoint-prefix", default="auto",
                    help="prefix to strip from the checkpoint's keys; 'auto' (default): _orig_mod. when every "
                         "key has it, else none")
    ap.add_argument("--prefix", default="", help="prefix for the written names (then pass --prefix to lsattn)")
    ap.add_argument("--drop-mask", action="store_true", help="leave the packed_heads attn.mask buffers out")
    ap.add_argument("--dtype", choices=("F32", "F16", "BF16"), default="F32", help="storage of float tensors")
    for k in INT_KEYS:
        ap.add_argument("--" + k.replace("_", "-"), type=int, default=None, help=f"GPTConfig.{k} (overrides model_args)")
    ap.add_argument("--bias", type=to_bool, default=None, help="GPTConfig.bias, true/false (overrides model_args)")
    ap.add_argument("--local-window", type=int, default=None,
                    help="lsattn's local_window: keys a local query sees, itself included")
    args = ap.parse_args(argv)

    given = {k: getattr(args, k) for k in INT_KEYS + ("bias",) if getattr(args, k) is not None}
    if args.random:
        if args.version is None:
            raise SystemExit("--random needs --version packed_heads|split_heads")
        config = {"bias": True, **given}
        lacking = [k for k in INT_KEYS if k not in config]
        if lacking:
            raise SystemExit("--random needs " + ", ".join("--" + k.replace("_", "-") for k in lacking))
        version = args.version
        tensors = random_tensors(config, version, args.seed, mask=not args.drop_mask)
    else:
        state, model_args = load_checkpoint(args.checkpoint)
        tensors = strip_prefix(state, args.checkpoint_prefix)
        config = {**model_args, **given}
        if "bias" not in config:
            config["bias"] = "transformer.ln_f.bias" in tensors
        lacking = [k for k in INT_KEYS if config.get(k) is None]
        if lacking:
            raise SystemExit("the checkpoint has no model_args for " + ", ".join(lacking) + "; pass " +
                             ", ".join("--" + k.replace("_", "-") for k in lacking))
        version = version_of(tensors)
        if args.version is not None and args.version != version:
            raise SystemExit(f"--version {args.version}, but the checkpoint's names are those of {version}")
        if args.drop_mask:
            tensors = {k: v for k, v in tensors.items() if not k.endswith(".attn.mask")}
    check(tensors, config, version)
    for name, value in tensors.items():
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise SystemExit(f"{name!r} holds non-finite values")
    if args.local_window is not None:
        config["local_window"] = args.local_window
    meta = metadata(config)
    write_safetensors(args.out, {args.prefix + k: v for k, v in tensors.items()}, meta, args.dtype)
    count = sum(int(math.prod(v.shape)) for k, v in tensors.items() if not k.endswith(".attn.mask"))
    print(f"wrote {args.out}: {version}, {count} parameters, prefix {args.prefix!r}, metadata {meta}")


if __name__ == "__main__":
    sys.exit(main())
