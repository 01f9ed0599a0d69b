#!/usr/bin/env python3
"""Fixtures from the published code, end to end through the exporters: test/data/published/.

For each of the three published training setups (NVIDIA/transformer-ls, commit 1527c5c):

1. build the published *model* with small random non-trivial weights
   (LRA: ``lra/model_wrapper.py::ModelForSC`` around ``lra/model.py::Model`` with
   ``attn_type = "lsta"``; LM: the fairseq model ``TransformerLS`` of
   ``autoregressive/model_lib/model_wrapper.py``; vision: ``imagenet/models/msvit.py::MsViT``
   with ``attn_type = "ls"``), through ``tools/reference/published.py``;
2. save a checkpoint the way its training code does (LRA: ``{"model_state_dict":
   ModelForSC.state_dict()}``; fairseq: ``{"args": None, "cfg": {"model": {...}}, "model":
   state_dict, ...}``; MsViT: ``{"net": DataParallel(net).state_dict(), "arch": ..., ...}``,
   keys behind ``module.``);
3. run our exporter (``tools/export_*.py``, its command-line ``main``) on that checkpoint
   with the flags that select the layer / block;
4. run the published model's forward in fp32 on a fixed small input, capturing the
   exported attention's own input and output with a forward hook (for the LM: the model's
   log-probabilities and caches over consecutive segments from zero memory);
5. write ``weights.safetensors`` (the exporter's output), ``input.safetensors`` and
   ``expected.safetensors`` (with the ``lsattn ...`` command that must reproduce it) to
   ``test/data/published/<case>/``.

With ``--lsattn PATH`` (the built CLI, e.g. build-ci/tools/cli/lsattn) it also runs each
case's command and prints the largest CLI-vs-published difference.

Usage:  /usr/bin/python3 tools/reference/make_published_fixtures.py \\
            --published-repo /path/to/transformer-ls [--out test/data/published] [--lsattn PATH]

Deterministic: fixed seeds, one thread, sorted safetensors headers; reruns are
byte-identical (with the same torch).
"""

import argparse
import contextlib
import io
import os
import subprocess
import sys
import tempfile
import types

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))

import published  # noqa: E402
from export_lra_attention import canonicalize_header  # noqa: E402
import export_lra_attention  # noqa: E402
import export_causal  # noqa: E402
import export_vision  # noqa: E402

SEED = 20240620
GENERATOR = ("tools/reference/make_published_fixtures.py (published NVIDIA/transformer-ls "
             "1527c5c modules, fp32, exported with tools/export_*.py)")


def rel(path):
    return os.path.relpath(path, ROOT)


