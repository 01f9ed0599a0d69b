// Runs a ViL-LS attention block (the stage-1 shape: 56×56 patches of 4×4 pixels, 96 channels,
// 3 heads, w = 7, r = 8, one global token, RPE) over a real image, and writes, as a PNG, the
// image with what one query patch attends to laid over it. Weights are deterministic random
// ones (no trained checkpoint is needed): the picture shows the attention pattern — the local
// 13×13 tile around the query's 7×7 block plus the diffuse long-range part — not learned semantics.
#include <CLI/CLI.hpp>
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "lsattn/lsattn.hpp"

namespace {

using lsattn::index_t;
using lsattn::Shape;
using lsattn::Tensor;
namespace vision = lsattn::models::vision;

struct Image {
  int width = 0, height = 0;
  std::vector<unsigned char> rgb;
  float at(int x, int y, int channel) const { return rgb[(static_cast<std::size_t>(y) * width + x) * 3 + channel] / 255.0f; }
};

Image load(const std::string& path, int size) {
  int width = 0, height = 0, channels = 0;
  unsigned char* pixels = stbi_load(path.c_str(), &width, &height, &channels, 3);
  if (pixels == nullptr) throw lsattn::error("vision example: cannot read image '" + path + "': " + stbi_failure_reason());
  Image image{size, size, std::vector<unsigned char>(static_cast<std::size_t>(size) * size * 3)};
  for (int y = 0; y < size; ++y)  // nearest-neighbour resize to size × size
    for (int x = 0; x < size; ++x)
      for (int c = 0; c < 3; ++c)
        image.rgb[(static_cast<std::size_t>(y) * size + x) * 3 + c] =
            pixels[(static_cast<std::size_t>(y * height / size) * width + x * width / size) * 3 + c];
  stbi_image_free(pixels);
  return image;
}

// Patch embedding with fixed weights: each patch's pixels through a seeded random projection,
// plus a seeded global token, as (1, 1 + n·n, dim).
Tensor<float, 3> embed(const Image& image, int patch, index_t dim) {
  const int n = image.width / patch, inputs = patch * patch * 3;
  std::mt19937_64 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f / std::sqrt(static_cast<float>(inputs)));
  std::vector<float> projection(static_cast<std::size_t>(inputs * dim));
  for (float& v : projection) v = normal(rng);
  Tensor<float, 3> x(Shape<3>{1, 1 + n * n, dim});
  for (index_t f = 0; f < dim; ++f) x(0, 0, f) = normal(rng);
  for (int py = 0; py < n; ++py)
    for (int px = 0; px < n; ++px)
      for (int i = 0; i < inputs; ++i) {
        const float pixel = image.at(px * patch + i / 3 % patch, py * patch + i / 3 / patch, i % 3) - 0.5f;
        for (index_t f = 0; f < dim; ++f) x(0, 1 + py * n + px, f) += pixel * projection[i * dim + f];
      }
  return x;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"lsattn vision example: what a query patch attends to, as a picture"};
  std::string image_path = "examples/data/scene.png", output = "attention_map.png";
  int row = 30, col = 17, head = 0;
  app.add_option("--image", image_path, "PNG/PPM/JPEG image (resized to 224×224)");
  app.add_option("--output", output, "PNG to write");
  app.add_option("--row", row, "query patch row (0-55)")->check(CLI::Range(0, 55));
  app.add_option("--col", col, "query patch column (0-55)")->check(CLI::Range(0, 55));
  app.add_option("--head", head, "attention head (0-2)")->check(CLI::Range(0, 2));
  CLI11_PARSE(app, argc, argv);

  try {
    const int patch = 4, size = 224, grid = size / patch;
    const vision::Config config{96, 3, 7, 8, 1, true, true, 0};
    const Image image = load(image_path, size);
    const auto x = embed(image, patch, config.dim);
    const vision::AttentionLS2D<lsattn::cpu, float> layer(config, vision::Weights<float>::random(config, 11));
    const auto y = layer.forward(x.view(), grid, grid);
    float global = 0;
    const auto map = layer.attention_map(x.view(), grid, grid, row, col, head, &global);

    // The picture, side by side: the image with the query patch outlined in cyan, and the
    // attention weights as a heat map (black → red → yellow → white), square-root scaled so that
    // the diffuse long-range part shows next to the sharp local tile.
    const float peak = *std::max_element(map.values().begin(), map.values().end());
    const int width = 2 * size;
    std::vector<unsigned char> picture(static_cast<std::size_t>(width) * size * 3);
    for (int py = 0; py < size; ++py)
      for (int px = 0; px < size; ++px) {
        unsigned char* left = &picture[(static_cast<std::size_t>(py) * width + px) * 3];
        unsigned char* right = left + size * 3;
        const bool outline = (py / patch == row && px / patch == col) &&
                             (py % patch == 0 || py % patch == patch - 1 || px % patch == 0 || px % patch == patch - 1);
        for (int c = 0; c < 3; ++c) left[c] = image.rgb[(static_cast<std::size_t>(py) * size + px) * 3 + c];
        if (outline) left[0] = 0, left[1] = left[2] = 255;
        const float heat = std::sqrt(map(py / patch, px / patch) / peak);
        right[0] = static_cast<unsigned char>(255 * std::min(1.0f, 3 * heat));
        right[1] = static_cast<unsigned char>(255 * std::clamp(3 * heat - 1, 0.0f, 1.0f));
        right[2] = static_cast<unsigned char>(255 * std::clamp(3 * heat - 2, 0.0f, 1.0f));
        if (py / patch == row && px / patch == col) right[0] = 0, right[1] = right[2] = 255;
      }
    if (stbi_write_png(output.c_str(), width, size, 3, picture.data(), width * 3) == 0) {
      throw lsattn::error("vision example: cannot write '" + output + "'");
    }
    double in_tile = 0;
    const lsattn::Window2D window = lsattn::Window2D::from(config.attention());
    const auto rows = window.keys(row / config.w, grid), cols = window.keys(col / config.w, grid);
    for (index_t r = rows.begin; r < rows.end; ++r)
      for (index_t c = cols.begin; c < cols.end; ++c) in_tile += map(r, c);
    bool finite = true;
    for (float v : y.values()) finite = finite && std::isfinite(v);
    std::printf("ViL-LS block over %s: %d x %d patches, output %s, finite: %s\n", image_path.c_str(), grid, grid,
                lsattn::to_string(y.shape()).c_str(), finite ? "yes" : "NO");
    std::printf("query patch (%d, %d), head %d: %.1f%% of its attention inside its %lld x %lld tile, %.1f%% on the "
                "global token, the rest spread by the dynamic projection\n",
                row, col, head, 100 * in_tile, static_cast<long long>(rows.size()), static_cast<long long>(cols.size()),
                100.0 * global);
    std::printf("wrote %s\n", output.c_str());
    return finite ? 0 : 1;
  } catch (const lsattn::error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
