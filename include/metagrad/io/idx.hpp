// metagrad/io/idx.hpp — the IDX format of the MNIST family (MNIST, Fashion-MNIST, KMNIST, EMNIST): read_idx
// into a Tensor, a type-erased read_idx_any, and load_mnist for the standard four-file layout. Raw and
// gzip-compressed (".gz", through zlib) files are read; every structural defect is an io_error naming the
// file, what was expected and the byte offset. Include <metagrad/io.hpp> instead.
//
// The format (http://yann.lecun.com/exdb/mnist/): bytes 0-1 are zero, byte 2 the element type code, byte 3
// the number of dimensions n, then n big-endian uint32 extents, then the elements, big-endian, row-major,
// with nothing after them.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "../core/config.hpp"
#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"
#include "detail/file_bytes.hpp"

METAGRAD_NAMESPACE_BEGIN

/// IDX element type codes (byte 2 of the magic number).
enum class IdxType : std::uint8_t { u8 = 0x08, i8 = 0x09, i16 = 0x0B, i32 = 0x0C, f32 = 0x0D, f64 = 0x0E };

/// "uint8 (0x08)", or "unknown (0x42)" for a code outside the format.
inline std::string idx_type_name(std::uint8_t code) {
  const std::string c = detail::hex_byte(code);
  switch (code) {
    case 0x08:
      return "uint8 (" + c + ")";
    case 0x09:
      return "int8 (" + c + ")";
    case 0x0B:
      return "int16 (" + c + ")";
    case 0x0C:
      return "int32 (" + c + ")";
    case 0x0D:
      return "float32 (" + c + ")";
    case 0x0E:
      return "float64 (" + c + ")";
    default:
      return "unknown (" + c + ")";
  }
}

/// Bytes per element of an IDX type code; 0 for an unknown code.
constexpr int idx_item_size(std::uint8_t code) {
  switch (code) {
    case 0x08:
    case 0x09:
      return 1;
    case 0x0B:
      return 2;
    case 0x0C:
    case 0x0D:
      return 4;
    case 0x0E:
      return 8;
    default:
      return 0;
  }
}

/// The metagrad dtype an IDX type is read as. metagrad has no 8- or 16-bit signed type, so int8 and int16
/// are widened to int32 (exactly: every value is representable); uint8 stays uint8.
constexpr DType idx_dtype(IdxType t) {
  switch (t) {
    case IdxType::u8:
      return DType::u8;
    case IdxType::i8:
    case IdxType::i16:
    case IdxType::i32:
      return DType::i32;
    case IdxType::f32:
      return DType::f32;
    case IdxType::f64:
      return DType::f64;
  }
  return DType::u8;
}

/// The content of an IDX file, type-erased: its type code, its extents, and its elements converted to host
/// byte order in the dtype idx_dtype(type) (int8/int16 already widened to int32).
struct IdxArray {
  IdxType type = IdxType::u8;
  std::vector<index_t> shape;
  DType dtype = DType::u8;
  std::vector<std::uint8_t> data;  // numel * sizeof(dtype) bytes, host order

  index_t numel() const {
    index_t n = 1;
    for (index_t d : shape) n *= d;
    return n;
  }
};

namespace detail {

inline std::uint32_t load_be32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
}

template <class U>
U load_be(const std::uint8_t* p) {
  U v;
  if constexpr (std::endian::native == std::endian::little) {
    std::uint8_t r[sizeof(U)];
    for (std::size_t i = 0; i < sizeof(U); ++i) r[i] = p[sizeof(U) - 1 - i];
    std::memcpy(&v, r, sizeof(U));
  } else {
    std::memcpy(&v, p, sizeof(U));
  }
  return v;
}

// Decodes the elements of an IDX payload into host-order `Out` (the widened dtype).
template <class Out, class In>
void decode_be(const std::uint8_t* src, index_t n, std::uint8_t* dst) {
  Out* out = reinterpret_cast<Out*>(dst);
  for (index_t i = 0; i < n; ++i) out[i] = static_cast<Out>(load_be<In>(src + i * static_cast<index_t>(sizeof(In))));
}

