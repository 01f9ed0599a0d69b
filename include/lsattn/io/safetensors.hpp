#pragma once
// Reading and writing the safetensors format (https://github.com/huggingface/safetensors):
//
//   [u64 little-endian N][N bytes of UTF-8 JSON header][data section]
//
// The header maps tensor names to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
// relative to the data section) plus an optional "__metadata__" object of strings. Files come
// from outside, so the reader validates everything before any tensor is touched: every error is
// an lsattn::error naming the file, the tensor or field, and the offending values. After
// parse() succeeds, each tensor's bytes lie inside the data section and match its shape, so
// the loaders need no further bounds checks.
#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#if __has_include(<unistd.h>)
#include <fcntl.h>
#include <unistd.h>
#endif

#include "lsattn/core/error.hpp"
#include "lsattn/core/half.hpp"
#include "lsattn/core/tensor.hpp"

namespace lsattn::io {

enum class dtype { f32, f16, bf16, i64, boolean };

// The spelling used in the header.
inline std::string_view dtype_name(dtype type) {
  switch (type) {
    case dtype::f32: return "F32";
    case dtype::f16: return "F16";
    case dtype::bf16: return "BF16";
    case dtype::i64: return "I64";
    case dtype::boolean: return "BOOL";
  }
  return "?";
}

// Bytes per element.
inline std::size_t dtype_size(dtype type) {
  switch (type) {
    case dtype::f32: return 4;
    case dtype::f16: return 2;
    case dtype::bf16: return 2;
    case dtype::i64: return 8;
    case dtype::boolean: return 1;
  }
  return 0;
}

struct TensorInfo {
  std::string name;
  dtype type = dtype::f32;
  std::vector<index_t> shape;
  std::size_t data_begin = 0, data_end = 0;  // byte offsets into the data section
};

namespace detail {

using json = nlohmann::json;

inline constexpr dtype all_dtypes[] = {dtype::f32, dtype::f16, dtype::bf16, dtype::i64, dtype::boolean};
inline constexpr std::string_view metadata_key = "__metadata__";

template <class... Parts>
[[noreturn]] void fail(const std::string& source, Parts&&... parts) {
  throw error(lsattn::detail::concat("lsattn: safetensors file '", source, "': ", std::forward<Parts>(parts)...));
}

inline std::string supported_dtypes() {
  std::string text;
  for (dtype type : all_dtypes) text += (text.empty() ? "" : ", ") + std::string(dtype_name(type));
  return text;
}

inline bool dtype_from_name(std::string_view name, dtype& type) {
  for (dtype candidate : all_dtypes) {
    if (dtype_name(candidate) == name) {
      type = candidate;
      return true;
    }
  }
  return false;
}

inline std::string shape_string(const std::vector<index_t>& shape) {
  std::string text = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + ")";
}

// A short rendering of a header value for error messages. Depth- and length-limited on
// purpose: json::dump recurses, and a hostile header can nest arrays thousands deep.
inline void describe_into(std::string& out, const json& value, int depth) {
  constexpr std::size_t budget = 80;
  if (out.size() > budget) return;
  if (value.is_array() || value.is_object()) {
    const bool array = value.is_array();
    if (depth >= 2 && !value.empty()) {
      out += array ? "[...]" : "{...}";
      return;
    }
    out += array ? '[' : '{';
    bool first = true;
    for (auto it = value.begin(); it != value.end(); ++it) {
      if (!first) out += ", ";
      first = false;
      if (out.size() > budget) {
        out += "...";
        break;
      }
      if (!array) out += json(it.key()).dump(-1, ' ', false, json::error_handler_t::replace) + ": ";
      describe_into(out, *it, depth + 1);
    }
    out += array ? ']' : '}';
  } else {
    out += value.dump(-1, ' ', false, json::error_handler_t::replace);
  }
}

inline std::string describe(const json& value) {
  std::string text;
  describe_into(text, value, 0);
  if (text.size() > 100) text = text.substr(0, 100) + "...";
  return text;
}

// JSON integers that are >= 0; floats (2.0, 1e3) and integers too large for u64 (which
// nlohmann stores as floats) are rejected.
inline bool as_non_negative(const json& value, std::uint64_t& out) {
  if (value.is_number_unsigned()) {
    out = value.get<std::uint64_t>();
    return true;
  }
  if (value.is_number_integer() && value.get<std::int64_t>() >= 0) {
    out = static_cast<std::uint64_t>(value.get<std::int64_t>());
    return true;
  }
  return false;
}

// a * b, or false when it does not fit in 64 bits.
inline bool checked_mul(std::uint64_t a, std::uint64_t b, std::uint64_t& out) {
  if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) return false;
  out = a * b;
  return true;
}

// Little-endian unsigned integer at an arbitrary (possibly unaligned) address: memcpy avoids
// misaligned-access UB, and the swap keeps big-endian hosts correct.
template <class U>
U load_le(const std::uint8_t* p) {
  static_assert(std::is_unsigned_v<U>);
  U value;
  std::memcpy(&value, p, sizeof value);
  if constexpr (std::endian::native == std::endian::big) {
    U swapped = 0;
    for (std::size_t i = 0; i < sizeof(U); ++i) swapped = static_cast<U>((swapped << 8) | ((value >> (8 * i)) & 0xffu));
    value = swapped;
  }
  return value;
}

template <class U>
void store_le(std::vector<std::uint8_t>& out, U value) {
  static_assert(std::is_unsigned_v<U>);
  for (std::size_t i = 0; i < sizeof(U); ++i) out.push_back(static_cast<std::uint8_t>(value >> (8 * i)));
}

}  // namespace detail

