#pragma once
// An independent float64 oracle of the 2D Transformer-LS attention (spec §3.3), one query and
// one key at a time with an explicit 2D visibility rule and the published RPE index formula.
// Generalised as the library documents it: rows × cols grids, border blocks that are partial
// (a grid padded with masked patches), any number of global tokens.
#include <cmath>
#include <limits>
#include <vector>

#include "oracle_lra.hpp"  // Matrix, linear, layer_norm, dot_head

namespace oracle {

struct VisionConfig {
  int heads, dim, w, rank, globals;
  bool rpe, qkv_bias;
};

struct VisionWeights {
  Matrix Wqkv, Wp, Wproj, table;  // table [rows][heads]
  std::vector<double> bqkv, bp, bproj, ln_dp_w, ln_dp_b, ln_full_w, ln_full_b;
};

// x [G + rows·cols][C]; returns the same shape.
inline Matrix vision_forward(const VisionConfig& c, const VisionWeights& W, const Matrix& x, int rows, int cols) {
  const int C = c.dim, nh = c.heads, dh = C / nh, G = c.globals, N = G + rows * cols, w = c.w, r = c.rank;
  const int side = std::max(w / 2, 1), wp = w / 2;
  const double inf = std::numeric_limits<double>::infinity();
  Matrix q(N), k(N), v(N);
  for (int t = 0; t < N; ++t) {
    const auto qkv = linear(x[t], W.Wqkv, c.qkv_bias ? W.bqkv : std::vector<double>(3 * C, 0.0));
    q[t].assign(qkv.begin(), qkv.begin() + C);
    for (double& e : q[t]) e /= std::sqrt(double(dh));
    k[t] = layer_norm(std::vector<double>(qkv.begin() + C, qkv.begin() + 2 * C), W.ln_full_w, W.ln_full_b);
    v[t] = layer_norm(std::vector<double>(qkv.begin() + 2 * C, qkv.end()), W.ln_full_w, W.ln_full_b);
  }
  // Dynamic projection over the patches, then LN_dp.
  Matrix kl(r, std::vector<double>(C, 0.0)), vl(r, std::vector<double>(C, 0.0));
  if (r > 0) {
    Matrix logits;
    for (int t = G; t < N; ++t) logits.push_back(linear(x[t], W.Wp, W.bp));
    for (int h = 0; h < nh; ++h)
      for (int j = 0; j < r; ++j) {
        double top = -inf, total = 0;
        for (const auto& s : logits) top = std::max(top, s[h * r + j]);
        for (const auto& s : logits) total += std::exp(s[h * r + j] - top);
        for (int p = 0; p < rows * cols; ++p) {
          const double weight = std::exp(logits[p][h * r + j] - top) / total;
          for (int f = 0; f < dh; ++f) {
            kl[j][h * dh + f] += weight * k[G + p][h * dh + f];
            vl[j][h * dh + f] += weight * v[G + p][h * dh + f];
          }
        }
      }
    for (int j = 0; j < r; ++j) {
      kl[j] = layer_norm(kl[j], W.ln_dp_w, W.ln_dp_b);
      vl[j] = layer_norm(vl[j], W.ln_dp_w, W.ln_dp_b);
    }
  }
  Matrix out(N, std::vector<double>(C, 0.0));
  for (int h = 0; h < nh; ++h) {
    for (int y = 0; y < rows; ++y)
      for (int xq = 0; xq < cols; ++xq) {
        // w <= 0: no window, only the compressed and the global keys.
        const int t = G + y * cols + xq, gy = w > 0 ? y / w : 0, gx = w > 0 ? xq / w : 0;
        std::vector<double> scores;
        std::vector<const std::vector<double>*> values;
        for (int j = 0; j < r; ++j) {
          scores.push_back(dot_head(q[t], kl[j], h, dh));
          values.push_back(&vl[j]);
        }
        for (int ky = 0; ky < rows; ++ky)
          for (int kx = 0; kx < cols; ++kx) {
            const bool visible = w > 0 && ky >= gy * w - side && ky < gy * w + w + side && kx >= gx * w - side &&
                                 kx < gx * w + w + side;
            if (!visible) continue;
            const int s = G + ky * cols + kx;
            double score = dot_head(q[t], k[s], h, dh);
            if (c.rpe) {
              const int a = ky - (gy * w - side), b = kx - (gx * w - side), qy = y - gy * w, qx = xq - gx * w;
              const int ry = qy - (a - wp) + wp + w - 1, rx = qx - (b - wp) + wp + w - 1;
              score += W.table[ry * (2 * wp + w) + rx][h];
            }
            scores.push_back(score);
            values.push_back(&v[s]);
          }
        for (int g = 0; g < G; ++g) {
          scores.push_back(dot_head(q[t], k[g], h, dh));
          values.push_back(&v[g]);
        }
        double top = -inf, total = 0;
        for (double s : scores) top = std::max(top, s);
        for (double s : scores) total += std::exp(s - top);
        for (size_t i = 0; i < scores.size(); ++i)
          for (int f = 0; f < dh; ++f) out[t][h * dh + f] += std::exp(scores[i] - top) / total * (*values[i])[h * dh + f];
      }
    // Global tokens: over all global keys and the patches' outputs (keys and values).
    for (int g = 0; g < G; ++g) {
      std::vector<double> scores;
      for (int g2 = 0; g2 < G; ++g2) scores.push_back(dot_head(q[g], k[g2], h, dh));
      for (int p = G; p < N; ++p) scores.push_back(dot_head(q[g], out[p], h, dh));
      double top = -inf, total = 0;
      for (double s : scores) top = std::max(top, s);
      for (double s : scores) total += std::exp(s - top);
      for (int i = 0; i < N; ++i) {
        const auto& value = i < G ? v[i] : out[i];
        for (int f = 0; f < dh; ++f) out[g][h * dh + f] += std::exp(scores[i] - top) / total * value[h * dh + f];
      }
    }
  }
  for (auto& row : out) row = linear(row, W.Wproj, W.bproj);
  return out;
}

}  // namespace oracle