// Parses IDX bytes (already decompressed). `where` is the file as messages name it.
inline IdxArray parse_idx(const Bytes& b, const std::filesystem::path& path) {
  const std::string where = "read_idx: " + quoted_path(path) + (is_gzip_path(path) ? " (decompressed)" : "");
  if (b.size() < 4)
    throw io_error(where + ": truncated: " + std::to_string(b.size()) +
                   " bytes, expected at least the 4-byte magic number");
  if (b[0] != 0 || b[1] != 0)
    throw io_error(where + ": bad magic number at byte 0: expected 00 00 <type> <rank>, got " + hex_byte(b[0]) + " " +
                   hex_byte(b[1]) + " (not an IDX file?)");
  const std::uint8_t code = b[2];
  const int item = idx_item_size(code);
  if (item == 0)
    throw io_error(where + ": unknown element type code " + idx_type_name(code) +
                   " at byte 2 (expected 0x08, 0x09, 0x0B, 0x0C, 0x0D or 0x0E)");
  const int rank = b[3];
  const std::size_t header = 4 + 4 * static_cast<std::size_t>(rank);
  if (b.size() < header)
    throw io_error(where + ": truncated header: " + std::to_string(rank) + " dimensions need " +
                   std::to_string(header) + " header bytes, the file has " + std::to_string(b.size()));
  IdxArray a;
  a.type = static_cast<IdxType>(code);
  a.dtype = idx_dtype(a.type);
  // Extents are uint32; their product is checked against the file size before anything is allocated, so a
  // forged header cannot request more memory than the file implies.
  std::uint64_t n = 1;
  bool overflow = false;
  for (int d = 0; d < rank; ++d) {
    const std::uint32_t e = load_be32(b.data() + 4 + 4 * d);
    a.shape.push_back(static_cast<index_t>(e));
    if (e != 0 && n > std::numeric_limits<std::uint64_t>::max() / 8 / e) overflow = true;
    n *= e;
  }
  const std::size_t have = b.size() - header;
  if (overflow || n * static_cast<std::uint64_t>(item) > have) {
    std::string dims;
    for (index_t d : a.shape) dims += (dims.empty() ? "" : " x ") + std::to_string(d);
    throw io_error(where + ": truncated: the header (" + std::to_string(rank) + " dims: " + dims + ", " +
                   idx_type_name(code) + ") implies " + (overflow ? std::string("more than 2^61") : std::to_string(n)) +
                   " elements = " + (overflow ? std::string("too many") : std::to_string(n * item)) +
                   " data bytes from byte " + std::to_string(header) + ", but only " + std::to_string(have) +
                   " bytes follow");
  }
  const std::uint64_t data_bytes = n * static_cast<std::uint64_t>(item);
  if (data_bytes < have)
    throw io_error(where + ": " + std::to_string(have - data_bytes) +
                   " trailing bytes after the data, starting at byte " + std::to_string(header + data_bytes) +
                   " (the header's dimensions do not match the file size)");
  const std::uint8_t* src = b.data() + header;
  const auto count = static_cast<index_t>(n);
  switch (a.type) {
    case IdxType::u8:
      a.data.assign(src, src + count);
      break;
    case IdxType::i8:
      a.data.resize(static_cast<std::size_t>(count) * 4);
      decode_be<std::int32_t, std::int8_t>(src, count, a.data.data());
      break;
    case IdxType::i16:
      a.data.resize(static_cast<std::size_t>(count) * 4);
      decode_be<std::int32_t, std::int16_t>(src, count, a.data.data());
      break;
    case IdxType::i32:
      a.data.resize(static_cast<std::size_t>(count) * 4);
      decode_be<std::int32_t, std::int32_t>(src, count, a.data.data());
      break;
    case IdxType::f32:
      a.data.resize(static_cast<std::size_t>(count) * 4);
      decode_be<float, float>(src, count, a.data.data());
      break;
    case IdxType::f64:
      a.data.resize(static_cast<std::size_t>(count) * 8);
      decode_be<double, double>(src, count, a.data.data());
      break;
  }
  return a;
}

}  // namespace detail

/// Reads an IDX file of any element type and rank (".gz" decompressed through zlib).
/// @throws io_error naming the path, what was expected and the byte offset on: a file that cannot be
/// opened, bad magic, an unknown type code, dimensions that do not match the file size (truncated data or
/// trailing bytes), corrupt gzip data, or a ".gz" file in a build without zlib.
inline IdxArray read_idx_any(const std::filesystem::path& path) {
  return detail::parse_idx(detail::read_maybe_gzip(path, "read_idx"), path);
}

