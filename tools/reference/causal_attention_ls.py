"""Reference PyTorch implementation of the causal (chunked) Transformer-LS attention and LM.

This is an *independent re-implementation written from the project spec*
(``shared/spec/transformer-ls.md``, sections 2.1-2.8, 4, 6, 7), NOT the published
NVIDIA code (``autoregressive/model_lib/layer.py::ChunkedLSAttention`` and
``autoregressive/model_lib/model.py::TransformerLSModel``). Parameter names and shapes
follow the published state_dict (spec section 2.2 and 2.6) so that weights can be
exchanged with a real checkpoint. ``make_causal_fixtures.py --published-repo`` runs the
published layer and model on every fixture case; they agree to fp32 noise
(tools/reference/README.md gives the figures).

``ReferenceChunkedLSAttention.forward(h, h_cache)`` follows spec section 2.4 step by
step:

1. ``q = split(proj_query(h)) / sqrt(dh)``; ``r_w_bias`` (u) and ``r_r_bias`` (v) are
   added after the scaling, in the window terms only.
2. cache compression: ``P = softmax over the l tokens of each chunk of dconv_1(h_cache)``
   applied to each head's dh-slice of the *raw* cache, merged, then
   ``LN_dproj(proj_key(.))`` / ``LN_dproj(proj_val(.))``.
3. window keys/values ``LN_win(proj_key/val([h_cache[:, -w:]; h]))``.
4. segment compression: the same P (from the raw h) applied per head to the
   *projected* keys/values, merged, then ``LN_dproj``.
5. compressed keys/values = cat(cache, segment), index ``c*r + j``.
6. window scores ``(q_t+u).Kw[t+1+j] + (q_t+v).Rw[j]`` for j = 0..w-1 (stream positions
   tau-w+1..tau), ``Rw[j] = r_net(e(w-1-j))``, never masked.
7. global scores ``q_t.Kbar[c*r+j] + q_t.Rc[(P_tot-d)*r+j]``, ``d = c(tau) - c``, i.e.
   ``r_net_chunk(e(d*r-1-j))``; -inf unless ``c < c(tau)`` (strictly earlier chunks of
   the cache+segment stream).
8. one joint fp32 softmax over [global || window].
9. ``A_glob @ Vbar + sum_j A_win[j] Vw[t+1+j]``, merge heads, ``proj_out``.

The window is implemented with ``unfold`` (an explicit gather of the w rows
``t+1 .. t+w`` of ``[h_cache[:, -w:]; h]``) instead of the published 2w ``as_strided``
tiles, and the chunk relative shift with an explicit index instead of
``_rel_shift_chunked``; both give the same entries on every unmasked score.

``e(p) = cat([sin(p*inv_freq), cos(p*inv_freq)])``, ``inv_freq = 1/10000^(arange(0,D,2)/D)``
(Transformer-XL layout: concatenated halves). ``clamp_len`` / ``cpos_clamp_len`` > 0 cap
the position *value* (``p = min(p, clamp)``) of the window / compressed embeddings.

Dropout (output dropout, ``emb_dropout`` incl. on ``pos_embed_window``) is not modelled:
inference only. Everything runs in the module's dtype; the softmaxes run in at least
fp32 (so a ``.double()`` copy is a genuine float64 run).
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def _softmax_fp32(x, dim):
    """Softmax in at least fp32 (fp64 stays fp64 so that .double() runs are exact)."""
    dtype = torch.promote_types(x.dtype, torch.float32)
    return torch.softmax(x.to(dtype), dim=dim)


def sinusoid(pos, d_model, dtype):
    """e(p) for a 1-D tensor of position values: (n, D) = cat([sin(p f), cos(p f)])."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0.0, d_model, 2.0, dtype=dtype) / d_model))
    arg = pos.to(dtype)[:, None] * inv_freq[None, :]
    return torch.cat([arg.sin(), arg.cos()], dim=-1)


def position_values(n, clamp):
    """arange(n-1, ..., 0) as floats, capped at ``clamp`` if clamp > 0."""
    pos = torch.arange(n - 1, -1, -1.0, dtype=torch.float64)
    if clamp > 0:
        pos = pos.clamp(max=float(clamp))
    return pos


