"""Import the published Transformer-LS modules from a checkout of NVIDIA/transformer-ls.

The published code (commit 1527c5c) is imported as it is, never changed or copied:

* ``lra(repo)``: ``lra/attention_transformer_ls.py``, ``lra/model.py``, ``lra/model_wrapper.py``
  (plain modules on ``sys.path``, as ``lra/run_tasks.py`` imports them);
* ``autoregressive(repo)``: ``autoregressive/model_lib/{layer,model,model_wrapper}.py`` as
  the package ``model_lib`` **without** running its ``__init__.py`` (which registers the
  fairseq task and criterion, needing the whole of fairseq);
* ``imagenet(repo)``: ``imagenet/models/{layers,msvit}.py`` as the package ``models``
  without its ``__init__.py`` (which needs torchvision).

fairseq and timm are replaced by the stand-ins in ``tools/reference/stubs/`` (only the
names these files import; see stubs/README.md). ``positional_inputs`` builds the extra
inputs the published ``ChunkedLSAttention.forward`` takes from its model, from the
model's own ``PositionalEmbedding``, so that one layer can be run alone.
"""

import importlib
import os
import sys
import types

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
STUBS = os.path.join(HERE, "stubs")


def _use_stubs():
    if STUBS not in sys.path:
        sys.path.insert(0, STUBS)


def _package(name, path):
    """Register ``name`` as a package at ``path`` without executing its __init__.py."""
    if name in sys.modules:
        mod = sys.modules[name]
        if getattr(mod, "__path__", [None])[0] != path:
            raise ImportError(f"a different package {name!r} is already imported")
        return mod
    if not os.path.isdir(path):
        raise FileNotFoundError(path)
    mod = types.ModuleType(name)
    mod.__path__ = [path]
    sys.modules[name] = mod
    return mod


def lra(repo):
    """(attention_transformer_ls, model, model_wrapper) modules of the published LRA code."""
    path = os.path.join(repo, "lra")
    if not os.path.exists(os.path.join(path, "attention_transformer_ls.py")):
        raise FileNotFoundError(os.path.join(path, "attention_transformer_ls.py"))
    if path not in sys.path:
        sys.path.insert(0, path)
    return tuple(importlib.import_module(m)
                 for m in ("attention_transformer_ls", "model", "model_wrapper"))


def autoregressive(repo):
    """(layer, model, model_wrapper) modules of the published LM code (package model_lib)."""
    _use_stubs()
    _package("model_lib", os.path.join(repo, "autoregressive", "model_lib"))
    return tuple(importlib.import_module("model_lib." + m)
                 for m in ("layer", "model", "model_wrapper"))


def imagenet(repo):
    """(layers.transformer_ls, msvit) modules of the published vision code (package models)."""
    _use_stubs()
    _package("models", os.path.join(repo, "imagenet", "models"))
    return (importlib.import_module("models.layers.transformer_ls"),
            importlib.import_module("models.msvit"))


def positional_inputs(model_module, d_model, cache_len, seq_len, chunk_size, chunk_rank,
                      window_len, clamp_len=-1, cpos_clamp_len=-1, dtype=torch.float32):
    """(key_pe, pos_embed_window, chunk_attn_mask) for one published ChunkedLSAttention call.

    What TransformerLSModel.forward hands every layer (spec 2.3): position values counting
    down to 0 (window: w-1 .. 0; compressed vectors: n-1 .. 0 over the whole cache+segment
    stream), capped by the clamps, through the model's PositionalEmbedding; and the mask
    that hides, for the queries of segment chunk i, the compressed vectors of every chunk
    from the cache's chunk count + i on (the query's own chunk and later ones).
    """
    pos_emb = model_module.PositionalEmbedding(d_model)
    n_chunks = (cache_len + seq_len) // chunk_size
    window_pos = torch.arange(window_len - 1, -1, -1.0, dtype=dtype)
    if clamp_len > 0:
        window_pos = window_pos.clamp(max=clamp_len)
    chunk_pos = torch.arange(n_chunks * chunk_rank - 1, -1, -1.0, dtype=dtype)
    if cpos_clamp_len > 0:
        chunk_pos = chunk_pos.clamp(max=cpos_clamp_len)
    q_chunks = seq_len // chunk_size
    key_chunk = torch.arange(n_chunks)[None, :]
    hidden = key_chunk >= (torch.arange(q_chunks)[:, None] + cache_len // chunk_size)
    # (1, 1, q_chunks*1, 1, n_chunks*r) after expanding each chunk to its r vectors.
    mask = hidden[:, :, None].expand(q_chunks, n_chunks, chunk_rank).reshape(
        1, 1, q_chunks, 1, n_chunks * chunk_rank)
    return pos_emb(chunk_pos).to(dtype), pos_emb(window_pos).to(dtype), mask


class FakeDictionary:
    """What TransformerLSDecoder reads from ``task.target_dictionary``: its length."""

    def __init__(self, size):
        self.size = int(size)

    def __len__(self):
        return self.size


def build_fairseq_lm(repo, cfg_fields, vocab_size):
    """The published fairseq model ``TransformerLS`` (decoder.model = TransformerLSModel).

    ``cfg_fields``: the TransformerLSConfig fields (d_model, n_head, ...). Returns
    (model, cfg) with cfg the config dataclass instance.
    """
    _, _, wrapper = autoregressive(repo)
    cfg = wrapper.TransformerLSConfig(**cfg_fields)
    task = types.SimpleNamespace(target_dictionary=FakeDictionary(vocab_size))
    return wrapper.TransformerLS.build_model(cfg, task), cfg
