// Writes small seed inputs for the fuzz targets into the directory given as the argument: one
// checkpoint per model family (random weights, the family's hyperparameters and a `variant`
// key in __metadata__), including what the test fixtures lack (LS heads, a causal layer with an
// empty cache, a language model whose segment needs padding), and files with every dtype and
// rank 0 and empty tensors for the reader. Nothing binary is committed: CTest runs this first.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "lsattn/lsattn.hpp"
#include "lsattn/io/parameters.hpp"
#include "lsattn/io/safetensors.hpp"

namespace {

using lsattn::index_t;
using lsattn::Shape;
using lsattn::Tensor;
using lsattn::io::SafeTensorsWriter;
using Metadata = std::map<std::string, std::string>;

void write(const std::filesystem::path& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

template <class Weights, class Config>
void checkpoint(const std::filesystem::path& path, const Config& config, const Metadata& metadata, std::uint64_t seed) {
  SafeTensorsWriter writer;
  for (const auto& [key, value] : metadata) writer.set_metadata(key, value);
  lsattn::io::save_parameters(writer, Weights::random(config, seed), config);
  write(path, writer.to_bytes());
}

// A header written by hand: the writer cannot store BOOL.
std::vector<std::uint8_t> raw(const std::string& header, const std::vector<std::uint8_t>& data) {
  std::vector<std::uint8_t> bytes;
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<std::uint8_t>(header.size() >> (8 * i)));
  bytes.insert(bytes.end(), header.begin(), header.end());
  bytes.insert(bytes.end(), data.begin(), data.end());
  return bytes;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: fuzz_make_seeds DIRECTORY\n";
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);
  namespace lra = lsattn::models::lra;
  namespace causal = lsattn::models::causal;
  namespace vision = lsattn::models::vision;
  namespace ls_heads = lsattn::models::ls_heads;

  const lra::Config lra_config{.num_head = 2, .head_dim = 4, .transformer_dim = 8, .window_size = 2,
                               .num_landmarks = 2, .cls_pooling = true};
  checkpoint<lra::Weights<float>>(dir / "lra_cls_mask.safetensors", lra_config,
                                  {{"variant", "lra"}, {"num_head", "2"}, {"head_dim", "4"}, {"transformer_dim", "8"},
                                   {"window_size", "2"}, {"num_landmarks", "2"}, {"pooling_mode", "CLS"},
                                   {"fuzz_mask", "true"}, {"fuzz_batch", "2"}, {"fuzz_length", "6"}},
                                  1);

  causal::Config causal_config{.n_head = 2, .d_model = 8, .chunk_size = 2, .chunk_rank = 1, .window_len = 4,
                               .use_bias = true};
  checkpoint<causal::Weights<float>>(dir / "causal_empty_cache.safetensors", causal_config,
                                     {{"variant", "causal"}, {"n_head", "2"}, {"d_model", "8"}, {"chunk_size", "2"},
                                      {"chunk_rank", "1"}, {"window_len", "4"}, {"use_bias", "true"},
                                      {"fuzz_cache", "0"}, {"fuzz_length", "5"}},
                                     2);

  causal::LmConfig lm_config{.vocab_size = 5, .d_model = 8, .n_head = 2, .d_inner = 8, .n_layer = 1, .mem_len = 2,
                             .chunk_size = 2, .chunk_rank = 1, .window_len = 2};
  checkpoint<causal::LmWeights<float>>(dir / "lm_padding.safetensors", lm_config,
                                       {{"variant", "lm"}, {"vocab_size", "5"}, {"d_model", "8"}, {"n_head", "2"},
                                        {"d_inner", "8"}, {"n_layer", "1"}, {"mem_len", "2"}, {"chunk_size", "2"},
                                        {"chunk_rank", "1"}, {"window_len", "2"}, {"fuzz_length", "3"}},
                                       3);

  vision::Config vision_config{.dim = 8, .num_heads = 2, .w = 2, .dp_rank = 1, .nglo = 0, .rpe = false,
                               .qkv_bias = false};
  checkpoint<vision::Weights<float>>(dir / "vision_rect.safetensors", vision_config,
                                     {{"variant", "vision"}, {"dim", "8"}, {"num_heads", "2"}, {"w", "2"},
                                      {"dp_rank", "1"}, {"nglo", "0"}, {"rpe", "false"}, {"qkv_bias", "false"},
                                      {"nx", "3"}, {"ny", "5"}},
                                     4);

  ls_heads::Config heads_config{.dim = 8, .num_heads = 2, .local_heads = {1}, .window = 3, .causal = true};
  checkpoint<ls_heads::Weights<float>>(dir / "ls_heads.safetensors", heads_config,
                                       {{"variant", "ls-heads"}, {"dim", "8"}, {"num_heads", "2"}, {"window", "3"},
                                        {"local_heads", "1"}, {"causal", "true"}, {"fuzz_mask", "true"}},
                                       5);

  // For the reader: every dtype, rank 0, an empty tensor, metadata.
  SafeTensorsWriter dtypes;
  dtypes.set_metadata("note", "every dtype");
  const Tensor<float, 2> small(Shape<2>{2, 3}, std::vector<float>{1.0f, -2.5f, 65504.0f, 1e-8f, 0.0f, -0.0f});
  dtypes.add("f32", small);
  dtypes.add("f16", small, lsattn::io::dtype::f16);
  dtypes.add("bf16", small, lsattn::io::dtype::bf16);
  dtypes.add("i64", Tensor<std::int64_t, 1>(Shape<1>{3}, std::vector<std::int64_t>{-1, 0, INT64_MAX}));
  dtypes.add("scalar", Tensor<float, 0>(Shape<0>{}, std::vector<float>{3.0f}));
  dtypes.add("empty", Tensor<float, 3>(Shape<3>{2, 0, 4}));
  write(dir / "dtypes.safetensors", dtypes.to_bytes());
  write(dir / "bool.safetensors",
        raw(R"({"mask":{"dtype":"BOOL","shape":[2,2],"data_offsets":[0,4]},"__metadata__":{"k":"v"}})", {0, 1, 1, 0}));
  return 0;
}