class SafeTensorsFile {
 public:
  SafeTensorsFile() = default;

  // Reads the whole file and validates it; the error names the path when it cannot be read.
  static SafeTensorsFile open(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) detail::fail(path, "cannot open file for reading");
    std::vector<std::uint8_t> bytes;
    char chunk[1 << 16];
    // Chunked reads instead of a size query: tellg lies for pipes, directories and the like.
    while (in.read(chunk, sizeof chunk) || in.gcount() > 0) {
      bytes.insert(bytes.end(), chunk, chunk + in.gcount());
      if (!in) break;
    }
    if (in.bad()) detail::fail(path, "read error (is it a regular file?)");
    return parse(std::move(bytes), path);
  }

  // Validates `bytes` as a safetensors file; `source_name` is used in error messages.
  static SafeTensorsFile parse(std::vector<std::uint8_t> bytes, std::string source_name);

  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }

  const TensorInfo& info(const std::string& name) const {
    const auto it = tensors_.find(name);
    if (it == tensors_.end()) {
      std::string known;
      std::size_t listed = 0;
      for (const auto& entry : tensors_) {
        if (listed++ == 8) {
          known += ", ...";
          break;
        }
        known += (known.empty() ? "'" : ", '") + entry.first + "'";
      }
      detail::fail(source_, "no tensor named '", name, "' (the file holds ", tensors_.size(), " tensors",
                   known.empty() ? "" : ": ", known, ")");
    }
    return it->second;
  }

  std::vector<std::string> names() const {
    std::vector<std::string> result;
    result.reserve(tensors_.size());
    for (const auto& entry : tensors_) result.push_back(entry.first);  // std::map: already sorted
    return result;
  }

  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& source() const { return source_; }

  // A floating-point tensor (F32, F16 or BF16) as float; the stored rank must be Rank. I64 and
  // BOOL are refused: weights and activations stored as integers are a broken export, and a
  // silent cast would hide it. Use load_numeric where integers are legitimate (masks).
  template <std::size_t Rank>
  Tensor<float, Rank> load_float(const std::string& name) const {
    const TensorInfo& tensor = info(name);
    if (tensor.type != dtype::f32 && tensor.type != dtype::f16 && tensor.type != dtype::bf16) {
      detail::fail(source_, "tensor '", name, "' has dtype ", dtype_name(tensor.type),
                   ", but a floating-point tensor (F32, F16 or BF16) was expected");
    }
    return converted_to_float<Rank>(tensor);
  }

  // As above, and the stored shape must equal `expected` exactly.
  template <std::size_t Rank>
  Tensor<float, Rank> load_float(const std::string& name, const Shape<Rank>& expected) const {
    const TensorInfo& tensor = info(name);
    const Shape<Rank> actual = checked_shape<Rank>(tensor);
    if (actual != expected) {
      detail::fail(source_, "tensor '", name, "' has shape ", to_string(actual), ", expected ", to_string(expected));
    }
    return load_float<Rank>(name);
  }

  // Any stored dtype as float: I64 converted (values beyond 2^24 may round), BOOL as 0/1. For
  // tensors that are legitimately integers or booleans but used as floats, such as masks
  // (PyTorch masks are often bool or int64); the stored rank must be Rank.
  template <std::size_t Rank>
  Tensor<float, Rank> load_numeric(const std::string& name) const {
    return converted_to_float<Rank>(info(name));
  }

  // I64 as stored, BOOL as 0/1; floating-point dtypes are an error rather than a silent cast.
  template <std::size_t Rank>
  Tensor<std::int64_t, Rank> load_int64(const std::string& name) const {
    const TensorInfo& tensor = info(name);
    if (tensor.type != dtype::i64 && tensor.type != dtype::boolean) {
      detail::fail(source_, "tensor '", name, "' has dtype ", dtype_name(tensor.type),
                   ", but an integer tensor (I64 or BOOL) was requested");
    }
    const Shape<Rank> shape = checked_shape<Rank>(tensor);
    std::vector<std::int64_t> values(static_cast<std::size_t>(element_count(shape)));
    const std::uint8_t* p = data_begin() + tensor.data_begin;
    const std::size_t stride = dtype_size(tensor.type);
    for (std::size_t i = 0; i < values.size(); ++i, p += stride) {
      values[i] = tensor.type == dtype::i64 ? static_cast<std::int64_t>(detail::load_le<std::uint64_t>(p))
                                            : load_bool(tensor, p);
    }
    return Tensor<std::int64_t, Rank>(shape, std::move(values));
  }

 private:
  const std::uint8_t* data_begin() const { return bytes_.data() + data_offset_; }

  template <std::size_t Rank>
  Tensor<float, Rank> converted_to_float(const TensorInfo& tensor) const {
    const Shape<Rank> shape = checked_shape<Rank>(tensor);
    std::vector<float> values(static_cast<std::size_t>(element_count(shape)));
    const std::uint8_t* p = data_begin() + tensor.data_begin;
    const std::size_t stride = dtype_size(tensor.type);
    for (std::size_t i = 0; i < values.size(); ++i, p += stride) {
      switch (tensor.type) {
        case dtype::f32: values[i] = std::bit_cast<float>(detail::load_le<std::uint32_t>(p)); break;
        case dtype::f16: values[i] = half_to_float(detail::load_le<std::uint16_t>(p)); break;
        case dtype::bf16: values[i] = bfloat16_to_float(detail::load_le<std::uint16_t>(p)); break;
        case dtype::i64: values[i] = static_cast<float>(static_cast<std::int64_t>(detail::load_le<std::uint64_t>(p))); break;
        case dtype::boolean: values[i] = static_cast<float>(load_bool(tensor, p)); break;
      }
    }
    return Tensor<float, Rank>(shape, std::move(values));
  }

  template <std::size_t Rank>
  Shape<Rank> checked_shape(const TensorInfo& tensor) const {
    if (tensor.shape.size() != Rank) {
      detail::fail(source_, "tensor '", tensor.name, "' has rank ", tensor.shape.size(), " (shape ",
                   detail::shape_string(tensor.shape), "), expected rank ", Rank);
    }
    Shape<Rank> shape{};
    for (std::size_t d = 0; d < Rank; ++d) shape[d] = tensor.shape[d];  // not std::copy: GCC 12 warns on empty arrays
    return shape;
  }

  // The format stores BOOL as one byte that must be 0 or 1; anything else is corruption.
  std::int64_t load_bool(const TensorInfo& tensor, const std::uint8_t* p) const {
    if (*p > 1) {
      detail::fail(source_, "tensor '", tensor.name, "' (BOOL) holds byte ", static_cast<int>(*p), " at data offset ",
                   p - data_begin(), "; booleans must be 0 or 1");
    }
    return *p;
  }

  std::vector<std::uint8_t> bytes_;  // the whole file
  std::size_t data_offset_ = 0;      // where the data section starts in bytes_
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
  std::string source_;
};