/// Reads an IDX file of rank R into a new contiguous Tensor<T, R>.
///
/// T must be the dtype the file's element type is read as: uint8_t for 0x08; int32_t for 0x0C and for the
/// widened 0x09 (int8) and 0x0B (int16); float for 0x0D; double for 0x0E.
/// @throws io_error as read_idx_any, and when the file's rank is not R or its element type does not read
/// as T (naming both).
template <dtype T, int R>
Tensor<T, R> read_idx(const std::filesystem::path& path) {
  IdxArray a = read_idx_any(path);
  if (static_cast<int>(a.shape.size()) != R)
    throw io_error("read_idx: " + detail::quoted_path(path) + " has " + std::to_string(a.shape.size()) +
                   " dimensions, expected " + std::to_string(R) + " (byte 3 of the magic number)");
  if (a.dtype != dtype_of<T>)
    throw io_error("read_idx: " + detail::quoted_path(path) + " holds " +
                   idx_type_name(static_cast<std::uint8_t>(a.type)) + ", read as " + dtype_name(a.dtype) +
                   "; expected " + dtype_name<T>() + " (byte 2 of the magic number)");
  Shape<R> s;
  for (int d = 0; d < R; ++d) s[d] = a.shape[static_cast<std::size_t>(d)];
  Tensor<T, R> t;
  t.allocate(s);
  if (!a.data.empty()) std::memcpy(t.data(), a.data.data(), a.data.size());
  return t;
}

/// Which half of an MNIST-style data set: the 60,000 training images or the 10,000 test ("t10k") images.
enum class MnistSplit { train, test };

/// Images and labels of one split.
struct MnistData {
  Tensor<std::uint8_t, 4> images;  ///< [N, 1, rows, cols] raw bytes (0..255); convert in the input pipeline
  Tensor<std::int64_t, 1> labels;  ///< [N], each in 0..9
};

namespace detail {
inline std::filesystem::path find_mnist_file(const std::filesystem::path& dir, const std::string& stem) {
  // The canonical names, gzip or not; some mirrors write "images.idx3" with a dot.
  std::vector<std::string> names = {stem, stem + ".gz"};
  std::string dotted = stem;
  if (const auto p = dotted.find("-idx"); p != std::string::npos) {
    dotted[p] = '.';
    names.push_back(dotted);
    names.push_back(dotted + ".gz");
  }
  for (const auto& n : names)
    if (std::filesystem::exists(dir / n)) return dir / n;
  std::string tried;
  for (const auto& n : names) tried += (tried.empty() ? "" : ", ") + n;
  throw io_error("load_mnist: no file " + stem + " in " + quoted_path(dir) + " (looked for " + tried + ")");
}
}  // namespace detail

/// Loads one split of MNIST or a drop-in replacement (Fashion-MNIST, KMNIST) from `dir`, which holds the
/// standard files train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
/// t10k-labels-idx1-ubyte, each optionally gzip-compressed (".gz"). Debian's dataset-fashion-mnist installs
/// them in /usr/share/datasets/fashion-mnist.
///
/// Images stay bytes: convert them to float where they are used (DataLoader does it fused with the
/// normalisation), which keeps the data set at a quarter of the memory.
/// @throws io_error naming the file when one is missing or malformed, when the image and label counts
/// differ, or when a label is 10 or more.
inline MnistData load_mnist(const std::filesystem::path& dir, MnistSplit split) {
  const std::string prefix = split == MnistSplit::train ? "train" : "t10k";
  const auto image_path = detail::find_mnist_file(dir, prefix + "-images-idx3-ubyte");
  const auto label_path = detail::find_mnist_file(dir, prefix + "-labels-idx1-ubyte");
  const auto images = read_idx<std::uint8_t, 3>(image_path);
  const auto labels = read_idx<std::uint8_t, 1>(label_path);
  const index_t n = images.shape()[0];
  if (labels.shape()[0] != n)
    throw io_error("load_mnist: " + detail::quoted_path(image_path) + " holds " + std::to_string(n) + " images but " +
                   detail::quoted_path(label_path) + " holds " + std::to_string(labels.shape()[0]) + " labels");
  MnistData out;
  // [N, rows, cols] -> [N, 1, rows, cols] shares the storage: the channel axis has extent 1.
  const auto& s = images.shape();
  out.images = Tensor<std::uint8_t, 4>::from_storage(images.storage(), 0, Shape<4>{n, 1, s[1], s[2]},
                                                     contiguous_strides(Shape<4>{n, 1, s[1], s[2]}));
  out.labels.allocate(Shape<1>{n});
  for (index_t i = 0; i < n; ++i) {
    const std::uint8_t l = labels.data()[i];
    if (l >= 10)
      throw io_error("load_mnist: " + detail::quoted_path(label_path) + ": label " + std::to_string(l) + " of sample " +
                     std::to_string(i) + " (byte " + std::to_string(8 + i) + ") is not in 0..9");
    out.labels.data()[i] = l;
  }
  return out;
}

METAGRAD_NAMESPACE_END
