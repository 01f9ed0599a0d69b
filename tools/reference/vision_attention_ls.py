"""Reference PyTorch implementation of the 2D (vision, ViL-LS) Transformer-LS attention.

This is an *independent re-implementation written from the project spec*
(``shared/spec/transformer-ls.md``, sections 3.1-3.6, 4, 6, 7), NOT the published
NVIDIA code (``imagenet/models/layers/transformer_ls.py::AttentionLS``). Parameter
names, shapes and the ``relative_position_index`` buffer follow the published state_dict
(spec 3.2, 3.5) so that weights can be exchanged with a real checkpoint. In the published
mode it is bit-identical to the published module on every published-mode fixture case
(``make_vision_fixtures.py --published-repo``).

Token layout: ``x`` is ``(B, nglo + nx*ny, C)``: the ``nglo`` global tokens first, then
the patches in row-major order, patch ``(row, col)`` at ``nglo + row*ny + col``. So
**nx is the number of rows and ny the number of columns** (spec 3.3).

``forward(x, nx, ny)`` follows spec 3.3 step by step:

1. ``q, k, v = chunk(qkv(x), 3)``, ``q *= dh**-0.5``.
2. ``k = LN_full(k)``, ``v = LN_full(v)`` over C for all tokens, global ones included.
3. split the global tokens ``q_g, k_g, v_g`` (B, nh, nglo, dh) off the patches.
4. (r > 0) ``P = softmax over the patches of to_dynamic_projection(x_patches)`` (from the
   raw attention input, feature ``o`` = head ``o // r``, landmark ``o % r``);
   ``k_lms = split(LN_dp(merge(P @ k)))``, same for v; ``S_dp = q @ k_lms^T``.
5. window: query ``(y, x)`` in block ``(y//w, x//w)`` sees the T x T key tile of rows
   ``gy*w - side .. gy*w + w + side - 1`` (columns likewise), ``side = max(w//2, 1)``,
   ``T = w + 2*side``, flattened ``a*T + b``; out-of-grid keys -inf; then (rpe) the bias
   ``table[relative_position_index[qy*w + qx, a*T + b], head]`` is added (after the
   -inf fill, so masked keys stay -inf).
6. ``S_g = q @ k_g^T``.
7. one joint fp32 softmax over ``[S_dp (r) | S_win (T*T) | S_g (nglo)]``.
8. ``out = A_win . V_tiles + A_dp @ v_lms + A_g . v_g``.
9. (nglo > 0) global update: ``p = softmax(cat([q_g @ k_g^T, q_g @ out^T]))``,
   ``g_next = p[..., nglo:] @ out + p[..., :nglo] @ v_g``; ``out = cat([g_next, out])``.
10. ``y = proj(merge(out))``.

The window uses the published vectorisation idea: the patches are regrouped into
(block row, block col, w*w) and every block's T x T key tile is cut out of the key grid
zero-padded by ``side`` on every border (``unfold``).

Two modes
---------
``generalized=False`` (default; the published behaviour): requires ``nx == ny``,
``nx % w == 0`` and ``nglo <= 1`` (spec 6.11 / 7.14 / 7.16) and raises ``ValueError``
otherwise. The out-of-grid keys are masked exactly as published, with the four border
``fill_`` calls (first/last block row: the first/last ``side`` tile rows; first/last
block column: the first/last ``side`` tile columns); the global-token term of step 8 is
the published broadcast ``A_g * v_g`` (valid for nglo = 1).

``generalized=True`` (what the C++ library implements; a documented generalisation, NOT
published behaviour):

* rectangular grids: nx rows != ny columns, token ``row*ny + col``; blocks are w x w
  anchored at row 0 / column 0.
* grids not divisible by w: the grid is padded **at the bottom and on the right** with
  zero patches (``x = 0`` rows inserted at the padded grid positions) up to
  ``Hp = ceil(nx/w)*w`` rows and ``Wp = ceil(ny/w)*w`` columns. The padded patches are
  masked with -inf as keys everywhere: in the window scores (together with the
  out-of-grid keys), in the dynamic-projection softmax over the patches, and as keys of
  the global-token update of step 9. Padded query rows are dropped from the output.
  Equivalently, without any padding: a query at (y, x) sees the window keys of its tile
  that lie in ``[0, nx) x [0, ny)``, P is a softmax over the nx*ny real patches, and the
  global tokens attend to the nx*ny real patch outputs.
* nglo > 1: every global token is a separate key/value for every patch query (``S_g``
  has nglo columns, ``A_g @ v_g`` sums over all global tokens); in step 9 each global
  query attends over all nglo global keys (``q_g @ k_g^T``, all pairs) and all real patch
  outputs, ``g_next = p[..., nglo:] @ out + p[..., :nglo] @ v_g``.

For ``nx == ny``, ``nx % w == 0``, ``nglo <= 1`` the two modes perform the same
floating-point operations on the same values and agree bit for bit (checked by
``make_vision_fixtures.py``).

Other restrictions (both modes): ``w >= 1``; ``rpe`` needs ``w >= 2`` (at w = 1,
``wp = int(0.5*w) = 0`` differs from ``side = 1`` and the published shapes break, spec
3.5 / 7.15); ``qk_scale`` is not a parameter: the scale is always ``dh**-0.5`` (the
published default ``qk_scale=None``, which MsViT uses). Dropout is not modelled
(inference only). Everything runs in the module's dtype; the softmaxes run in at least
fp32 (so a ``.double()`` copy is a genuine float64 run).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def _softmax_fp32(x, dim):
    """Softmax in at least fp32 (fp64 stays fp64 so that .double() runs are exact)."""
    dtype = torch.promote_types(x.dtype, torch.float32)
    return torch.softmax(x.to(dtype), dim=dim)


def rpe_table_rows(w):
    """Rows of ``local_relative_position_bias_table``: 2(w+wp-1)(2wp+w+1)+1, wp = int(0.5w)."""
    wp = int(0.5 * w)
    return 2 * (w + wp - 1) * (2 * wp + w + 1) + 1


def relative_position_index_2d(w):
    """The published colliding RPE index (spec 3.5), int64 of shape [w*w, (w+2wp)^2].

    Row ``qy*w + qx`` (query offset inside its block), column ``a*T + b`` (key offset in the
    T x T tile, T = w + 2wp): ``ry*(2wp+w) + rx`` with ``ry = qy - (a-wp) + wp + w - 1`` and
    ``rx = qx - (b-wp) + wp + w - 1``. The multiplier 2wp+w is smaller than the range
    2(w+wp)-1 of rx, so different offsets share entries; this is kept on purpose.
    """
    wp = int(0.5 * w)
    T = w + 2 * wp
    qy, qx = torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")
    a, b = torch.meshgrid(torch.arange(T), torch.arange(T), indexing="ij")
    qy, qx, a, b = qy.reshape(-1, 1), qx.reshape(-1, 1), a.reshape(1, -1), b.reshape(1, -1)
    ry = qy - (a - wp) + wp + w - 1
    rx = qx - (b - wp) + wp + w - 1
    return (ry * (2 * wp + w) + rx).to(torch.int64)


class ReferenceAttentionLS2D(nn.Module):
    """Long-short attention of ViL-LS (spec section 3).

    Args:
        dim: C; ``head_dim = C // num_heads`` (C must be divisible by num_heads).
        num_heads: nh.
        qkv_bias: bias of the fused ``qkv`` Linear (MsViT passes True).
        rpe: relative position bias on the window scores (MsViT: ``not ape``, True).
        nglo: number of global tokens in front of the patches.
        dp_rank: r, dynamic projections per head; 0 disables them.
        w: block side length (>= 1).
        generalized: default mode of ``forward`` (see the module docstring).
    """

    def __init__(self, dim, num_heads=8, qkv_bias=False, rpe=False, nglo=1, dp_rank=2, w=2,
                 generalized=False):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError("dim must be divisible by num_heads")
        if w < 1:
            raise ValueError("w must be >= 1")
        if rpe and int(0.5 * w) != max(w // 2, 1):
            raise ValueError("rpe needs w >= 2: at w = 1, wp = int(0.5*w) = 0 differs from "
                             "side = max(w//2, 1) = 1 and the published shapes break (spec 3.5)")
        if nglo < 0 or dp_rank < 0:
            raise ValueError("nglo and dp_rank must be >= 0")
        self.dim = int(dim)
        self.num_heads = int(num_heads)
        self.head_dim = self.dim // self.num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv_bias = bool(qkv_bias)
        self.rpe = bool(rpe)
        self.nglo = int(nglo)
        self.dp_rank = int(dp_rank)
        self.w = int(w)
        self.generalized = bool(generalized)

        self.qkv = nn.Linear(self.dim, 3 * self.dim, bias=self.qkv_bias)
        self.proj = nn.Linear(self.dim, self.dim)
        if self.dp_rank > 0:
            self.to_dynamic_projection = nn.Linear(self.dim, self.num_heads * self.dp_rank)
        self.dual_ln_dp = nn.LayerNorm(self.dim, eps=1e-5)
        self.dual_ln_full = nn.LayerNorm(self.dim, eps=1e-5)
        if self.rpe:
            self.local_relative_position_bias_table = nn.Parameter(
                torch.zeros(rpe_table_rows(self.w), self.num_heads))
            nn.init.trunc_normal_(self.local_relative_position_bias_table, std=0.02)
            self.register_buffer("relative_position_index", relative_position_index_2d(self.w))

    # -- helpers -----------------------------------------------------------------
    def _split(self, t):
        """(B, n, C) -> (B, nh, n, dh); feature f belongs to head f // dh."""
        b, n, _ = t.shape
        return t.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)

    def _merge(self, t):
        """(B, nh, n, dh) -> (B, n, C)."""
        b, h, n, d = t.shape
        return t.transpose(1, 2).reshape(b, n, h * d)

    def _group(self, t, Hp, Wp):
        """(B, nh, Hp*Wp, d) token order -> (B, nh, nby, nbx, w*w, d), in-block qy*w + qx."""
        B, H, _, d = t.shape
        w = self.w
        t = t.view(B, H, Hp // w, w, Wp // w, w, d).permute(0, 1, 2, 4, 3, 5, 6)
        return t.reshape(B, H, Hp // w, Wp // w, w * w, d)

    def _ungroup(self, t, Hp, Wp):
        """Inverse of ``_group``."""
        B, H, nby, nbx, _, d = t.shape
        w = self.w
        t = t.view(B, H, nby, nbx, w, w, d).permute(0, 1, 2, 4, 3, 5, 6)
        return t.reshape(B, H, Hp * Wp, d)

    def _tiles(self, t, Hp, Wp):
        """(B, nh, Hp*Wp, dh) -> (B, nh, nby, nbx, dh, T*T): every block's key tile, a*T+b."""
        B, H, _, d = t.shape
        w = self.w
        side = max(w // 2, 1)
        T = w + 2 * side
        g = t.view(B, H, Hp, Wp, d)
        g = F.pad(g, (0, 0, side, side, side, side))          # zero border of `side` patches
        g = g.unfold(2, T, w).unfold(3, T, w)                 # (B, H, nby, nbx, d, T_a, T_b)
        return g.reshape(B, H, Hp // w, Wp // w, d, T * T)

    def rpe_bias(self):
        """(nh, w*w, T*T) bias from the table and the stored index."""
        w, T2 = self.w, self.relative_position_index.shape[1]
        idx = self.relative_position_index.reshape(-1)
        bias = self.local_relative_position_bias_table[idx]   # (w*w*T2, nh)
        return bias.view(w * w, T2, self.num_heads).permute(2, 0, 1)

    # -- forward -------------------------------------------------------------------
    def forward(self, x, nx, ny=None, generalized=None):
        """x: (B, nglo + nx*ny, C), patches row-major (row*ny + col); nx rows, ny columns.

        Returns y: (B, nglo + nx*ny, C), global tokens first.
        """
        gen = self.generalized if generalized is None else bool(generalized)
        ny = nx if ny is None else ny
        nx, ny = int(nx), int(ny)
        B, N, C = x.shape
        H, dh, r, w, nglo = self.num_heads, self.head_dim, self.dp_rank, self.w, self.nglo
        if C != self.dim:
            raise ValueError(f"x has {C} channels, the module {self.dim}")
        if N != nglo + nx * ny:
            raise ValueError(f"x has {N} tokens, expected nglo + nx*ny = {nglo + nx * ny}")
        if not gen:
            if nx != ny:
                raise ValueError("published mode needs a square grid nx == ny (spec 7.16); "
                                 "use generalized=True")
            if nx % w != 0:
                raise ValueError("published mode needs nx % w == 0; use generalized=True")
            if nglo > 1:
                raise ValueError("published mode supports nglo <= 1 only (spec 7.14); "
                                 "use generalized=True")
        side = max(w // 2, 1)
        T = w + 2 * side
        Hp = -(-nx // w) * w                                   # padded rows (bottom)
        Wp = -(-ny // w) * w                                   # padded columns (right)
        Np = Hp * Wp
        padded = (Hp, Wp) != (nx, ny)

        # Pad the grid with zero patches at the bottom and on the right (generalised mode).
        if padded:
            grid = x[:, nglo:].reshape(B, nx, ny, C)
            grid = F.pad(grid, (0, 0, 0, Wp - ny, 0, Hp - nx))
            x = torch.cat([x[:, :nglo], grid.reshape(B, Np, C)], dim=1)
        valid = torch.zeros(Hp, Wp, dtype=torch.bool, device=x.device)
        valid[:nx, :ny] = True                                 # real patches
        pad_tok = ~valid.reshape(Np)                           # (Np,) padded patch tokens

        # Steps 1-3.
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q = q * self.scale
        k = self.dual_ln_full(k)
        v = self.dual_ln_full(v)
        q, k, v = self._split(q), self._split(k), self._split(v)   # (B, H, nglo+Np, dh)
        q_g, k_g, v_g = q[:, :, :nglo], k[:, :, :nglo], v[:, :, :nglo]
        q, k, v = q[:, :, nglo:], k[:, :, nglo:], v[:, :, nglo:]

        scores = []
        # Step 4: dynamic projection from the raw patches.
        if r > 0:
            S = self.to_dynamic_projection(x[:, nglo:])              # (B, Np, H*r)
            S = S.transpose(1, 2).reshape(B, H, r, Np)
            if gen:
                S = S.masked_fill(pad_tok, float("-inf"))
            P = _softmax_fp32(S, dim=-1).to(k.dtype)                 # over the patches
            k_lms = self._split(self.dual_ln_dp(self._merge(P @ k)))  # (B, H, r, dh)
            v_lms = self._split(self.dual_ln_dp(self._merge(P @ v)))
            scores.append(q @ k_lms.transpose(-1, -2))               # (B, H, Np, r)

        # Step 5: window scores, grouped per block.
        qb = self._group(q, Hp, Wp)                                  # (B, H, nby, nbx, w*w, dh)
        S_win = torch.einsum("bhyxqd,bhyxdk->bhyxqk", qb, self._tiles(k, Hp, Wp))
        if gen:
            vg = F.pad(valid, (side, side, side, side))              # False outside the grid
            vt = vg.unfold(0, T, w).unfold(1, T, w)                  # (nby, nbx, T, T)
            keymask = ~vt.reshape(Hp // w, Wp // w, 1, T * T)
            S_win = S_win.masked_fill(keymask, float("-inf"))
        else:
            # The published four border fills (square grid, nx % w == 0).
            S_win = S_win.contiguous()
            s6 = S_win.view(*S_win.shape[:-1], T, T)
            s6[:, :, 0, :, :, :side, :] = float("-inf")
            s6[:, :, -1, :, :, T - side:, :] = float("-inf")
            s6[:, :, :, 0, :, :, :side] = float("-inf")
            s6[:, :, :, -1, :, :, T - side:] = float("-inf")
        if self.rpe:
            S_win = S_win + self.rpe_bias()[None, :, None, None]     # after the -inf fill
        scores.append(self._ungroup(S_win, Hp, Wp))                  # (B, H, Np, T*T)

        # Step 6: global keys.
        if nglo > 0:
            scores.append(q @ k_g.transpose(-1, -2))                 # (B, H, Np, nglo)

        # Step 7: one joint fp32 softmax.
        A = _softmax_fp32(torch.cat(scores, dim=-1), dim=-1).to(v.dtype)
        A_dp, A_win, A_g = A[..., :r], A[..., r:r + T * T], A[..., r + T * T:]

        # Step 8.
        Ab = self._group(A_win, Hp, Wp)
        out = torch.einsum("bhyxqk,bhyxdk->bhyxqd", Ab, self._tiles(v, Hp, Wp))
        out = self._ungroup(out, Hp, Wp)                             # (B, H, Np, dh)
        if r > 0:
            out = out + A_dp @ v_lms
        if nglo > 0:
            out = out + (A_g @ v_g if gen else A_g * v_g)

        # Step 9: global-token update over the patch outputs and the global k, v.
        if nglo > 0:
            s_tok = q_g @ out.transpose(-1, -2)                      # (B, H, nglo, Np)
            if gen:
                s_tok = s_tok.masked_fill(pad_tok, float("-inf"))
            p = _softmax_fp32(torch.cat([q_g @ k_g.transpose(-1, -2), s_tok], dim=-1),
                              dim=-1).to(v.dtype)
            g_next = p[..., nglo:] @ out + p[..., :nglo] @ v_g
        else:
            g_next = out[:, :, :0]

        # Drop the padded query rows.
        if padded:
            out = out.view(B, H, Hp, Wp, dh)[:, :, :nx, :ny].reshape(B, H, nx * ny, dh)

        # Step 10.
        return self.proj(self._merge(torch.cat([g_next, out], dim=2)))
