#pragma once
// An independent float64 oracle of the causal chunked Transformer-LS layer, written from spec
// §2.4 one query and one key at a time, with explicit visibility rules. Shares no code with
// the library on purpose. The stream is [cache; segment]; chunk c of the cache is compressed
// from raw rows then projected, a chunk of the segment from projected rows (§2.8).
#include <cmath>
#include <limits>
#include <vector>

#include "oracle_lra.hpp"  // Matrix, linear, layer_norm, dot_head

namespace oracle {

struct CausalConfig {
  int heads, d_model, chunk, rank, window;
  bool use_bias;
  int clamp_len, cpos_clamp_len;
};

struct CausalWeights {
  std::vector<double> u, v;  // r_w_bias, r_r_bias flattened to D
  Matrix Wp, Wr, Wrc, Wq, Wk, Wv, Wo;
  std::vector<double> bp, brc, bq, bk, bv, bo;  // projection biases are zeros when !use_bias
  std::vector<double> ln_dproj_w, ln_dproj_b, ln_win_w, ln_win_b;
};

inline std::vector<double> sinusoid(double p, int D) {
  std::vector<double> e(D);
  for (int i = 0; i < D / 2; ++i) {
    const double f = 1.0 / std::pow(10000.0, 2.0 * i / D);
    e[i] = std::sin(p * f);
    e[D / 2 + i] = std::cos(p * f);
  }
  return e;
}

// cache [M][D], segment [L][D]; returns [L][D].
inline Matrix causal_forward(const CausalConfig& c, const CausalWeights& W, const Matrix& cache, const Matrix& segment) {
  const int D = c.d_model, nh = c.heads, dh = D / nh, l = c.chunk, r = c.rank, w = c.window;
  const int M = static_cast<int>(cache.size()), L = static_cast<int>(segment.size());
  Matrix z = cache;
  z.insert(z.end(), segment.begin(), segment.end());
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> zero(D, 0.0);

  // Compressed key/value of chunk ch, rank slot j (full D vectors after LN_dproj).
  auto compressed = [&](int ch, int j, bool want_value) {
    const bool from_cache = ch < M / l;
    std::vector<double> m(D, 0.0);
    for (int hh = 0; hh < nh; ++hh) {
      std::vector<double> logits;
      for (int i = 0; i < l; ++i) logits.push_back(linear(z[ch * l + i], W.Wp, W.bp)[hh * r + j]);
      double top = -inf, total = 0;
      for (double s : logits) top = std::max(top, s);
      for (double s : logits) total += std::exp(s - top);
      for (int i = 0; i < l; ++i) {
        const double p = std::exp(logits[i] - top) / total;
        const auto row = from_cache ? z[ch * l + i]
                                    : linear(z[ch * l + i], want_value ? W.Wv : W.Wk, want_value ? W.bv : W.bk);
        for (int f = 0; f < dh; ++f) m[hh * dh + f] += p * row[hh * dh + f];
      }
    }
    if (from_cache) m = linear(m, want_value ? W.Wv : W.Wk, want_value ? W.bv : W.bk);
    return layer_norm(m, W.ln_dproj_w, W.ln_dproj_b);
  };
  auto clamp = [](int p, int cap) { return cap > 0 && p > cap ? cap : p; };
  auto window_position = [&](int delta) { return linear(sinusoid(clamp(delta, c.clamp_len), D), W.Wr, zero); };
  auto chunk_position = [&](int p) { return linear(sinusoid(clamp(p, c.cpos_clamp_len), D), W.Wrc, W.brc); };

  Matrix context(L, std::vector<double>(D, 0.0));
  for (int t = 0; t < L; ++t) {
    const int tau = M + t, own_chunk = tau / l;
    auto q = linear(segment[t], W.Wq, W.bq);
    for (double& x : q) x /= std::sqrt(double(dh));
    for (int h = 0; h < nh; ++h) {
      std::vector<double> scores;
      std::vector<std::vector<double>> values;
      for (int ch = 0; ch < own_chunk; ++ch) {  // strictly earlier chunks only
        for (int j = 0; j < r; ++j) {
          const int d = own_chunk - ch;
          scores.push_back(dot_head(q, compressed(ch, j, false), h, dh) + dot_head(q, chunk_position(d * r - 1 - j), h, dh));
          values.push_back(compressed(ch, j, true));
        }
      }
      for (int s = tau - w + 1; s <= tau; ++s) {  // exactly the last w positions, itself included
        if (s < 0) continue;                      // before the stream start: does not exist
        const auto k = layer_norm(linear(z[s], W.Wk, W.bk), W.ln_win_w, W.ln_win_b);
        const auto pos = window_position(tau - s);
        double score = 0;
        for (int f = 0; f < dh; ++f)
          score += (q[h * dh + f] + W.u[h * dh + f]) * k[h * dh + f] + (q[h * dh + f] + W.v[h * dh + f]) * pos[h * dh + f];
        scores.push_back(score);
        values.push_back(layer_norm(linear(z[s], W.Wv, W.bv), W.ln_win_w, W.ln_win_b));
      }
      double top = -inf, total = 0;
      for (double s : scores) top = std::max(top, s);
      for (double s : scores) total += std::exp(s - top);
      for (size_t k = 0; k < scores.size(); ++k)
        for (int f = 0; f < dh; ++f) context[t][h * dh + f] += std::exp(scores[k] - top) / total * values[k][h * dh + f];
    }
  }
  for (auto& row : context) row = linear(row, W.Wo, W.bo);
  return context;
}

}  // namespace oracle