inline SafeTensorsFile SafeTensorsFile::parse(std::vector<std::uint8_t> bytes, std::string source_name) {
  using detail::fail;
  using detail::json;
  SafeTensorsFile file;
  file.bytes_ = std::move(bytes);
  file.source_ = std::move(source_name);
  const std::string& src = file.source_;
  const std::uint64_t size = file.bytes_.size();

  if (size < 8) fail(src, "file is ", size, " bytes, shorter than the 8-byte header length");
  const std::uint64_t header_size = detail::load_le<std::uint64_t>(file.bytes_.data());
  // Compared against size - 8, never header_size + 8, which could wrap around.
  if (header_size > size - 8) {
    fail(src, "header length ", header_size, " is larger than the ", size - 8, " bytes that follow the length field");
  }
  const auto header_begin = file.bytes_.begin() + 8;
  const auto header_end = header_begin + static_cast<std::ptrdiff_t>(header_size);
  file.data_offset_ = static_cast<std::size_t>(8 + header_size);
  const std::uint64_t data_size = size - 8 - header_size;

  // nlohmann keeps the last of duplicated keys; record duplicates of tensor names instead,
  // since a dropped entry would otherwise surface as a confusing "hole" error.
  std::string duplicate;
  bool has_duplicate = false;
  std::set<std::string> seen;
  json header;
  try {
    header = json::parse(header_begin, header_end, [&](int depth, json::parse_event_t event, json& parsed) {
      if (event == json::parse_event_t::key && depth == 1 && !has_duplicate &&
          !seen.insert(parsed.get<std::string>()).second) {
        has_duplicate = true;
        duplicate = parsed.get<std::string>();
      }
      return true;
    });
  } catch (const json::exception& e) {
    fail(src, "header (", header_size, " bytes) is not valid JSON: ", e.what());
  }
  if (!header.is_object()) fail(src, "header is a JSON ", header.type_name(), ", expected an object");
  if (has_duplicate) fail(src, "header lists '", duplicate, "' more than once");

  for (const auto& [name, entry] : header.items()) {
    if (name == detail::metadata_key) {
      if (!entry.is_object()) fail(src, "\"__metadata__\" must be an object of strings, got ", detail::describe(entry));
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) {
          fail(src, "\"__metadata__\" value for key '", key, "' must be a string, got ", detail::describe(value));
        }
        file.metadata_[key] = value.get<std::string>();
      }
      continue;
    }

    TensorInfo tensor;
    tensor.name = name;
    if (!entry.is_object()) fail(src, "tensor '", name, "': entry must be an object, got ", detail::describe(entry));
    for (const char* field : {"dtype", "shape", "data_offsets"}) {
      if (!entry.contains(field)) fail(src, "tensor '", name, "': missing field \"", field, "\"");
    }

    const json& type = entry.at("dtype");
    if (!type.is_string()) fail(src, "tensor '", name, "': \"dtype\" must be a string, got ", detail::describe(type));
    if (!detail::dtype_from_name(type.get<std::string>(), tensor.type)) {
      fail(src, "tensor '", name, "': unknown dtype ", detail::describe(type), " (supported: ", detail::supported_dtypes(), ")");
    }

    // Element count with overflow checks. The product of the non-zero extents must fit in
    // index_t too, so that element_count() on any shape built from these extents cannot wrap
    // even when a zero extent makes the tensor empty.
    const json& shape = entry.at("shape");
    if (!shape.is_array()) fail(src, "tensor '", name, "': \"shape\" must be an array, got ", detail::describe(shape));
    std::uint64_t nonzero_product = 1;
    bool empty = false;
    for (const json& extent_json : shape) {
      std::uint64_t extent = 0;
      if (!detail::as_non_negative(extent_json, extent)) {
        fail(src, "tensor '", name, "': \"shape\" must hold non-negative integers, got ", detail::describe(shape));
      }
      if (extent == 0) {
        empty = true;
      } else if (!detail::checked_mul(nonzero_product, extent, nonzero_product) ||
                 nonzero_product > static_cast<std::uint64_t>(std::numeric_limits<index_t>::max())) {
        fail(src, "tensor '", name, "': shape ", detail::describe(shape), " has too many elements for a 64-bit index");
      }
      tensor.shape.push_back(static_cast<index_t>(extent));
    }
    const std::uint64_t elements = empty ? 0 : nonzero_product;
    std::uint64_t expected_bytes = 0;
    if (!detail::checked_mul(elements, dtype_size(tensor.type), expected_bytes)) {
      fail(src, "tensor '", name, "': shape ", detail::describe(shape), " of ", dtype_name(tensor.type),
           " needs more bytes than fit in 64 bits");
    }

    const json& offsets = entry.at("data_offsets");
    std::uint64_t begin = 0, end = 0;
    if (!offsets.is_array() || offsets.size() != 2 || !detail::as_non_negative(offsets[0], begin) ||
        !detail::as_non_negative(offsets[1], end)) {
      fail(src, "tensor '", name, "': \"data_offsets\" must be two non-negative integers [begin, end], got ",
           detail::describe(offsets));
    }
    if (begin > end) fail(src, "tensor '", name, "': data_offsets [", begin, ", ", end, "] has begin > end");
    if (end > data_size) {
      fail(src, "tensor '", name, "': data_offsets [", begin, ", ", end, "] extend beyond the data section of ", data_size,
           " bytes");
    }
    if (end - begin != expected_bytes) {
      fail(src, "tensor '", name, "': data_offsets [", begin, ", ", end, "] span ", end - begin, " bytes, but shape ",
           detail::shape_string(tensor.shape), " of ", dtype_name(tensor.type), " needs ", expected_bytes, " bytes");
    }
    tensor.data_begin = static_cast<std::size_t>(begin);  // both <= data_size, which fits in size_t
    tensor.data_end = static_cast<std::size_t>(end);
    file.tensors_.emplace(name, std::move(tensor));
  }

  // The tensors must tile the data section exactly: sorted by offsets, each begins where the
  // previous one ended (empty tensors included), and the last ends at the end of the file.
  std::vector<const TensorInfo*> layout;
  for (const auto& entry : file.tensors_) layout.push_back(&entry.second);
  std::sort(layout.begin(), layout.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return std::tie(a->data_begin, a->data_end, a->name) < std::tie(b->data_begin, b->data_end, b->name);
  });
  std::size_t cursor = 0;
  const TensorInfo* previous = nullptr;
  for (const TensorInfo* tensor : layout) {
    if (tensor->data_begin < cursor) {
      fail(src, "tensors '", previous->name, "' [", previous->data_begin, ", ", previous->data_end, ") and '",
           tensor->name, "' [", tensor->data_begin, ", ", tensor->data_end, ") overlap");
    }
    if (tensor->data_begin > cursor) {
      fail(src, "data bytes [", cursor, ", ", tensor->data_begin, ") belong to no tensor (hole before tensor '",
           tensor->name, "')");
    }
    cursor = tensor->data_end;
    previous = tensor;
  }
  if (cursor != data_size) {
    fail(src, "data bytes [", cursor, ", ", data_size, ") at the end of the data section belong to no tensor");
  }
  return file;
}