class ReferenceChunkedLSAttention(nn.Module):
    """Causal chunked long-short attention (spec section 2).

    Args:
        d_model: D (divisible by n_head).
        n_head: nh; head_dim dh = D // nh.
        chunk_size: l, length of the chunks of the dynamic projection.
        chunk_rank: r, compressed vectors per chunk and head.
        window_len: w, the causal sliding window (self + w-1 previous tokens).
        use_bias: bias on proj_query/key/val/out (dconv_1 and r_net_chunk always have
            one, r_net never).
        clamp_len / cpos_clamp_len: cap of the window / compressed position values (<= 0: none).
    """

    def __init__(self, d_model, n_head, chunk_size, chunk_rank, window_len, use_bias=False,
                 clamp_len=-1, cpos_clamp_len=-1):
        super().__init__()
        assert d_model % n_head == 0, "d_model must be divisible by n_head"
        assert chunk_size > 0, "chunk_size must be > 0"
        assert chunk_rank > 0, "chunk_rank must be > 0"
        assert window_len > 0, "window_len must be > 0"
        self.d_model = int(d_model)
        self.n_head = int(n_head)
        self.head_dim = self.d_model // self.n_head
        self.chunk_size = int(chunk_size)
        self.chunk_rank = int(chunk_rank)
        self.window_len = int(window_len)
        self.use_bias = bool(use_bias)
        self.clamp_len = int(clamp_len)
        self.cpos_clamp_len = int(cpos_clamp_len)
        D, nh, dh = self.d_model, self.n_head, self.head_dim

        # Registration order reproduces the published state_dict order (spec 2.2):
        # own parameters first, then the sub-modules.
        self.r_r_bias = nn.Parameter(torch.zeros(1, nh, 1, dh))      # v (window position)
        self.r_w_bias = nn.Parameter(torch.zeros(1, nh, 1, 1, dh))   # u (window content)
        self.dconv_1 = nn.Linear(D, nh * self.chunk_rank)             # always with bias
        self.r_net = nn.Linear(D, D, bias=False)
        self.r_net_chunk = nn.Linear(D, D)
        self.proj_query = nn.Linear(D, D, bias=self.use_bias)
        self.proj_out = nn.Linear(D, D, bias=self.use_bias)
        self.proj_val = nn.Linear(D, D, bias=self.use_bias)
        self.proj_key = nn.Linear(D, D, bias=self.use_bias)
        self.dual_ln_dproj = nn.LayerNorm(D, eps=1e-5)
        self.dual_ln_win = nn.LayerNorm(D, eps=1e-5)

    # -- helpers -----------------------------------------------------------------
    def _split(self, x):
        """(B, n, D) -> (B, nh, n, dh); feature f belongs to head f // dh."""
        b, n, _ = x.shape
        return x.reshape(b, n, self.n_head, self.head_dim).transpose(1, 2)

    def _merge(self, x):
        """(B, nh, n, dh) -> (B, n, D)."""
        b, h, n, d = x.shape
        return x.transpose(1, 2).reshape(b, n, h * d)

    def _chunk_probs(self, x):
        """P for the chunks of x (B, n, D): (B, nh, n/l, r, l), softmax over the l tokens."""
        B, n, _ = x.shape
        l, r, nh = self.chunk_size, self.chunk_rank, self.n_head
        s = self.dconv_1(x).view(B, n // l, l, nh, r)                 # o = head*r + j
        s = s.permute(0, 3, 1, 4, 2)                                   # (B, nh, nchunk, r, l)
        return _softmax_fp32(s, dim=-1).to(x.dtype)

    def _compress(self, P, x):
        """P (B, nh, nc, r, l) applied per head to x (B, nc*l, D) -> merged (B, nc*r, D)."""
        B, n, _ = x.shape
        nh, dh, l, r = self.n_head, self.head_dim, self.chunk_size, self.chunk_rank
        nc = n // l
        xs = x.view(B, nc, l, nh, dh).permute(0, 3, 1, 2, 4)          # (B, nh, nc, l, dh)
        m = P @ xs                                                     # (B, nh, nc, r, dh)
        return m.permute(0, 2, 3, 1, 4).reshape(B, nc * r, nh * dh)  # row c*r + j

    def positional_inputs(self, M, L, dtype):
        """(key_pe (ncv, D), pos_embed_window (w, D)) as the model builds them (spec 2.3)."""
        ncv = (M + L) // self.chunk_size * self.chunk_rank
        key_pe = sinusoid(position_values(ncv, self.cpos_clamp_len), self.d_model, dtype)
        pos_win = sinusoid(position_values(self.window_len, self.clamp_len), self.d_model, dtype)
        return key_pe, pos_win

    # -- forward -------------------------------------------------------------------
    def forward(self, h, h_cache):
        """h: (B, L, D) current segment; h_cache: (B, M, D) memory. Returns (B, L, D)."""
        B, L, D = h.shape
        M = h_cache.shape[1]
        nh, dh = self.n_head, self.head_dim
        l, r, w = self.chunk_size, self.chunk_rank, self.window_len
        # Published requirements (spec 2.3).
        assert h_cache.shape[0] == B and h_cache.shape[2] == D
        assert L % l == 0, f"segment length {L} must be a multiple of chunk_size {l}"
        assert M % l == 0, f"cache length {M} must be a multiple of chunk_size {l}"
        assert M >= w, f"cache length {M} must be >= window_len {w}"
        if L > w:
            assert L % w == 0, f"segment length {L} > window_len {w} must be a multiple of it"
        nc, nq = M // l, L // l
        P_tot = nc + nq
        ncv = P_tot * r
        key_pe, pos_win = self.positional_inputs(M, L, h.dtype)

        # 1. queries, scaled before the biases.
        q = self._split(self.proj_query(h)) / math.sqrt(dh)           # (B, nh, L, dh)

        # 2. cache compression on the raw cache, then projection and LN_dproj.
        m_cache = self._compress(self._chunk_probs(h_cache), h_cache)  # (B, nc*r, D)
        kc = self._split(self.dual_ln_dproj(self.proj_key(m_cache)))
        vc = self._split(self.dual_ln_dproj(self.proj_val(m_cache)))

        # 3. window keys/values from [h_cache[:, -w:]; h].
        zw = torch.cat([h_cache[:, M - w:], h], dim=1)                # (B, w+L, D)
        kw = self._split(self.dual_ln_win(self.proj_key(zw)))         # (B, nh, w+L, dh)
        vw = self._split(self.dual_ln_win(self.proj_val(zw)))

        # 4. segment compression of the projected keys/values, then LN_dproj.
        Ps = self._chunk_probs(h)
        ks = self._split(self.dual_ln_dproj(self._compress(Ps, self.proj_key(h))))
        vs = self._split(self.dual_ln_dproj(self._compress(Ps, self.proj_val(h))))

        # 5. all compressed keys/values, index c*r + j.
        kbar = torch.cat([kc, ks], dim=2)                              # (B, nh, ncv, dh)
        vbar = torch.cat([vc, vs], dim=2)

        # 6. window scores: query t sees rows t+1 .. t+w of [cache_w; h].
        kwin = kw.unfold(2, w, 1)[:, :, 1:L + 1]                       # (B, nh, L, dh, w)
        vwin = vw.unfold(2, w, 1)[:, :, 1:L + 1]
        u = self.r_w_bias.view(1, nh, 1, dh)
        v = self.r_r_bias.view(1, nh, 1, dh)
        Rw = self._split(self.r_net(pos_win)[None])[0]                 # (nh, w, dh), Rw[j]=e(w-1-j)
        s_win = torch.einsum("bhtd,bhtdj->bhtj", q + u, kwin) \
            + torch.einsum("bhtd,hjd->bhtj", q + v, Rw)                # (B, nh, L, w)

        # 7. global scores with the chunked relative position.
        Rc = self._split(self.r_net_chunk(key_pe)[None])[0]           # (nh, ncv, dh)
        s_cont = q @ kbar.transpose(-1, -2)                            # (B, nh, L, ncv)
        s_pos_all = torch.einsum("bhtd,hkd->bhtk", q, Rc)              # (B, nh, L, ncv)
        tau = torch.arange(L) + M
        c_q = (tau // l)[:, None]                                      # chunk of the query
        col = torch.arange(ncv)
        c_k, j_k = (col // r)[None, :], (col % r)[None, :]
        d = c_q - c_k                                                  # chunk distance
        visible = d >= 1                                               # strictly earlier chunks
        idx = ((P_tot - d) * r + j_k).clamp(0, ncv - 1)                # Rc row, e(d*r-1-j)
        s_pos = torch.gather(s_pos_all, 3, idx.expand(B, nh, L, ncv))
        s_glob = (s_cont + s_pos).masked_fill(~visible, float("-inf"))

        # 8. one joint fp32 softmax.
        A = _softmax_fp32(torch.cat([s_glob, s_win], dim=-1), dim=-1).to(h.dtype)
        a_glob, a_win = A[..., :ncv], A[..., ncv:]

        # 9. context, merge, output projection.
        ctx = a_glob @ vbar + torch.einsum("bhtj,bhtdj->bhtd", a_win, vwin)
        return self.proj_out(self._merge(ctx))


class ReferenceFeedForward(nn.Module):
    """``fc2(act(fc1(x)))``; act is GELU (erf form, in at least fp32) or ReLU."""

    def __init__(self, d_model, d_inner, use_gelu):
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_inner)
        self.fc2 = nn.Linear(d_inner, d_model)
        self.use_gelu = bool(use_gelu)

    def forward(self, x):
        y = self.fc1(x)
        if self.use_gelu:
            y = F.gelu(y.to(torch.promote_types(y.dtype, torch.float32))).to(x.dtype)
        else:
            y = F.relu(y)
        return self.fc2(y)


class ReferenceTransformerLSLayer(nn.Module):
    """One block (spec 2.6): attn, norm1, ff, norm2."""

    def __init__(self, d_model, n_head, d_inner, chunk_size, chunk_rank, window_len, pre_ln,
                 use_gelu, use_bias, clamp_len, cpos_clamp_len):
        super().__init__()
        self.attn = ReferenceChunkedLSAttention(d_model, n_head, chunk_size, chunk_rank,
                                                window_len, use_bias, clamp_len, cpos_clamp_len)
        self.norm1 = nn.LayerNorm(d_model, eps=1e-5)
        self.ff = ReferenceFeedForward(d_model, d_inner, use_gelu)
        self.norm2 = nn.LayerNorm(d_model, eps=1e-5)
        self.pre_ln = bool(pre_ln)

    def forward(self, h, h_cache):
        if self.pre_ln:
            hn = self.norm1(h)
            hc = self.norm1(h_cache)                 # the cache goes through the same LN1
            h = hn + self.attn(hn, hc)               # residual on the *normalised* input
            hn2 = self.norm2(h)
            return hn2 + self.ff(hn2)
        h = self.norm1(h + self.attn(h, h_cache))
        return self.norm2(h + self.ff(h))


class ReferenceTransformerLSModel(nn.Module):
    """The character-level LM around the causal attention (spec 2.5-2.6).

    ``forward(tokens, caches)``: tokens (B, L) int64, caches a list of n_layer tensors
    (B, mem_len, D) (``init_caches`` gives the zero start). Returns
    ``(log_probs (B, L, vocab), new_caches)``.
    """

    def __init__(self, vocab_size, d_model, n_head, d_inner, n_layer, mem_len, chunk_size,
                 chunk_rank, window_len, pre_ln=True, use_gelu=True, use_bias=False,
                 clamp_len=-1, cpos_clamp_len=-1):
        super().__init__()
        self.vocab_size = int(vocab_size)
        self.d_model = int(d_model)
        self.n_layer = int(n_layer)
        self.mem_len = int(mem_len)
        self.chunk_size = int(chunk_size)
        self.window_len = int(window_len)
        self.in_emb = nn.Embedding(self.vocab_size, self.d_model)
        self.out_emb = nn.Linear(self.d_model, self.vocab_size)
        self.out_emb.weight = self.in_emb.weight                      # tied; own bias
        self.layers = nn.ModuleList(
            ReferenceTransformerLSLayer(d_model, n_head, d_inner, chunk_size, chunk_rank,
                                        window_len, pre_ln, use_gelu, use_bias, clamp_len,
                                        cpos_clamp_len)
            for _ in range(self.n_layer))

    def init_caches(self, batch, dtype=None):
        dtype = dtype or self.in_emb.weight.dtype
        return [torch.zeros(batch, self.mem_len, self.d_model, dtype=dtype)
                for _ in range(self.n_layer)]

    def forward(self, tokens, caches):
        B, L = tokens.shape
        l, w = self.chunk_size, self.window_len
        n_pad = 0
        if L % l != 0:
            # Published padding: token 0 up to a multiple of lcm(l, w); not masked.
            lcm = l * w // math.gcd(l, w)
            n_pad = lcm - L % lcm
            tokens = F.pad(tokens, (0, n_pad), value=0)
        h = self.in_emb(tokens) * math.sqrt(self.d_model)
        new_caches = []
        for layer, cache in zip(self.layers, caches):
            # Taken before the layer runs, from the layer's (padded) input.
            new_caches.append(torch.cat([cache, h], dim=1)[:, -self.mem_len:].detach())
            h = layer(h, cache)
        if n_pad:
            h = h[:, :L]
        return F.log_softmax(self.out_emb(h), dim=-1), new_caches
