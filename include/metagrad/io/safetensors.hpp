// metagrad/io/safetensors.hpp — the safetensors format (Hugging Face; what PyTorch's state_dict is
// exchanged in): SafeTensors reads and validates a file and hands out its tensors by name, typed or as raw
// bytes; write_safetensors writes any set of tensors atomically, as the reference implementation lays them
// out. Include <metagrad/io.hpp> instead.
//
// Layout (https://github.com/huggingface/safetensors): an 8-byte little-endian header length N; N bytes of
// JSON, {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
// "__metadata__": {"key": "value"}} padded with spaces; then the data region, each tensor's bytes
// little-endian and row-major at [begin, end) of the region. The reference reader requires the tensors to
// tile the data region exactly (sorted by offset, no overlap, no gap, nothing after the last); so does this
// one.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../core/config.hpp"
#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"
#include "atomic_file.hpp"
#include "detail/file_bytes.hpp"
#include "detail/json.hpp"

METAGRAD_NAMESPACE_BEGIN

/// The safetensors name of a dtype: F32, F64, I32, I64, U8, BOOL.
constexpr const char* safetensors_dtype_name(DType d) {
  switch (d) {
    case DType::f32:
      return "F32";
    case DType::f64:
      return "F64";
    case DType::i32:
      return "I32";
    case DType::i64:
      return "I64";
    case DType::u8:
      return "U8";
    case DType::b8:
      return "BOOL";
  }
  return "?";
}

/// Bytes per element of a dtype.
constexpr std::size_t dtype_size(DType d) {
  switch (d) {
    case DType::f32:
    case DType::i32:
      return 4;
    case DType::f64:
    case DType::i64:
      return 8;
    case DType::u8:
    case DType::b8:
      return 1;
  }
  return 0;
}

/// One tensor of a SafeTensors file as raw bytes: what code that converts dtypes itself works from.
/// `bytes` points into the SafeTensors object and lives as long as it does; it is little-endian and
/// row-major, numel(shape) * dtype_size(dtype) long.
struct TensorBytes {
  DType dtype = DType::f32;
  std::vector<index_t> shape;
  std::span<const std::uint8_t> bytes;
};

namespace detail {

struct SafetensorsDtype {
  std::string_view name;
  std::size_t size;
  bool supported;
  DType dtype;
};

// Every dtype the format defines, so files holding types metagrad cannot represent still validate and
// their other tensors still load. Sub-byte types (F4, F6_*) are listed with size 0 and refused.
inline constexpr SafetensorsDtype safetensors_dtypes[] = {
    {"F32", 4, true, DType::f32},      {"F64", 8, true, DType::f64},      {"I32", 4, true, DType::i32},
    {"I64", 8, true, DType::i64},      {"U8", 1, true, DType::u8},        {"BOOL", 1, true, DType::b8},
    {"F16", 2, false, DType::f32},     {"BF16", 2, false, DType::f32},    {"I8", 1, false, DType::f32},
    {"I16", 2, false, DType::f32},     {"U16", 2, false, DType::f32},     {"U32", 4, false, DType::f32},
    {"U64", 8, false, DType::f32},     {"F8_E4M3", 1, false, DType::f32}, {"F8_E5M2", 1, false, DType::f32},
    {"F8_E8M0", 1, false, DType::f32}, {"C64", 8, false, DType::f32},
};

inline const SafetensorsDtype* find_safetensors_dtype(std::string_view name) {
  for (const auto& d : safetensors_dtypes)
    if (d.name == name) return &d;
  return nullptr;
}

inline std::string shape_string(const std::vector<index_t>& s) {
  std::string r = "[";
  for (std::size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// Copies `n` items of `size` bytes, reversing each item's bytes on a big-endian host (the format is
// little-endian).
inline void copy_le(std::uint8_t* dst, const std::uint8_t* src, std::size_t n, std::size_t size) {
  if constexpr (std::endian::native == std::endian::little) {
    if (n) std::memcpy(dst, src, n * size);
  } else {
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t b = 0; b < size; ++b) dst[i * size + b] = src[i * size + size - 1 - b];
  }
}

}  // namespace detail

/// A safetensors file read into memory and validated: header length within the file, a well-formed JSON
/// header with no duplicate names, a known dtype and non-negative shape per tensor, offsets whose size is
/// numel * itemsize, tensors tiling the data region in offset order.
///
///   SafeTensors f("model.safetensors");
///   Tensor<float, 2> w = f.get<float, 2>("0.weight");
///
/// Tensors of dtypes the format defines but metagrad lacks (F16, BF16, I8, ...) pass validation; asking
/// for one of them is an io_error. The whole file is held in memory (one read, no mmap).
class SafeTensors {
 public:
  /// Reads and validates `path`. @throws io_error naming the path, what was expected and the byte offset.
  explicit SafeTensors(const std::filesystem::path& path)
      : SafeTensors(detail::read_file_bytes(path, "SafeTensors"), path.string()) {}

