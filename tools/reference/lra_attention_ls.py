"""Reference PyTorch implementation of the LRA bidirectional Transformer-LS attention.

This is an *independent re-implementation written from the project spec*
(``shared/spec/transformer-ls.md``, section 1.3), NOT the published NVIDIA code
(``lra/attention_transformer_ls.py::AttentionLS``). Parameter names and shapes follow
the published state_dict (spec section 1.2), including the zero-size ``dconv_fc`` that
the published module creates for r = 0, so that weights can be exchanged with a real
checkpoint. ``make_lra_fixtures.py --published-repo`` compares it with the published
module on every fixture case (tools/reference/README.md gives the figures).

It follows the published algorithm step by step and is vectorised the same way:
the dynamic projection P is a softmax over the sequence axis with -inf on padded
tokens, the short-term part is the ``_v2`` sliding window (blocks of ``w`` queries,
each seeing ``w + 2*ext`` keys, K/V zero-padded and the mask True-padded by
``ext`` on both sides), and one joint fp32 softmax runs over [global || window].

Dropout is not modelled (inference only); ``fp32_attn`` and the broken conv
branch are not implemented.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def _softmax_fp32(x, dim):
    """Softmax in at least fp32 (fp64 stays fp64 so that .double() runs are exact)."""
    dtype = torch.promote_types(x.dtype, torch.float32)
    return torch.softmax(x.to(dtype), dim=dim)


class ReferenceAttentionLS(nn.Module):
    """Long-short attention of the LRA experiments (spec section 1).

    Args:
        num_head: nh.
        head_dim: dh.
        transformer_dim: D; must equal nh*dh (published W_o is Linear(D, nh*dh)).
        window_size: w; <= 0 disables the short-term window.
        num_landmarks: r; 0 disables the dynamic projection.
        pooling_mode: "CLS" (case-insensitive) means the first token of X is the cls token.
    """

    def __init__(self, num_head, head_dim, transformer_dim, window_size,
                 num_landmarks, pooling_mode="MEAN"):
        super().__init__()
        if transformer_dim != num_head * head_dim:
            raise ValueError("transformer_dim must equal num_head * head_dim (spec section 7.1)")
        self.num_head = int(num_head)
        self.head_dim = int(head_dim)
        self.dim = int(transformer_dim)
        self.window_size = int(window_size)
        self.num_landmarks = int(num_landmarks)
        self.pooling_mode = str(pooling_mode)
        self.cls_from_seq = self.pooling_mode.lower() == "cls"

        d_all = self.num_head * self.head_dim
        self.W_q = nn.Linear(self.dim, d_all)
        self.W_k = nn.Linear(self.dim, d_all)
        self.W_v = nn.Linear(self.dim, d_all)
        # Declared in/out swapped like the published code; fine because D == nh*dh.
        self.W_o = nn.Linear(self.dim, d_all)
        # Created for every r, as the published module does: with r = 0 the state_dict
        # holds zero-size dconv_fc.weight [0, D] and dconv_fc.bias [0] (issue 11).
        # Registered here, not after the LNs as published, so that randomize_ draws the
        # same numbers for the same parameters as before (the state_dict order is irrelevant
        # to safetensors, whose header is sorted).
        self.dconv_fc = nn.Linear(self.dim, self.num_head * self.num_landmarks)
        self.dual_ln_s = nn.LayerNorm(d_all, eps=1e-5)
        self.dual_ln_l = nn.LayerNorm(d_all, eps=1e-5)

    # -- helpers -----------------------------------------------------------------
    def _split(self, x):
        """(B, n, D) -> (B, nh, n, dh); feature f belongs to head f // dh."""
        b, n, _ = x.shape
        return x.view(b, n, self.num_head, self.head_dim).transpose(1, 2)

    def _merge(self, x):
        """(B, nh, n, dh) -> (B, n, D)."""
        b, h, n, d = x.shape
        return x.transpose(1, 2).reshape(b, n, h * d)

    def _window_scores(self, Q, K, pad):
        """Steps 8 of spec 1.3: (B, nh, L, span) scores with -inf on OOB/padded keys."""
        B, H, L, dh = Q.shape
        w = self.window_size
        ext = max(w // 2, 1)
        span = w + 2 * ext
        nblk = L // w
        # Zero-pad keys, True-pad the mask by ext on both sides of the sequence.
        Kp = F.pad(K, (0, 0, ext, ext))                           # (B, H, L+2ext, dh)
        padp = F.pad(pad, (ext, ext), value=True)                 # (B, L+2ext)
        # Block g sees padded positions g*w .. g*w+span-1, i.e. s = g*w-ext+j.
        Kw = Kp.unfold(2, span, w)                                # (B, H, nblk, dh, span)
        mw = padp.unfold(1, span, w)                              # (B, nblk, span)
        Qb = Q.reshape(B, H, nblk, w, dh)
        S = torch.einsum("bhgqd,bhgdj->bhgqj", Qb, Kw)            # (B, H, nblk, w, span)
        S = S.masked_fill(mw[:, None, :, None, :], float("-inf"))
        return S.reshape(B, H, L, span)

    def _window_context(self, Pw, V):
        """Step 10 (local part): sum_j Pw[t, j] * v_{s(t, j)}."""
        B, H, L, span = Pw.shape
        w = self.window_size
        ext = max(w // 2, 1)
        nblk = L // w
        Vp = F.pad(V, (0, 0, ext, ext))
        Vw = Vp.unfold(2, span, w)                                # (B, H, nblk, dh, span)
        Pb = Pw.reshape(B, H, nblk, w, span)
        C = torch.einsum("bhgqj,bhgdj->bhgqd", Pb, Vw)
        return C.reshape(B, H, L, self.head_dim)

    # -- forward -------------------------------------------------------------------
    def forward(self, X, mask=None, cls_embed=None):
        """X: (B, L, D); mask: (B, L), 1 valid / 0 padding; cls_embed: (B, 1, D) or None.

        Returns (B, L, D), or (B, L+1, D) with the cls row first when a cls token is
        present (for pooling_mode CLS the cls token is X[:, 0], so the output keeps X's length).
        """
        if mask is None:
            mask = torch.ones(X.shape[:2], dtype=X.dtype, device=X.device)
        # Step 0.
        if self.cls_from_seq:
            if cls_embed is not None:
                raise ValueError("cls_embed given with pooling_mode CLS")
            cls_embed = X[:, :1]
            X = X[:, 1:]
            mask = mask[:, 1:]
        has_cls = cls_embed is not None
        B, L, _ = X.shape
        H, dh, r, w = self.num_head, self.head_dim, self.num_landmarks, self.window_size
        if w > 0 and L % w != 0:
            raise ValueError(f"sequence length {L} must be a multiple of window_size {w}")
        if w <= 0 and r == 0 and not has_cls:
            raise ValueError("window_size <= 0 and num_landmarks == 0 needs a cls token")
        scale = 1.0 / math.sqrt(dh)

        # Steps 1-3.
        Q = self._split(self.W_q(X)) * scale                      # (B, H, L, dh)
        K = self._split(self.dual_ln_l(self.W_k(X)))
        V = self._split(self.dual_ln_l(self.W_v(X)))
        pad = ~mask.bool()                                        # (B, L)

        # Step 4: dynamic projection of the LN_l-normalised K/V.
        glob_k, glob_v = [], []
        if has_cls:
            # Step 5: raw (no LN_l) cls key/value become global key 0.
            Q_cls = self._split(self.W_q(cls_embed)) * scale      # (B, H, 1, dh)
            K_cls = self._split(self.W_k(cls_embed))
            V_cls = self._split(self.W_v(cls_embed))
            glob_k.append(K_cls)
            glob_v.append(V_cls)
        if r > 0:
            S = self.dconv_fc(X)                                  # (B, L, H*r)
            S = S.masked_fill(pad[:, :, None], float("-inf"))
            P = _softmax_fp32(S, dim=1).to(K.dtype)               # over the sequence
            P = P.view(B, L, H, r).permute(0, 2, 3, 1)            # (B, H, r, L)
            glob_k.append(P @ K)
            glob_v.append(P @ V)

        # Step 6-7: LN_s over the merged D-vector of every global key/value.
        n_glob = 0
        if glob_k:
            Kg = torch.cat(glob_k, dim=2)
            Vg = torch.cat(glob_v, dim=2)
            n_glob = Kg.shape[2]
            Kg = self._split(self.dual_ln_s(self._merge(Kg)))
            Vg = self._split(self.dual_ln_s(self._merge(Vg)))
            A_g = Q @ Kg.transpose(-1, -2)                        # (B, H, L, nG)
            scores = [A_g]
        else:
            scores = []

        # Step 8: window scores.
        self_only = False
        if w > 0:
            scores.append(self._window_scores(Q, K, pad))
        elif r == 0:
            self_only = True                                      # each token sees itself
            scores.append((Q * K).sum(-1, keepdim=True))

        # Step 9: one joint softmax, padded query rows zeroed.
        A = _softmax_fp32(torch.cat(scores, dim=-1), dim=-1)
        A = A.masked_fill(pad[:, None, :, None], 0.0).to(V.dtype)

        # Step 10: context.
        C = torch.zeros_like(Q)
        if n_glob > 0:
            C = C + A[..., :n_glob] @ Vg
        if w > 0:
            C = C + self._window_context(A[..., n_glob:], V)
        elif self_only:
            C = C + A[..., n_glob:] * V

        # Steps 11-12: cls query attends to the tokens' outputs C (keys and values).
        if has_cls:
            s_self = (Q_cls * K_cls).sum(-1, keepdim=True)        # raw K_cls, (B, H, 1, 1)
            s_tok = (Q_cls @ C.transpose(-1, -2)).masked_fill(pad[:, None, None, :], float("-inf"))
            p = _softmax_fp32(torch.cat([s_self, s_tok], dim=-1), dim=-1).to(V.dtype)
            out_cls = p[..., :1] * V_cls + p[..., 1:] @ C         # raw V_cls
            C = torch.cat([out_cls, C], dim=2)

        # Step 13.
        return self.W_o(self._merge(C))