namespace detail {

// "cannot write '<path>': <step> failed: <OS reason>", for a failed step of an atomic write.
[[noreturn]] inline void fail_write(const std::string& path, const std::string& step, int os_error) {
  throw error(lsattn::detail::concat("lsattn: SafeTensorsWriter: cannot write '", path, "': ", step, " failed: ",
                                     std::system_category().message(os_error), " (the previous content of '", path,
                                     "', if any, is unchanged)"));
}

// The file a path names once symbolic links in its last component are followed, so that an
// atomic replacement replaces the file the user sees through the link, not the link itself.
inline std::filesystem::path final_target(const std::filesystem::path& path) {
  std::filesystem::path target = path;
  std::error_code ignored;
  for (int hops = 0; hops < 40 && std::filesystem::is_symlink(std::filesystem::symlink_status(target, ignored)); ++hops) {
    const std::filesystem::path next = std::filesystem::read_symlink(target, ignored);
    if (ignored) break;
    target = next.is_absolute() ? next : target.parent_path() / next;
  }
  return target;
}

#if __has_include(<unistd.h>)

// A new file beside the target, removed again unless commit() renamed it over the target.
class TemporaryFile {
 public:
  // Created with O_EXCL under a fresh name; mode 0666 so that the umask (and a directory's
  // default ACL) gives the new file the mode a plain create would, unlike mkstemp's 0600.
  TemporaryFile(const std::filesystem::path& target, const std::string& user_path) : user_path_(user_path) {
    static std::atomic<unsigned> counter{0};
    for (int attempt = 0; attempt < 100; ++attempt) {
      name_ = target.string() + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
      descriptor_ = ::open(name_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (descriptor_ >= 0 || errno != EEXIST) break;  // EEXIST: a stale temporary of an earlier process
    }
    if (descriptor_ < 0) {
      const int os_error = errno;
      name_.clear();
      const std::string directory = target.has_parent_path() ? target.parent_path().string() : ".";
      fail_write(user_path_, "creating a temporary file in '" + directory + "'", os_error);
    }
  }
  TemporaryFile(const TemporaryFile&) = delete;
  TemporaryFile& operator=(const TemporaryFile&) = delete;
  ~TemporaryFile() {
    if (descriptor_ >= 0) ::close(descriptor_);
    if (!name_.empty()) ::unlink(name_.c_str());
  }

  void write(const std::vector<std::uint8_t>& bytes) {
    const std::uint8_t* next = bytes.data();
    std::size_t left = bytes.size();
    while (left > 0) {
      const ::ssize_t written = ::write(descriptor_, next, std::min<std::size_t>(left, std::size_t{1} << 30));
      if (written < 0 && errno == EINTR) continue;
      if (written <= 0) {
        fail_write(user_path_,
                   lsattn::detail::concat("writing byte ", bytes.size() - left, " of ", bytes.size(),
                                          " to the temporary file '", name_, "'"),
                   written < 0 ? errno : EIO);
      }
      next += written;
      left -= static_cast<std::size_t>(written);
    }
  }

  // Flushes the data to the disk, then renames the file over `target`: a crash before the
  // rename leaves the old file, after it the complete new one.
  void commit(const std::filesystem::path& target) {
    if (::fsync(descriptor_) != 0) fail_write(user_path_, "flushing the temporary file '" + name_ + "'", errno);
    const int closed = ::close(descriptor_);
    descriptor_ = -1;
    if (closed != 0) fail_write(user_path_, "closing the temporary file '" + name_ + "'", errno);
    if (::rename(name_.c_str(), target.c_str()) != 0) {
      fail_write(user_path_, "renaming the temporary file '" + name_ + "' over '" + target.string() + "'", errno);
    }
    name_.clear();
    // Best effort: makes the rename itself survive a power loss; some file systems refuse it.
    const std::string directory = target.has_parent_path() ? target.parent_path().string() : ".";
    const int directory_descriptor = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (directory_descriptor >= 0) {
      ::fsync(directory_descriptor);
      ::close(directory_descriptor);
    }
  }

 private:
  std::string user_path_;  // for messages: the path as the caller gave it
  std::string name_;       // empty once renamed (or never created)
  int descriptor_ = -1;
};

// Writes `bytes` to `path` through a temporary file in the same directory (so the rename
// cannot cross file systems): on any failure the temporary is removed and `path` keeps its
// previous content, so a full disk, a file size limit or a kill never leaves half a file.
inline void write_file_atomically(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  const std::filesystem::path target = final_target(path);
  TemporaryFile temporary(target, path);
  temporary.write(bytes);
  temporary.commit(target);
}

#else

// Without POSIX: the same temporary-then-rename protocol through the standard library, but
// without fsync, so the new content may not yet be on the disk when this returns.
inline void write_file_atomically(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  const std::filesystem::path target = final_target(path);
  const std::filesystem::path temporary = target.string() + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (out.fail()) {
      std::error_code ignored;
      std::filesystem::remove(temporary, ignored);
      throw error(lsattn::detail::concat("lsattn: SafeTensorsWriter: cannot write '", path, "': writing ",
                                         bytes.size(), " bytes to '", temporary.string(), "' failed"));
    }
  }
  std::error_code renamed;
  std::filesystem::rename(temporary, target, renamed);
  if (renamed) {
    std::error_code ignored;
    std::filesystem::remove(temporary, ignored);
    throw error(lsattn::detail::concat("lsattn: SafeTensorsWriter: cannot write '", path, "': renaming '",
                                       temporary.string(), "' failed: ", renamed.message()));
  }
}

#endif

}  // namespace detail