  /// Validates a file image already in memory; `source` names it in messages.
  /// @throws io_error as the path constructor.
  SafeTensors(std::vector<std::uint8_t> bytes, std::string source)
      : bytes_(std::move(bytes)), source_(std::move(source)) {
    parse();
  }

  /// Tensor names in the order of their data in the file.
  const std::vector<std::string>& names() const { return names_; }
  std::size_t size() const { return names_.size(); }
  bool contains(std::string_view name) const { return index_.count(std::string(name)) != 0; }

  /// The file's "__metadata__" (string to string; empty when absent).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  /// The dtype of `name`. @throws io_error when `name` is missing or of a dtype metagrad cannot represent.
  DType dtype(std::string_view name) const { return supported(entry(name, "dtype")).dtype; }
  /// The format's dtype string of `name` ("F32", "BF16", ...). @throws io_error when `name` is missing.
  const std::string& dtype_string(std::string_view name) const { return entry(name, "dtype_string").dtype_name; }
  /// The extents of `name` (empty for a scalar). @throws io_error when `name` is missing.
  const std::vector<index_t>& shape(std::string_view name) const { return entry(name, "shape").shape; }

  /// The bytes of `name`, valid while this object lives. @throws io_error as dtype().
  TensorBytes raw(std::string_view name) const {
    const Entry& e = supported(entry(name, "raw"));
    return {e.dtype, e.shape,
            std::span<const std::uint8_t>(bytes_.data() + data_start_ + e.begin,
                                          static_cast<std::size_t>(e.end - e.begin))};
  }

  /// `name` as a new contiguous Tensor<T, R> (a copy: it outlives this object).
  /// @throws io_error naming the tensor, the file, and expected and actual dtype or rank when they differ,
  /// or when `name` is missing.
  template <metagrad::dtype T, int R>
  Tensor<T, R> get(std::string_view name) const {
    const Entry& e = entry(name, "get");
    if (e.dtype_name != safetensors_dtype_name(dtype_of<T>) || static_cast<int>(e.shape.size()) != R)
      throw io_error("SafeTensors::get: tensor '" + e.name + "' in " + where() + " is " + e.dtype_name + " of shape " +
                     detail::shape_string(e.shape) + " (rank " + std::to_string(e.shape.size()) + "); requested " +
                     safetensors_dtype_name(dtype_of<T>) + " (" + dtype_name<T>() + ") of rank " + std::to_string(R));
    Shape<R> s;
    for (int d = 0; d < R; ++d) s[d] = e.shape[static_cast<std::size_t>(d)];
    Tensor<T, R> t;
    t.allocate(s);
    const std::uint8_t* src = bytes_.data() + data_start_ + e.begin;
    const auto n = static_cast<std::size_t>(s.numel());
    if constexpr (std::is_same_v<T, bool>) {
      // Any byte other than 0 or 1 in a C++ bool is undefined behaviour: normalise instead of copying.
      for (std::size_t i = 0; i < n; ++i) t.data()[i] = src[i] != 0;
    } else {
      detail::copy_le(reinterpret_cast<std::uint8_t*>(t.data()), src, n, sizeof(T));
    }
    return t;
  }

 private:
  struct Entry {
    std::string name;
    std::string dtype_name;
    const detail::SafetensorsDtype* info = nullptr;
    DType dtype = DType::f32;
    std::vector<index_t> shape;
    std::uint64_t begin = 0, end = 0;
    std::size_t offset = 0;  // of the tensor's JSON object, for messages
  };

  std::string where() const { return "'" + source_ + "'"; }
  [[noreturn]] void fail(const std::string& what) const { throw io_error("SafeTensors: " + where() + ": " + what); }

  const Entry& entry(std::string_view name, const char* op) const {
    const auto it = index_.find(std::string(name));
    if (it == index_.end()) {
      std::string have;
      for (std::size_t i = 0; i < names_.size() && i < 8; ++i) have += (i ? ", '" : "'") + names_[i] + "'";
      if (names_.size() > 8) have += ", ... (" + std::to_string(names_.size()) + " in all)";
      throw io_error("SafeTensors::" + std::string(op) + ": no tensor '" + std::string(name) + "' in " + where() +
                     (names_.empty() ? " (it holds no tensors)" : " (it holds " + have + ")"));
    }
    return entries_[it->second];
  }