def quiet(fn, *args, **kwargs):
    """Hide the published code's prints (its _init_weights, MsViT's build logs)."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


@torch.no_grad()
def randomize_(model, gen):
    """Non-trivial weights for every parameter (buffers are left alone):
    LayerNorm weight N(1, 0.2), bias N(0, 0.2); matrices N(0, 1.2/sqrt(fan_in)); other
    vectors and the Transformer-XL biases N(0, 0.3); RPE tables, cls tokens and position
    embeddings N(0, 0.5)."""
    norms = {n for n, m in model.named_modules() if isinstance(m, torch.nn.LayerNorm)}
    for name, p in model.named_parameters():
        owner, _, leaf = name.rpartition(".")
        noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
        if owner in norms:
            p.copy_(1.0 + 0.2 * noise if leaf == "weight" else 0.2 * noise)
        elif "relative_position_bias_table" in leaf or "cls" in leaf or "pos_embed" in leaf:
            p.copy_(0.5 * noise)
        elif p.dim() >= 2 and leaf not in ("r_r_bias", "r_w_bias"):
            fan_in = max(1, p.numel() // max(1, p.shape[0]), p.shape[-1])
            p.copy_(1.2 / fan_in ** 0.5 * noise)
        else:
            p.copy_(0.3 * noise)
    return model


class Capture:
    """Forward hook keeping the positional inputs and the output of one module call."""

    def __init__(self, module, call=0):
        self.call, self.seen, self.args, self.out = call, 0, None, None
        self.handle = module.register_forward_hook(self)

    def __call__(self, module, args, out):
        if self.seen == self.call:
            self.args = tuple(a.detach().clone() if torch.is_tensor(a) else a for a in args)
            self.out = out.detach().clone()
        self.seen += 1


def save(tensors, path, metadata=None):
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata=metadata)
    canonicalize_header(path)


def write_case(out_root, name, inputs, expected, command, note, checked):
    d = os.path.join(out_root, name)
    save(inputs, os.path.join(d, "input.safetensors"))
    meta = {"command": command.format(d=rel(d)), "generator": GENERATOR, "note": note,
            "checked": checked}
    save(expected, os.path.join(d, "expected.safetensors"), meta)
    return d


# ---------------------------------------------------------------------------------
# LRA: ModelForSC(Model(...)) with the long-short attention, as lra/run_tasks.py builds it.
# ---------------------------------------------------------------------------------
def lra_config(**kw):
    """The argparse namespace of lra/run_tasks.py (its defaults), as the published modules read it."""
    ns = types.SimpleNamespace(
        model="lsta", attn_type="lsta", task="listops", attention_grad_checkpointing=False,
        num_landmarks=128, window_size=129, conv_kernel_size=-1, learn_pos_emb=1,
        tied_weights=False, embedding_dim=64, transformer_dim=64, transformer_hidden_dim=128,
        head_dim=32, num_head=2, num_layers=2, vocab_size=512, max_seq_len=4096,
        dropout_prob=0.0, attention_dropout=0.0, pooling_mode="MEAN", num_classes=10,
        cls_token=False, fp32_attn=False, conv_zero_init=False, debug=False,
        cls_last_layer=True, mixed_precision=False, linformer_k=256, rp_dim=256, num_hash=2)
    for k, v in kw.items():
        setattr(ns, k, v)
    ns.embedding_dim = ns.transformer_dim
    return ns


LRA_CASES = [
    # run_listops.sh's shape (2 layers, --cls_last_layer): the last layer gets the model's
    # cls_embed; batch 1 is padded at the end.
    dict(name="lra_listops_last_layer", layer=1, nh=2, dh=8, w=4, r=3, B=2, L=16,
         pads=[(1, t) for t in range(12, 16)],
         note="published lra/model_wrapper.py ModelForSC (--cls_last_layer, 2 layers); layer 1's "
              "attention (model.transformer_1.mha.) with the model's cls_embed; input.x is that "
              "layer's norm1(X), captured in the model's forward on random tokens"),
    # r = 0: the published AttentionLS still has dconv_fc, of size zero.
    dict(name="lra_rank0_first_layer", layer=0, nh=2, dh=4, w=4, r=0, B=1, L=8, pads=[(0, 7)],
         note="published ModelForSC with num_landmarks = 0: its state_dict holds zero-size "
              "dconv_fc.weight [0, 8] and dconv_fc.bias [0]; layer 0 (no cls token)"),
]

LRA_COMMAND = ("lsattn run --variant lra --weights {d}/weights.safetensors "
               "--input {d}/input.safetensors --output OUT.safetensors")


def lra_case(repo, c, gen, tmp, out_root):
    _, _, wrapper = published.lra(repo)
    cfg = lra_config(num_head=c["nh"], head_dim=c["dh"], transformer_dim=c["nh"] * c["dh"],
                     transformer_hidden_dim=2 * c["nh"] * c["dh"], vocab_size=20,
                     max_seq_len=c["L"], window_size=c["w"], num_landmarks=c["r"])
    model = quiet(wrapper.ModelForSC, cfg).eval()
    randomize_(model, gen)
    ckpt = os.path.join(tmp, c["name"] + "_output.model")
    torch.save({"model_state_dict": model.state_dict()}, ckpt)

    d = os.path.join(out_root, c["name"])
    os.makedirs(d, exist_ok=True)
    weights = os.path.join(d, "weights.safetensors")
    quiet(export_lra_attention.main, [
        "--checkpoint", ckpt, "--layer", str(c["layer"]), "--num-head", str(c["nh"]),
        "--head-dim", str(c["dh"]), "--window-size", str(c["w"]), "--out", weights])

    tokens = torch.randint(0, cfg.vocab_size, (c["B"], c["L"]), generator=gen)
    mask = torch.ones(c["B"], c["L"])
    for b, t in c["pads"]:
        mask[b, t] = 0.0
    label = torch.zeros(c["B"], dtype=torch.long)
    cap = Capture(getattr(model.model, f"transformer_{c['layer']}").mha)
    model(tokens, mask, label)
    cap.handle.remove()
    x, m = cap.args[0], cap.args[1]
    inputs = {"input.x": x, "input.mask": m.float()}
    if len(cap.args) > 2 and cap.args[2] is not None:
        inputs["input.cls_embed"] = cap.args[2]
    write_case(out_root, c["name"], inputs, {"output.y": cap.out}, LRA_COMMAND, c["note"],
               "export_lra_attention.py --checkpoint <ModelForSC checkpoint> --layer "
               f"{c['layer']} --num-head {c['nh']} --head-dim {c['dh']} --window-size {c['w']}")
    return d


# ---------------------------------------------------------------------------------
# LM: the fairseq model TransformerLS -> decoder (TransformerLSDecoder) -> model.
# ---------------------------------------------------------------------------------
LM_CASES = [
    # The published enwik8 recipe's switches (--pre-ln --use-gelu, r = 1), scaled down;
    # the last segment is shorter than a chunk multiple (published padding).
    dict(name="lm_fairseq", vocab=12, B=2, segments=[8, 8, 5], layer=1, layer_segment=1,
         cfg=dict(d_model=16, n_head=2, d_inner=32, n_layer=2, chunk_size=4, chunk_rank=1,
                  window_len=8, mem_len=8, pre_ln=True, use_gelu=True, use_bias=False)),
    # Every other switch: post-LN, ReLU, biases, r = 2, both clamps.
    dict(name="lm_fairseq_bias_clamp", vocab=9, B=1, segments=[4, 4, 4], layer=0,
         layer_segment=2,
         cfg=dict(d_model=8, n_head=2, d_inner=16, n_layer=1, chunk_size=2, chunk_rank=2,
                  window_len=4, mem_len=4, pre_ln=False, use_gelu=False, use_bias=True,
                  clamp_len=2, cpos_clamp_len=3)),
]

LM_COMMAND = ("lsattn lm --weights {d}/weights.safetensors --input {d}/input.safetensors "
              "--output OUT.safetensors")
CAUSAL_COMMAND = ("lsattn run --variant causal --weights {d}/weights.safetensors "
                  "--input {d}/input.safetensors --output OUT.safetensors")


def fairseq_checkpoint(model, cfg):
    """What fairseq's Trainer.state_dict() saves (fairseq >= 0.10), less the optimizer."""
    model_cfg = {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}
    model_cfg["_name"] = "transformer-ls"
    return {"args": None,
            "cfg": {"model": model_cfg, "task": {"_name": "truncated_bptt_lm"}},
            "model": model.state_dict(), "criterion": None,
            "optimizer_history": [{"criterion_name": "CharLevelLMLoss",
                                   "optimizer_name": "FairseqAdam", "num_updates": 0}],
            "task_state": {}, "extra_state": {"epoch": 1}}


