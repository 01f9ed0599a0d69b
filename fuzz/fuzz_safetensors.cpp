// libFuzzer target: bytes → SafeTensorsFile::parse → every tensor loaded in every way the API
// allows (float at every rank, with the right and a wrong expected shape, int64), then written
// back with SafeTensorsWriter and parsed again, which must give the same tensors and metadata.
// lsattn::error is the only acceptable way to refuse an input; anything else is a finding.
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "harness.hpp"
#include "lsattn/io/safetensors.hpp"

namespace {

using lsattn::index_t;
using lsattn::Shape;
using lsattn::Tensor;
using lsattn::io::dtype;
using lsattn::io::SafeTensorsFile;
using lsattn::io::SafeTensorsWriter;

constexpr std::size_t max_rank = 6;

// Bitwise equal, except that any NaN equals any NaN (F16/BF16 NaN payloads may be quieted).
bool same_float(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b);
}

template <std::size_t Rank>
void load_at_rank(const SafeTensorsFile& file, const std::string& name, SafeTensorsWriter& writer, bool& written) {
  const auto& info = file.info(name);
  const bool rank_matches = info.shape.size() == Rank;
  try {
    const Tensor<float, Rank> values = file.load_float<Rank>(name);
    if (!rank_matches) lsattn::fuzz::finding("load_float accepted a tensor of another rank");
    if (static_cast<std::size_t>(values.size()) != (info.data_end - info.data_begin) / lsattn::io::dtype_size(info.type)) {
      lsattn::fuzz::finding("load_float returned a different element count than the data span holds");
    }
    const Tensor<float, Rank> again = file.load_float<Rank>(name, values.shape());
    for (index_t i = 0; i < values.size(); ++i) {
      if (!same_float(values.values()[i], again.values()[i])) lsattn::fuzz::finding("two loads of a tensor differ");
    }
    Shape<Rank> wrong = values.shape();
    if constexpr (Rank > 0) {
      wrong[0] += 1;
      try {
        (void)file.load_float<Rank>(name, wrong);
        lsattn::fuzz::finding("load_float accepted a wrong expected shape");
      } catch (const lsattn::error&) {
      }
    }
    if (info.type == dtype::f32 || info.type == dtype::f16 || info.type == dtype::bf16) {
      writer.add(name, values, info.type);
      written = true;
    }
  } catch (const lsattn::error&) {
    // I64 and BOOL may be refused as floats (a BOOL byte other than 0/1 always is); F32, F16
    // and BF16 at their own rank never may.
    const bool floating = info.type == dtype::f32 || info.type == dtype::f16 || info.type == dtype::bf16;
    if (rank_matches && floating) lsattn::fuzz::finding("load_float refused a parsed float tensor");
  }
  try {
    const Tensor<std::int64_t, Rank> values = file.load_int64<Rank>(name);
    if (!rank_matches || (info.type != dtype::i64 && info.type != dtype::boolean)) {
      lsattn::fuzz::finding("load_int64 accepted a tensor of another rank or a float dtype");
    }
    if (!written) {
      writer.add(name, values);
      written = true;
    }
  } catch (const lsattn::error&) {
    if (rank_matches && info.type == dtype::i64) lsattn::fuzz::finding("load_int64 refused a parsed I64 tensor");
  }
}

template <std::size_t... Ranks>
bool load_every_way(const SafeTensorsFile& file, const std::string& name, SafeTensorsWriter& writer,
                    std::index_sequence<Ranks...>) {
  bool written = false;
  (load_at_rank<Ranks>(file, name, writer, written), ...);
  return written;
}

// The round trip: what the writer makes of the loaded tensors must parse to the same values.
template <std::size_t Rank>
void compare_at_rank(const SafeTensorsFile& original, const SafeTensorsFile& copy, const std::string& name) {
  if (original.info(name).shape.size() != Rank) return;
  const dtype type = original.info(name).type;
  if (type == dtype::i64 || type == dtype::boolean) {
    if (original.load_int64<Rank>(name).values() != copy.load_int64<Rank>(name).values()) {
      lsattn::fuzz::finding("an integer tensor changed in a write/parse round trip");
    }
    return;
  }
  const auto a = original.load_float<Rank>(name), b = copy.load_float<Rank>(name);
  if (a.shape() != b.shape()) lsattn::fuzz::finding("a tensor's shape changed in a write/parse round trip");
  for (index_t i = 0; i < a.size(); ++i) {
    if (!same_float(a.values()[i], b.values()[i])) lsattn::fuzz::finding("a tensor changed in a write/parse round trip");
  }
}

template <std::size_t... Ranks>
void compare(const SafeTensorsFile& original, const SafeTensorsFile& copy, const std::string& name,
             std::index_sequence<Ranks...>) {
  (compare_at_rank<Ranks>(original, copy, name), ...);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  SafeTensorsFile file;
  try {
    file = SafeTensorsFile::parse(std::vector<std::uint8_t>(data, data + size), "fuzz");
  } catch (const lsattn::error&) {
    return 0;
  }

  if (!file.contains("no such tensor")) {
    try {
      (void)file.info("no such tensor");
      lsattn::fuzz::finding("info() found a tensor that contains() denies");
    } catch (const lsattn::error&) {
    }
  }

  SafeTensorsWriter writer;
  for (const auto& [key, value] : file.metadata()) writer.set_metadata(key, value);
  std::vector<std::string> written;  // the tensors that loaded, hence went into the writer
  for (const std::string& name : file.names()) {
    if (!file.contains(name)) lsattn::fuzz::finding("names() lists a tensor that contains() denies");
    if (file.info(name).shape.size() > max_rank) continue;
    if (load_every_way(file, name, writer, std::make_index_sequence<max_rank + 1>{})) written.push_back(name);
  }

  std::vector<std::uint8_t> bytes;
  try {
    bytes = writer.to_bytes();
  } catch (const lsattn::error&) {
    return 0;  // names or metadata that are not valid UTF-8: the writer refuses them, as documented
  }
  const SafeTensorsFile copy = SafeTensorsFile::parse(std::move(bytes), "round trip");  // must not throw
  if (copy.metadata() != file.metadata()) lsattn::fuzz::finding("metadata changed in a write/parse round trip");
  if (copy.names() != written) lsattn::fuzz::finding("the round trip holds other tensors than were written");
  for (const std::string& name : written) {
    if (!copy.contains(name)) lsattn::fuzz::finding("a tensor was lost in a write/parse round trip");
    compare(file, copy, name, std::make_index_sequence<max_rank + 1>{});
  }
  return 0;
}