  const Entry& supported(const Entry& e) const {
    if (!e.info->supported)
      throw io_error("SafeTensors: tensor '" + e.name + "' in " + where() + " has dtype " + e.dtype_name +
                     ", which metagrad does not support (F32, F64, I32, I64, U8, BOOL); convert it before saving");
    return e;
  }

  void parse() {
    if (bytes_.size() < 8)
      fail("file too short (" + std::to_string(bytes_.size()) + " bytes) for the 8-byte header length");
    std::uint64_t n = 0;
    for (int b = 7; b >= 0; --b) n = (n << 8) | bytes_[static_cast<std::size_t>(b)];
    // The reference implementation caps the header at 100 MB; a larger value is a corrupt length.
    constexpr std::uint64_t max_header = 100'000'000;
    if (n > bytes_.size() - 8 || n > max_header)
      fail("header length " + std::to_string(n) + " (bytes 0-7) exceeds the " + std::to_string(bytes_.size() - 8) +
           " bytes that follow it" + (n > max_header ? " and the 100 MB limit" : ""));
    if (n < 2 || bytes_[8] != '{') fail("the header at byte 8 must be a JSON object starting with '{'");
    data_start_ = 8 + static_cast<std::size_t>(n);
    const std::string_view text(reinterpret_cast<const char*>(bytes_.data() + 8), static_cast<std::size_t>(n));
    detail::json::Parser parser(text, 8, "SafeTensors: " + where());
    const detail::json::Value root = parser.parse_document();
    for (const auto& [key, v] : root.object) {
      if (key == "__metadata__") {
        parse_metadata(v);
      } else {
        entries_.push_back(parse_entry(key, v));
      }
    }
    validate_offsets();
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      names_.push_back(entries_[i].name);
      index_.emplace(entries_[i].name, i);
    }
  }

  void parse_metadata(const detail::json::Value& v) {
    using detail::json::Kind;
    if (v.kind != Kind::object)
      fail("\"__metadata__\" at byte " + std::to_string(v.offset) + " must be an object, found " + kind_name(v.kind));
    for (const auto& [k, s] : v.object) {
      if (s.kind != Kind::string)
        fail("metadata value \"" + k + "\" at byte " + std::to_string(s.offset) + " must be a string, found " +
             kind_name(s.kind));
      metadata_.emplace(k, s.string);
    }
  }