def lm_cases(repo, c, gen, tmp, out_root):
    model, cfg = quiet(published.build_fairseq_lm, repo, c["cfg"], c["vocab"])
    model.eval()
    randomize_(model, gen)
    ckpt = os.path.join(tmp, c["name"] + "_checkpoint_best.pt")
    torch.save(fairseq_checkpoint(model, cfg), ckpt)

    segs = [torch.randint(0, c["vocab"], (c["B"], n), generator=gen) for n in c["segments"]]
    layer = model.decoder.model.layers[c["layer"]].attn
    cap = Capture(layer, call=c["layer_segment"])
    expected = {}
    model.decoder._mems = None                       # zero memory, as init_hid_cache gives
    for s, tok in enumerate(segs):
        (logprobs,) = model(tok)
        expected[f"output.logprobs.{s}"] = logprobs
        for k, cache in enumerate(model.decoder._mems):
            expected[f"output.cache.{s}.{k}"] = cache
    cap.handle.remove()

    dirs = []
    # The whole model through `lsattn lm`.
    d = os.path.join(out_root, c["name"])
    os.makedirs(d, exist_ok=True)
    quiet(export_causal.main, ["model", "--checkpoint", ckpt,
                               "--out", os.path.join(d, "weights.safetensors")])
    write_case(out_root, c["name"], {f"input.tokens.{s}": t for s, t in enumerate(segs)},
               expected, LM_COMMAND,
               "published fairseq TransformerLS (decoder.model = TransformerLSModel) called "
               "on consecutive segments from zero memory (decoder._mems carried): "
               "output.logprobs.S is its output[0] for segment S (log-probabilities of every "
               "position over the whole dictionary), output.cache.S.LAYER its memory after S",
               "export_causal.py model --checkpoint <fairseq checkpoint> (prefix decoder.model. "
               "detected, hyperparameters from cfg['model'])")
    dirs.append(d)

    # One attention layer through `lsattn run --variant causal`, on the input it got in the
    # model (a segment after the first, so that the cache is not the zero start).
    name = c["name"] + f"_layer{c['layer']}"
    d = os.path.join(out_root, name)
    os.makedirs(d, exist_ok=True)
    quiet(export_causal.main, ["layer", "--checkpoint", ckpt, "--layer", str(c["layer"]),
                               "--out", os.path.join(d, "weights.safetensors")])
    h, h_cache = cap.args[0], cap.args[1]
    write_case(out_root, name, {"input.h": h, "input.h_cache": h_cache}, {"output.y": cap.out},
               CAUSAL_COMMAND,
               f"layer {c['layer']}'s ChunkedLSAttention of the published fairseq model, its "
               f"input (h, h_cache) and output captured while the model ran segment "
               f"{c['layer_segment']}",
               f"export_causal.py layer --checkpoint <fairseq checkpoint> --layer {c['layer']}")
    dirs.append(d)
    return dirs


