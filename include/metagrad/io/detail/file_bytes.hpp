// metagrad/io/detail/file_bytes.hpp — whole-file reads for the io readers: a file's bytes, and a gzip
// file's decompressed bytes through zlib when the build has it (METAGRAD_WITH_ZLIB). Internal; include
// <metagrad/io.hpp> instead.
#pragma once

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "../../core/config.hpp"
#include "../../core/error.hpp"

#if defined(METAGRAD_WITH_ZLIB) && METAGRAD_WITH_ZLIB
#include <zlib.h>
#endif

METAGRAD_NAMESPACE_BEGIN

namespace detail {

using Bytes = std::vector<std::uint8_t>;

/// "'path'" quoted the way every io message names a file.
inline std::string quoted_path(const std::filesystem::path& p) { return "'" + p.string() + "'"; }

/// Every byte of `path`. `op` names the calling operation in error messages.
/// @throws io_error naming the path and the system's reason when it cannot be opened or read.
inline Bytes read_file_bytes(const std::filesystem::path& path, const char* op) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.string().c_str(), "rb"), &std::fclose);
  if (!f) throw io_error(std::string(op) + ": cannot open " + quoted_path(path) + ": " + std::strerror(errno));
  Bytes out;
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (!ec) out.reserve(static_cast<std::size_t>(size));
  // Read to EOF rather than trusting the size, so pipes and files that change under us still work.
  constexpr std::size_t chunk = std::size_t{1} << 20;
  for (;;) {
    const std::size_t old = out.size();
    out.resize(old + chunk);
    const std::size_t got = std::fread(out.data() + old, 1, chunk, f.get());
    out.resize(old + got);
    if (got < chunk) {
      if (std::ferror(f.get()))
        throw io_error(std::string(op) + ": error reading " + quoted_path(path) + " at byte " +
                       std::to_string(out.size()) + ": " + std::strerror(errno));
      break;
    }
  }
  return out;
}

/// "0x1f".
inline std::string hex_byte(std::uint8_t b) {
  static constexpr const char* digits = "0123456789abcdef";
  return std::string("0x") + digits[b >> 4] + digits[b & 15];
}

/// True for paths whose name ends in ".gz".
inline bool is_gzip_path(const std::filesystem::path& path) { return path.extension() == ".gz"; }

#if defined(METAGRAD_WITH_ZLIB) && METAGRAD_WITH_ZLIB
inline constexpr bool have_zlib = true;

/// The decompressed content of a gzip file held in memory (several concatenated members are allowed, as
/// gunzip allows them). CRC and length trailers are checked by zlib.
/// @throws io_error naming the path, the compressed byte offset and zlib's reason on corrupt or truncated
/// data, or on bytes after the last member that do not start another member.
inline Bytes gunzip(const Bytes& in, const std::filesystem::path& path, const char* op) {
  const auto fail = [&](const std::string& why, std::size_t offset) -> io_error {
    return io_error(std::string(op) + ": corrupt gzip file " + quoted_path(path) + " at compressed byte " +
                    std::to_string(offset) + ": " + why);
  };
  if (in.size() < 18) throw fail("too short to be a gzip file (" + std::to_string(in.size()) + " bytes)", 0);
  if (in[0] != 0x1f || in[1] != 0x8b) throw fail("no gzip magic (1f 8b)", 0);

  // The ISIZE trailer is the uncompressed size modulo 2^32: a good first guess for one member, bounded by
  // deflate's maximum ratio (1032:1) so a forged trailer cannot demand a huge allocation.
  std::size_t guess = in[in.size() - 4] | (std::size_t{in[in.size() - 3]} << 8) |
                      (std::size_t{in[in.size() - 2]} << 16) | (std::size_t{in[in.size() - 1]} << 24);
  guess = std::min(guess, in.size() * 1032);
  Bytes out(std::max<std::size_t>(guess, 1024));

  z_stream zs{};
  if (inflateInit2(&zs, 15 + 16) != Z_OK) throw fail("zlib could not initialise", 0);
  std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&zs, &inflateEnd);

  std::size_t in_pos = 0, out_pos = 0;
  bool member_done = false;
  for (;;) {
    if (out_pos == out.size()) out.resize(out.size() * 2);
    zs.next_in = const_cast<Bytef*>(in.data() + in_pos);
    zs.avail_in = static_cast<uInt>(std::min<std::size_t>(in.size() - in_pos, UINT_MAX));
    zs.next_out = out.data() + out_pos;
    zs.avail_out = static_cast<uInt>(std::min<std::size_t>(out.size() - out_pos, UINT_MAX));
    const uInt avail_in = zs.avail_in, avail_out = zs.avail_out;
    const int rc = inflate(&zs, Z_NO_FLUSH);
    in_pos += avail_in - zs.avail_in;
    out_pos += avail_out - zs.avail_out;
    member_done = rc == Z_STREAM_END;
    if (rc == Z_STREAM_END) {
      if (in_pos == in.size()) break;
      if (in.size() - in_pos < 2 || in[in_pos] != 0x1f || in[in_pos + 1] != 0x8b)
        throw fail(std::to_string(in.size() - in_pos) + " trailing bytes after the gzip stream", in_pos);
      inflateReset(&zs);
      continue;
    }
    if (rc == Z_NEED_DICT || rc == Z_DATA_ERROR || rc == Z_STREAM_ERROR || rc == Z_MEM_ERROR)
      throw fail(zs.msg ? zs.msg : "invalid compressed data", in_pos);
    if (in_pos == in.size() && zs.avail_out != 0) break;  // input exhausted before the end of the stream
  }
  if (!member_done) throw fail("unexpected end of file (truncated gzip stream)", in_pos);
  out.resize(out_pos);
  return out;
}
#else
inline constexpr bool have_zlib = false;

inline Bytes gunzip(const Bytes&, const std::filesystem::path& path, const char* op) {
  throw io_error(std::string(op) + ": " + quoted_path(path) +
                 " is gzip-compressed but this build has no zlib (configure with zlib found, or compile with "
                 "-DMETAGRAD_WITH_ZLIB=1 -lz); decompress it first with `gunzip -k " +
                 path.string() + "`");
}
#endif

/// The bytes of `path`, decompressed when the name ends in ".gz".
inline Bytes read_maybe_gzip(const std::filesystem::path& path, const char* op) {
  Bytes raw = read_file_bytes(path, op);
  if (!is_gzip_path(path)) return raw;
  return gunzip(raw, path, op);
}

}  // namespace detail

METAGRAD_NAMESPACE_END