  Entry parse_entry(const std::string& name, const detail::json::Value& v) const {
    using detail::json::Kind;
    const std::string what = "tensor '" + name + "' at byte " + std::to_string(v.offset);
    if (v.kind != Kind::object) fail(what + " must be an object, found " + kind_name(v.kind));
    const auto field = [&](const char* key, Kind kind) -> const detail::json::Value& {
      const auto* f = v.find(key);
      if (!f) fail(what + " has no \"" + key + "\"");
      if (f->kind != kind)
        fail("\"" + std::string(key) + "\" of tensor '" + name + "' at byte " + std::to_string(f->offset) +
             " must be " + kind_name(kind) + ", found " + kind_name(f->kind));
      return *f;
    };
    Entry e;
    e.name = name;
    e.offset = v.offset;
    const auto& dt = field("dtype", Kind::string);
    e.dtype_name = dt.string;
    e.info = detail::find_safetensors_dtype(dt.string);
    if (!e.info || e.info->size == 0)
      fail("unknown dtype \"" + dt.string + "\" of tensor '" + name + "' at byte " + std::to_string(dt.offset));
    e.dtype = e.info->dtype;
    const auto& shape = field("shape", Kind::array);
    std::uint64_t numel = 1;
    for (const auto& d : shape.array) {
      if (d.kind != Kind::integer || d.integer < 0)
        fail("shape of tensor '" + name + "' at byte " + std::to_string(d.offset) + " must hold non-negative integers");
      if (d.integer != 0 &&
          numel > std::numeric_limits<std::uint64_t>::max() / 16 / static_cast<std::uint64_t>(d.integer))
        fail("shape " + std::string("of tensor '") + name + "' at byte " + std::to_string(shape.offset) +
             " has too many elements");
      numel *= static_cast<std::uint64_t>(d.integer);
      e.shape.push_back(d.integer);
    }
    const auto& off = field("data_offsets", Kind::array);
    if (off.array.size() != 2 || off.array[0].kind != Kind::integer || off.array[1].kind != Kind::integer ||
        off.array[0].integer < 0 || off.array[1].integer < 0)
      fail("\"data_offsets\" of tensor '" + name + "' at byte " + std::to_string(off.offset) +
           " must be two non-negative integers [begin, end]");
    e.begin = static_cast<std::uint64_t>(off.array[0].integer);
    e.end = static_cast<std::uint64_t>(off.array[1].integer);
    const std::uint64_t data_size = bytes_.size() - data_start_;
    if (e.begin > e.end || e.end > data_size)
      fail("data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "] of tensor '" + name +
           "' at byte " + std::to_string(off.offset) + " are outside the data region of " + std::to_string(data_size) +
           " bytes (file bytes " + std::to_string(data_start_) + ".." + std::to_string(bytes_.size()) + ")");
    if (e.end - e.begin != numel * e.info->size)
      fail("tensor '" + name + "' (" + e.dtype_name + ", shape " + detail::shape_string(e.shape) + ") needs " +
           std::to_string(numel * e.info->size) + " bytes but its data_offsets [" + std::to_string(e.begin) + ", " +
           std::to_string(e.end) + "] span " + std::to_string(e.end - e.begin));
    return e;
  }

  void validate_offsets() {
    std::stable_sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) {
      return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    std::uint64_t at = 0;
    const Entry* prev = nullptr;
    for (const Entry& e : entries_) {
      const auto range = [](const Entry& x) {
        return "'" + x.name + "' [" + std::to_string(x.begin) + ", " + std::to_string(x.end) + ")";
      };
      if (e.begin < at) fail("tensors " + range(*prev) + " and " + range(e) + " overlap in the data region");
      if (e.begin > at)
        fail("gap of " + std::to_string(e.begin - at) + " bytes before tensor " + range(e) +
             " in the data region (tensors must be packed in offset order)");
      at = e.end;
      prev = &e;
    }
    const std::uint64_t data_size = bytes_.size() - data_start_;
    if (at != data_size)
      fail(std::to_string(data_size - at) + " bytes after the last tensor, from file byte " +
           std::to_string(data_start_ + at) + " (the data region is " + std::to_string(data_size) +
           " bytes; truncated header or trailing garbage)");
  }

  std::vector<std::uint8_t> bytes_;
  std::string source_;
  std::size_t data_start_ = 0;
  std::vector<Entry> entries_;
  std::vector<std::string> names_;
  std::unordered_map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
};

/// A tensor of any dtype and rank, seen through its bytes: what write_safetensors takes. Converts
/// implicitly from any CPU Tensor<T, R>, strided or not, and keeps the storage alive.
class AnyTensor {
 public:
  template <metagrad::dtype T, int R>
  AnyTensor(const Tensor<T, R>& t)  // NOLINT(google-explicit-constructor): {{"w", w}, {"b", b}} lists
      : dtype_(dtype_of<T>), keep_(t.storage()), data_(reinterpret_cast<const std::uint8_t*>(t.data())) {
    if (!t.defined()) throw error("AnyTensor: cannot take an empty (default-constructed) tensor");
    if (!t.device().is_cpu())
      throw device_error("AnyTensor: the tensor is on " + t.device().str() + "; copy it to the CPU");
    for (int d = 0; d < R; ++d) {
      shape_.push_back(t.shape()[d]);
      strides_.push_back(t.strides()[d]);
    }
    contiguous_ = t.is_contiguous();
  }

  DType dtype() const { return dtype_; }
  const std::vector<index_t>& shape() const { return shape_; }
  index_t numel() const {
    index_t n = 1;
    for (index_t d : shape_) n *= d;
    return n;
  }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype_); }

  /// Passes the elements, row-major and little-endian, to `sink(const std::uint8_t*, std::size_t)` in one or
  /// more pieces: a contiguous tensor on a little-endian host in one piece straight from its memory, others
  /// through a small staging buffer.
  template <class Sink>
  void write_le(Sink&& sink) const {
    const std::size_t item = dtype_size(dtype_);
    const auto n = static_cast<std::size_t>(numel());
    if (n == 0) return;
    if (contiguous_ && std::endian::native == std::endian::little) return sink(data_, n * item);
    constexpr std::size_t stage_items = 8192;
    std::vector<std::uint8_t> stage(std::min(n, stage_items) * item);
    std::size_t staged = 0;
    const auto flush = [&] {
      sink(stage.data(), staged * item);
      staged = 0;
    };
    // A row-major walk over the strided layout: an odometer over the indices tracking the source offset.
    const int rank = static_cast<int>(shape_.size());
    std::vector<index_t> idx(shape_.size(), 0);
    index_t src = 0;
    for (std::size_t i = 0; i < n; ++i) {
      detail::copy_le(stage.data() + staged * item, data_ + src * static_cast<index_t>(item), 1, item);
      if (++staged * item == stage.size()) flush();
      for (int d = rank - 1; d >= 0; --d) {
        const auto ud = static_cast<std::size_t>(d);
        src += strides_[ud];
        if (++idx[ud] < shape_[ud]) break;
        src -= strides_[ud] * shape_[ud];
        idx[ud] = 0;
      }
    }
    if (staged) flush();
  }

 private:
  DType dtype_;
  std::shared_ptr<Storage> keep_;
  const std::uint8_t* data_;
  std::vector<index_t> shape_, strides_;
  bool contiguous_ = true;
};