# ---------------------------------------------------------------------------------
# Vision: MsViT with the long-short attention (ViL-LS), checkpoint as the Checkpointer saves.
# ---------------------------------------------------------------------------------
# Stage 1: 32 px / p4 = 8 x 8 patches, 2 blocks, w 2, r 2, a0 (rpe); stage 2: 4 x 4, 1 block,
# w 2, r 0, a1 (absolute positions, no rpe); stage 3: full attention (s0).
MSVIT_ARCH = ("l1,h2,d16,n2,s1,g1,p4,f2,a0,r2_l2,h2,d16,n1,s1,g1,p2,f2,a1,r0_"
              "l3,h2,d16,n1,s0,g1,p2,f2,a0,r0")
VISION_CASES = [
    dict(name="vision_msvit_stage1_block1", stage=1, block=1, nh=2, nglo=1, nx=8, w=2,
         note="published MsViT (arch " + MSVIT_ARCH + ", 32 px), stage 1 block 1 "
              "(module.layer1.3.attn.): w 2, r 2, rpe, qkv bias; input.x is the block's "
              "norm(x), captured in the model's forward on a random image"),
    dict(name="vision_msvit_stage2_rank0", stage=2, block=0, nh=2, nglo=1, nx=4, w=2,
         note="published MsViT (arch " + MSVIT_ARCH + ", 32 px), stage 2 block 0 "
              "(module.layer2.1.attn.): w 2, dp_rank 0, no rpe (absolute positions)"),
]
VISION_COMMAND = ("lsattn run --variant vision --weights {d}/weights.safetensors "
                  "--input {d}/input.safetensors --output OUT.safetensors")


