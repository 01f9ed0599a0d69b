#pragma once
// Float64 oracle of the Transformer-LS language model (spec §2.5–2.6), on top of the causal
// layer oracle: embedding·√D, pre-LN or post-LN layers, memory of the last mem_len layer
// inputs taken before each layer, published padding of short segments, tied output embedding.
#include <cmath>
#include <numeric>
#include <vector>

#include "oracle_causal.hpp"

namespace oracle {

struct LmLayer {
  CausalWeights attn;
  std::vector<double> n1w, n1b, n2w, n2b, b1, b2;
  Matrix W1, W2;
};

struct Lm {
  CausalConfig attn;
  int vocab, d_inner, mem_len;
  bool pre_ln, gelu;
  Matrix emb;                // [vocab][D]
  std::vector<double> bias;  // out_emb.bias
  std::vector<LmLayer> layers;
};

// One sequence. caches[layer] is [mem_len][D] and is replaced. Returns log-probs [L][vocab].
inline Matrix lm_forward(const Lm& m, std::vector<long> tokens, std::vector<Matrix>& caches) {
  const int D = m.attn.d_model, L = static_cast<int>(tokens.size()), l = m.attn.chunk;
  const int unit = std::lcm(l, m.attn.window);
  if (L % l != 0) tokens.resize(L + unit - L % unit, 0);
  Matrix h;
  for (long id : tokens) {
    h.push_back(m.emb[id]);
    for (double& x : h.back()) x *= std::sqrt(double(D));
  }
  for (size_t i = 0; i < m.layers.size(); ++i) {
    const auto& layer = m.layers[i];
    Matrix joined = caches[i];
    joined.insert(joined.end(), h.begin(), h.end());
    Matrix next(joined.end() - m.mem_len, joined.end());
    auto ln = [](Matrix x, const std::vector<double>& w, const std::vector<double>& b) {
      for (auto& row : x) row = layer_norm(row, w, b);
      return x;
    };
    auto ff = [&](const Matrix& x) {
      Matrix out;
      for (const auto& row : x) {
        auto hidden = linear(row, layer.W1, layer.b1);
        for (double& v : hidden) v = m.gelu ? 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))) : std::max(v, 0.0);
        out.push_back(linear(hidden, layer.W2, layer.b2));
      }
      return out;
    };
    auto plus = [](Matrix a, const Matrix& b) {
      for (size_t t = 0; t < a.size(); ++t)
        for (size_t f = 0; f < a[t].size(); ++f) a[t][f] += b[t][f];
      return a;
    };
    if (m.pre_ln) {
      const Matrix hn = ln(h, layer.n1w, layer.n1b);
      const Matrix hmid = plus(hn, causal_forward(m.attn, layer.attn, ln(caches[i], layer.n1w, layer.n1b), hn));
      const Matrix hn2 = ln(hmid, layer.n2w, layer.n2b);
      h = plus(hn2, ff(hn2));
    } else {
      const Matrix hmid = ln(plus(h, causal_forward(m.attn, layer.attn, caches[i], h)), layer.n1w, layer.n1b);
      h = ln(plus(hmid, ff(hmid)), layer.n2w, layer.n2b);
    }
    caches[i] = next;
  }
  Matrix out;
  for (int t = 0; t < L; ++t) {
    auto logits = linear(h[t], m.emb, m.bias);
    double top = logits[0], total = 0;
    for (double v : logits) top = std::max(top, v);
    for (double v : logits) total += std::exp(v - top);
    for (double& v : logits) v = v - top - std::log(total);
    out.push_back(logits);
  }
  return out;
}

}  // namespace oracle