/// Named tensors to write: {{"0.weight", w}, {"0.bias", b}}.
using SafeTensorsEntries = std::vector<std::pair<std::string, AnyTensor>>;

namespace detail {
// Emits a safetensors file through `sink(const std::uint8_t*, std::size_t)`; see serialize_safetensors.
template <class Sink>
void emit_safetensors(const SafeTensorsEntries& entries, const std::map<std::string, std::string>& metadata,
                      Sink&& sink) {
  std::vector<const std::pair<std::string, AnyTensor>*> order;
  for (const auto& e : entries) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->first < b->first; });
  for (std::size_t i = 0; i < order.size(); ++i) {
    if (order[i]->first == "__metadata__")
      throw error("write_safetensors: \"__metadata__\" is reserved and cannot name a tensor");
    if (i && order[i]->first == order[i - 1]->first)
      throw error("write_safetensors: two tensors are named '" + order[i]->first + "'");
  }
  using json::quote;
  std::string h = "{";
  if (!metadata.empty()) {
    h += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      h += (first ? "" : ",") + quote(k) + ":" + quote(v);
      first = false;
    }
    h += "}";
  }
  std::uint64_t at = 0;
  for (const auto* e : order) {
    if (h.size() > 1) h += ",";
    h += quote(e->first) + ":{\"dtype\":\"" + safetensors_dtype_name(e->second.dtype()) + "\",\"shape\":[";
    for (std::size_t d = 0; d < e->second.shape().size(); ++d)
      h += (d ? "," : "") + std::to_string(e->second.shape()[d]);
    const std::uint64_t end = at + e->second.nbytes();
    h += "],\"data_offsets\":[" + std::to_string(at) + "," + std::to_string(end) + "]}";
    at = end;
  }
  h += "}";
  // Padding puts the data region 8-byte aligned, so F64/I64 tensors can be used in place when mapped.
  h.append((8 - h.size() % 8) % 8, ' ');
  std::uint8_t len[8];
  for (int b = 0; b < 8; ++b) len[b] = static_cast<std::uint8_t>(std::uint64_t{h.size()} >> (8 * b));
  sink(len, 8);
  sink(reinterpret_cast<const std::uint8_t*>(h.data()), h.size());
  for (const auto* e : order) e->second.write_le(sink);
}
}  // namespace detail

/// The bytes of a safetensors file holding `entries` and `metadata`, laid out as the reference
/// implementation does: "__metadata__" first (omitted when empty), then the tensors sorted by name, their
/// data in the same order, the compact JSON header padded with spaces to a multiple of 8 bytes.
/// @throws error on a duplicate or reserved ("__metadata__") tensor name.
inline std::vector<std::uint8_t> serialize_safetensors(const SafeTensorsEntries& entries,
                                                       const std::map<std::string, std::string>& metadata = {}) {
  std::vector<std::uint8_t> out;
  detail::emit_safetensors(entries, metadata,
                           [&](const std::uint8_t* p, std::size_t n) { out.insert(out.end(), p, p + n); });
  return out;
}

/// Writes `entries` (and string `metadata`) to `path` in safetensors format (the layout of
/// serialize_safetensors), atomically through AtomicFile: the file appears complete or not at all, and an
/// existing file of that name stays intact on failure. Strided tensors are written contiguous.
/// @throws error on a duplicate or reserved name; io_error naming the path when writing fails.
inline void write_safetensors(const std::filesystem::path& path, const SafeTensorsEntries& entries,
                              const std::map<std::string, std::string>& metadata = {}) {
  AtomicFile f(path);
  detail::emit_safetensors(entries, metadata, [&](const std::uint8_t* p, std::size_t n) { f.write(p, n); });
  f.commit();
}

METAGRAD_NAMESPACE_END
