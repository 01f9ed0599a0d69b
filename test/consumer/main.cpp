// A consumer of the installed (or add_subdirectory) lsattn: loads a golden checkpoint through
// the public headers, runs the layer and compares with the PyTorch reference's output.
#include <lsattn/lsattn.hpp>
#include <lsattn/models/lra_checkpoint.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: consumer <fixture directory with weights/input/expected.safetensors>\n");
    return 2;
  }
  namespace lra = lsattn::models::lra;
  const std::string dir = std::string(argv[1]) + "/";
  try {
    const auto weights = lsattn::io::SafeTensorsFile::open(dir + "weights.safetensors");
    const auto input = lsattn::io::SafeTensorsFile::open(dir + "input.safetensors");
    const auto expected = lsattn::io::SafeTensorsFile::open(dir + "expected.safetensors").load_float<3>("output.y");
    const lra::Config config = lra::config_from(lsattn::io::Hyperparameters(weights.metadata(), weights.source()));
    const lra::AttentionLS<lsattn::cpu, float> layer(config, lra::load_weights(weights, config));
    const auto x = input.load_float<3>("input.x");
    const auto mask = input.load_numeric<2>("input.mask");
    const auto y = layer.forward(x.view(), mask.view());
    if (y.shape() != expected.shape()) {
      std::fprintf(stderr, "consumer: output %s, expected %s\n", lsattn::to_string(y.shape()).c_str(),
                   lsattn::to_string(expected.shape()).c_str());
      return 1;
    }
    double scale = 1e-6, worst = 0;
    for (float v : expected.values()) scale = std::max(scale, static_cast<double>(std::abs(v)));
    for (lsattn::index_t i = 0; i < y.size(); ++i)
      worst = std::max(worst, static_cast<double>(std::abs(y.values()[i] - expected.values()[i])));
    if (!(worst / scale < 1e-5)) {
      std::fprintf(stderr, "consumer: largest difference from the reference %.3e (relative %.3e)\n", worst, worst / scale);
      return 1;
    }
    std::printf("consumer OK: lsattn %s, output %s matches the reference to %.1e relative\n", lsattn::version,
                lsattn::to_string(y.shape()).c_str(), worst / scale);
  } catch (const lsattn::error& e) {
    std::fprintf(stderr, "consumer: %s\n", e.what());
    return 1;
  }
  return 0;
}
