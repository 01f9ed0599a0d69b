#pragma once
// An independent, obviously-correct float64 oracle of the bidirectional Transformer-LS layer,
// written from spec §1.3: dense O(L²) scores with an explicit visibility matrix, the sequence
// padded to a multiple of w with masked tokens (the spec's equivalence for L % w != 0).
// It shares no code with the library on purpose.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace oracle {

using Matrix = std::vector<std::vector<double>>;  // [row][col]

struct LraConfig {
  int heads, head_dim, window, rank;
  bool cls_pooling = false;
  bool normalize = true;  // false: skip both LayerNorms (the PlainCombiner)
};

struct LraWeights {  // Linear weights [out][in]
  Matrix Wq, Wk, Wv, Wo, Wp;
  std::vector<double> bq, bk, bv, bo, bp, ln_s_w, ln_s_b, ln_l_w, ln_l_b;
};

inline std::vector<double> linear(const std::vector<double>& x, const Matrix& W, const std::vector<double>& b) {
  std::vector<double> y(W.size());
  for (size_t o = 0; o < W.size(); ++o) {
    double sum = b[o];
    for (size_t i = 0; i < x.size(); ++i) sum += W[o][i] * x[i];
    y[o] = sum;
  }
  return y;
}

inline std::vector<double> layer_norm(const std::vector<double>& x, const std::vector<double>& w, const std::vector<double>& b) {
  double mean = 0, var = 0;
  for (double v : x) mean += v;
  mean /= x.size();
  for (double v : x) var += (v - mean) * (v - mean);
  var /= x.size();
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = (x[i] - mean) / std::sqrt(var + 1e-5) * w[i] + b[i];
  return y;
}

inline double dot_head(const std::vector<double>& a, const std::vector<double>& b, int h, int dh) {
  double sum = 0;
  for (int i = 0; i < dh; ++i) sum += a[h * dh + i] * b[h * dh + i];
  return sum;
}

// One sequence: x [L][D], valid [L], optional cls [D]. Returns [L(+1)][D], cls row first.
inline Matrix lra_forward(const LraConfig& c, const LraWeights& W, Matrix x, std::vector<bool> valid,
                          const std::vector<double>* cls_embed) {
  const int nh = c.heads, dh = c.head_dim, D = nh * dh, w = c.window, r = c.rank;
  std::vector<double> cls;
  bool has_cls = cls_embed != nullptr;
  if (has_cls) cls = *cls_embed;
  if (c.cls_pooling) {  // step 0
    cls = x[0];
    has_cls = true;
    x.erase(x.begin());
    valid.erase(valid.begin());
  }
  const int L = static_cast<int>(x.size());
  const int Lp = w > 0 ? (L + w - 1) / w * w : L;  // pad with masked zero tokens
  x.resize(Lp, std::vector<double>(D, 0.0));
  valid.resize(Lp, false);
  const double inf = std::numeric_limits<double>::infinity();
  auto ln = [&](const std::vector<double>& v, bool global) {
    if (!c.normalize) return v;
    return global ? layer_norm(v, W.ln_s_w, W.ln_s_b) : layer_norm(v, W.ln_l_w, W.ln_l_b);
  };

  Matrix Q(Lp), K(Lp), V(Lp);
  for (int t = 0; t < Lp; ++t) {
    Q[t] = linear(x[t], W.Wq, W.bq);
    for (double& q : Q[t]) q /= std::sqrt(double(dh));
    K[t] = ln(linear(x[t], W.Wk, W.bk), false);
    V[t] = ln(linear(x[t], W.Wv, W.bv), false);
  }
  // Global keys: [cls (raw)] + landmarks, then the global LN over D.
  Matrix Kg, Vg;
  std::vector<double> kcls, vcls, qcls;
  if (has_cls) {
    qcls = linear(cls, W.Wq, W.bq);
    for (double& q : qcls) q /= std::sqrt(double(dh));
    kcls = linear(cls, W.Wk, W.bk);
    vcls = linear(cls, W.Wv, W.bv);
    Kg.push_back(kcls);
    Vg.push_back(vcls);
  }
  if (r > 0) {
    Matrix S(Lp);
    for (int t = 0; t < Lp; ++t) S[t] = linear(x[t], W.Wp, W.bp);
    for (int j = 0; j < r; ++j) {
      Kg.emplace_back(D, 0.0);
      Vg.emplace_back(D, 0.0);
    }
    for (int h = 0; h < nh; ++h) {
      for (int j = 0; j < r; ++j) {
        const int o = h * r + j;
        double m = -inf, z = 0;
        for (int t = 0; t < Lp; ++t)
          if (valid[t]) m = std::max(m, S[t][o]);
        for (int t = 0; t < Lp; ++t)
          if (valid[t]) z += std::exp(S[t][o] - m);
        for (int t = 0; t < Lp; ++t) {
          const double p = valid[t] ? std::exp(S[t][o] - m) / z : 0.0;
          for (int i = 0; i < dh; ++i) {
            Kg[Kg.size() - r + j][h * dh + i] += p * K[t][h * dh + i];
            Vg[Vg.size() - r + j][h * dh + i] += p * V[t][h * dh + i];
          }
        }
      }
    }
  }
  for (auto& k : Kg) k = ln(k, true);
  for (auto& v : Vg) v = ln(v, true);

  // Explicit visibility of full-resolution key s for query t (spec §1.3 step 8).
  const int ext = std::max(w / 2, 1);
  auto visible = [&](int t, int s) {
    if (w <= 0) return r == 0 && s == t;  // self-only degenerate case (no padding mask there)
    const int g = t / w;
    return s >= g * w - ext && s < g * w + w + ext && valid[s];
  };

  Matrix C(Lp, std::vector<double>(D, 0.0));
  for (int h = 0; h < nh; ++h) {
    for (int t = 0; t < Lp; ++t) {
      if (!valid[t]) continue;  // padded query rows: probabilities 0
      std::vector<double> scores;
      for (auto& k : Kg) scores.push_back(dot_head(Q[t], k, h, dh));
      for (int s = 0; s < Lp; ++s) scores.push_back(visible(t, s) ? dot_head(Q[t], K[s], h, dh) : -inf);
      double m = -inf, z = 0;
      for (double s : scores) m = std::max(m, s);
      for (double s : scores) z += std::exp(s - m);
      for (size_t j = 0; j < scores.size(); ++j) {
        const double p = std::exp(scores[j] - m) / z;
        const auto& v = j < Kg.size() ? Vg[j] : V[j - Kg.size()];
        for (int i = 0; i < dh; ++i) C[t][h * dh + i] += p * v[h * dh + i];
      }
    }
  }
  C.resize(L);
  if (has_cls) {  // step 11: cls attends to its raw self k/v and the tokens' contexts
    std::vector<double> out(D, 0.0);
    for (int h = 0; h < nh; ++h) {
      std::vector<double> scores{dot_head(qcls, kcls, h, dh)};
      for (int t = 0; t < L; ++t) scores.push_back(valid[t] ? dot_head(qcls, C[t], h, dh) : -inf);
      double m = -inf, z = 0;
      for (double s : scores) m = std::max(m, s);
      for (double s : scores) z += std::exp(s - m);
      for (size_t j = 0; j < scores.size(); ++j) {
        const double p = std::exp(scores[j] - m) / z;
        const auto& v = j == 0 ? vcls : C[j - 1];
        for (int i = 0; i < dh; ++i) out[h * dh + i] += p * v[h * dh + i];
      }
    }
    C.insert(C.begin(), out);
  }
  for (auto& row : C) row = linear(row, W.Wo, W.bo);
  return C;
}

}  // namespace oracle
