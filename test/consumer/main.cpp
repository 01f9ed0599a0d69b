// Runs one small layer through the public umbrella header.
#include <lsattn/lsattn.hpp>

#include <cmath>
#include <cstdio>

int main() {
  namespace lra = lsattn::models::lra;
  const lra::Config config{2, 4, 8, 4, 2, false, 1};
  const lra::AttentionLS<lsattn::cpu, float> layer(config, lra::Weights<float>::random(config, 1));
  lsattn::Tensor<float, 3> x(lsattn::Shape<3>{1, 10, 8}, 0.25f);
  const auto y = layer.forward(x.view());
  for (float v : y.values())
    if (!std::isfinite(v)) return 1;
  std::printf("consumer OK: lsattn %s, output %s\n", lsattn::version, lsattn::to_string(y.shape()).c_str());
  return 0;
}