class SafeTensorsWriter {
 public:
  // Later calls with the same key replace the value.
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

  // Stores as F32, F16 or BF16 (the 16-bit formats round to nearest even).
  template <std::size_t Rank>
  void add(const std::string& name, const Tensor<float, Rank>& t, dtype stored = dtype::f32) {
    require(stored == dtype::f32 || stored == dtype::f16 || stored == dtype::bf16, "SafeTensorsWriter: tensor '", name,
            "': float tensors are stored as F32, F16 or BF16, not ", dtype_name(stored));
    Entry& entry = new_entry(name, stored, t.shape(), t.values().size());
    entry.data.reserve(t.values().size() * dtype_size(stored));
    for (float v : t.values()) {
      if (stored == dtype::f32) detail::store_le(entry.data, std::bit_cast<std::uint32_t>(v));
      else if (stored == dtype::f16) detail::store_le(entry.data, float_to_half(v));
      else detail::store_le(entry.data, float_to_bfloat16(v));
    }
  }

  // Stores as I64.
  template <std::size_t Rank>
  void add(const std::string& name, const Tensor<std::int64_t, Rank>& t) {
    Entry& entry = new_entry(name, dtype::i64, t.shape(), t.values().size());
    entry.data.reserve(t.values().size() * 8);
    for (std::int64_t v : t.values()) detail::store_le(entry.data, static_cast<std::uint64_t>(v));
  }