def vision_cases(repo, gen, tmp, out_root):
    _, msvit = published.imagenet(repo)
    net = quiet(msvit.MsViT, MSVIT_ARCH, img_size=32, num_classes=5, attn_type="ls",
                ln_eps=1e-6, avg_pool=False).eval()
    randomize_(net, gen)
    wrapped = torch.nn.DataParallel(net)             # keys behind module., as DDP's
    ckpt = os.path.join(tmp, "model_best.pth")
    torch.save({"net": wrapped.state_dict(), "arch": "msvit", "epoch": 1, "best_acc": 0.0}, ckpt)

    caps = {c["name"]: Capture(getattr(net, f"layer{c['stage']}")[2 * c["block"] + 1].attn)
            for c in VISION_CASES}
    image = torch.randn(2, 3, 32, 32, generator=gen)
    net(image)
    dirs = []
    for c in VISION_CASES:
        cap = caps[c["name"]]
        cap.handle.remove()
        d = os.path.join(out_root, c["name"])
        os.makedirs(d, exist_ok=True)
        flags = ["--stage", str(c["stage"]), "--block", str(c["block"]), "--num-heads",
                 str(c["nh"]), "--w", str(c["w"]), "--nglo", str(c["nglo"]), "--nx", str(c["nx"])]
        quiet(export_vision.main, ["--checkpoint", ckpt] + flags +
              ["--out", os.path.join(d, "weights.safetensors")])
        x, nx, ny = cap.args
        assert (nx, ny) == (c["nx"], c["nx"]), (nx, ny)
        write_case(out_root, c["name"], {"input.x": x}, {"output.y": cap.out}, VISION_COMMAND,
                   c["note"], "export_vision.py --checkpoint <MsViT checkpoint> " + " ".join(flags))
        dirs.append(d)
    return dirs


# ---------------------------------------------------------------------------------
def check_cli(lsattn, d):
    """Run the case's command with the built CLI; max |CLI - published| over the outputs."""
    from safetensors.torch import load_file
    from safetensors import safe_open
    with safe_open(os.path.join(d, "expected.safetensors"), "pt") as f:
        command = f.metadata()["command"]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.safetensors")
        argv = [lsattn] + command.split()[1:]
        argv[argv.index("OUT.safetensors")] = out
        r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
        if r.returncode != 0:
            return "CLI failed: " + r.stderr.strip().replace("\n", " | ")
        got, want = load_file(out), load_file(os.path.join(d, "expected.safetensors"))
        worst, scale = 0.0, 0.0
        for k, v in want.items():
            worst = max(worst, (got[k] - v).abs().max().item())
            scale = max(scale, v.abs().max().item())
        return f"max abs {worst:.3e} (rel {worst / scale:.3e})"


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--published-repo", required=True,
                    help="checkout of NVIDIA/transformer-ls (commit 1527c5c)")
    ap.add_argument("--out", default=os.path.join(ROOT, "test", "data", "published"))
    ap.add_argument("--lsattn", help="built lsattn CLI: also run every case's command")
    args = ap.parse_args()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(SEED)
    dirs = []
    with tempfile.TemporaryDirectory() as tmp:
        for c in LRA_CASES:
            dirs.append(lra_case(args.published_repo, c, gen, tmp, args.out))
        for c in LM_CASES:
            dirs += lm_cases(args.published_repo, c, gen, tmp, args.out)
        dirs += vision_cases(args.published_repo, gen, tmp, args.out)
    for d in dirs:
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        extra = f"  lsattn-vs-published {check_cli(args.lsattn, d)}" if args.lsattn else ""
        print(f"{os.path.basename(d):34s} {size / 1024:6.1f} KiB{extra}")


if __name__ == "__main__":
    main()