  std::vector<std::uint8_t> to_bytes() const {
    // Widest dtype first, then by name: with the header padded to 8 bytes, every tensor then
    // starts at an address aligned to its element size (the order the reference writer uses).
    std::vector<const std::pair<const std::string, Entry>*> order;
    for (const auto& entry : entries_) order.push_back(&entry);
    std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
      return dtype_size(a->second.type) > dtype_size(b->second.type);
    });

    detail::json header = detail::json::object();
    std::uint64_t offset = 0;
    for (const auto* entry : order) {
      const std::uint64_t end = offset + entry->second.data.size();
      header[entry->first] = {{"dtype", std::string(dtype_name(entry->second.type))},
                              {"shape", entry->second.shape},
                              {"data_offsets", {offset, end}}};
      offset = end;
    }
    if (!metadata_.empty()) header[std::string(detail::metadata_key)] = metadata_;

    std::string text;
    try {
      text = header.dump();
    } catch (const detail::json::exception& e) {
      throw error(lsattn::detail::concat("lsattn: SafeTensorsWriter: tensor names and metadata must be valid UTF-8: ",
                                         e.what()));
    }
    text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data section 8-byte aligned

    std::vector<std::uint8_t> bytes;
    bytes.reserve(8 + text.size() + offset);
    detail::store_le(bytes, static_cast<std::uint64_t>(text.size()));
    bytes.insert(bytes.end(), text.begin(), text.end());
    for (const auto* entry : order) bytes.insert(bytes.end(), entry->second.data.begin(), entry->second.data.end());
    return bytes;
  }

  // Writes the file so that `path` ends up holding either its previous content or the whole
  // new file, never a part of it (see detail::write_file_atomically). A symbolic link at `path`
  // is followed: the file it points to is replaced and the link stays.
  void write(const std::string& path) const { detail::write_file_atomically(path, to_bytes()); }

 private:
  struct Entry {
    dtype type = dtype::f32;
    std::vector<index_t> shape;
    std::vector<std::uint8_t> data;
  };

  template <std::size_t Rank>
  Entry& new_entry(const std::string& name, dtype type, const Shape<Rank>& shape, std::size_t value_count) {
    require(name != detail::metadata_key, "SafeTensorsWriter: '", name, "' is reserved for metadata, not a tensor name");
    require(entries_.count(name) == 0, "SafeTensorsWriter: tensor '", name, "' was already added");
    for (index_t extent : shape) {
      require(extent >= 0, "SafeTensorsWriter: tensor '", name, "' has negative extent in shape ", to_string(shape));
    }
    require(static_cast<index_t>(value_count) == element_count(shape), "SafeTensorsWriter: tensor '", name, "' has ",
            value_count, " values for shape ", to_string(shape));
    Entry& entry = entries_[name];
    entry.type = type;
    entry.shape.assign(shape.begin(), shape.end());
    return entry;
  }

  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace lsattn::io
