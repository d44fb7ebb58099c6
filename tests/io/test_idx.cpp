// Tests of the IDX reader: round trips through a tiny independent writer (raw and gzip) for every element
// type, each malformed-file case raising io_error that names the path, load_mnist on a synthetic directory,
// and (when Debian's dataset-fashion-mnist is installed) on the real Fashion-MNIST files.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <metagrad/io.hpp>
#include <string>
#include <vector>

#if defined(METAGRAD_WITH_ZLIB) && METAGRAD_WITH_ZLIB
#include <zlib.h>
#endif

using namespace metagrad;
namespace fs = std::filesystem;

namespace {

// A fresh directory under the system temp dir, removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("metagrad_test_idx_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  static int& counter() {
    static int c = 0;
    return c;
  }
};

using Bytes = std::vector<std::uint8_t>;

void put_be32(Bytes& b, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(v >> s));
}

// Big-endian bytes of `v`, written by shifting the integer image (independent of the reader's memcpy path).
template <class U>
void put_be(Bytes& b, U v) {
  std::uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(U));
  for (int i = static_cast<int>(sizeof(U)) - 1; i >= 0; --i) b.push_back(static_cast<std::uint8_t>(bits >> (8 * i)));
}

template <class U>
Bytes idx_bytes(std::uint8_t code, const std::vector<std::uint32_t>& dims, const std::vector<U>& values) {
  Bytes b = {0, 0, code, static_cast<std::uint8_t>(dims.size())};
  for (auto d : dims) put_be32(b, d);
  for (auto v : values) put_be(b, v);
  return b;
}

void write_bytes(const fs::path& p, const Bytes& b) {
  std::FILE* f = std::fopen(p.string().c_str(), "wb");
  REQUIRE(f);
  REQUIRE(std::fwrite(b.data(), 1, b.size(), f) == b.size());
  std::fclose(f);
}

#if defined(METAGRAD_WITH_ZLIB) && METAGRAD_WITH_ZLIB
void write_gz(const fs::path& p, const Bytes& b) {
  gzFile f = gzopen(p.string().c_str(), "wb");
  REQUIRE(f);
  REQUIRE(gzwrite(f, b.data(), static_cast<unsigned>(b.size())) == static_cast<int>(b.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

Bytes read_bytes(const fs::path& p) {
  std::FILE* f = std::fopen(p.string().c_str(), "rb");
  REQUIRE(f);
  Bytes b;
  int c;
  while ((c = std::fgetc(f)) != EOF) b.push_back(static_cast<std::uint8_t>(c));
  std::fclose(f);
  return b;
}
#endif

// Runs `f`, requires an io_error, and returns its message.
template <class F>
std::string io_error_message(F&& f) {
  try {
    f();
  } catch (const io_error& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL("expected io_error, got another exception: " << e.what());
  }
  FAIL("expected io_error, nothing was thrown");
  return {};
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("idx: round trip of every element type, raw and gzip") {
  TempDir dir;
  const std::vector<bool> gz_modes = detail::have_zlib ? std::vector<bool>{false, true} : std::vector<bool>{false};
  for (bool gz : gz_modes) {
    CAPTURE(gz);
    const auto path = [&](const std::string& name) { return dir.path / (name + (gz ? ".gz" : "")); };
    const auto write = [&](const fs::path& p, const Bytes& b) {
#if defined(METAGRAD_WITH_ZLIB) && METAGRAD_WITH_ZLIB
      if (gz) return write_gz(p, b);
#endif
      write_bytes(p, b);
    };

    SUBCASE("uint8, rank 3") {
      std::vector<std::uint8_t> v;
      for (int i = 0; i < 2 * 3 * 4; ++i) v.push_back(static_cast<std::uint8_t>(i * 11));
      write(path("u8"), idx_bytes<std::uint8_t>(0x08, {2, 3, 4}, v));
      const auto t = read_idx<std::uint8_t, 3>(path("u8"));
      CHECK(t.shape() == Shape<3>{2, 3, 4});
      CHECK(t.to_vector() == v);
      CHECK(t(1, 2, 3) == v[23]);
    }
    SUBCASE("int8 and int16 widen to int32, keeping signs") {
      write(path("i8"), idx_bytes<std::int8_t>(0x09, {4}, {-128, -1, 0, 127}));
      CHECK(read_idx<std::int32_t, 1>(path("i8")).to_vector() == std::vector<std::int32_t>{-128, -1, 0, 127});
      write(path("i16"), idx_bytes<std::int16_t>(0x0B, {2, 2}, {-32768, -2, 300, 32767}));
      CHECK(read_idx<std::int32_t, 2>(path("i16")).to_vector() == std::vector<std::int32_t>{-32768, -2, 300, 32767});
    }
    SUBCASE("int32, float, double") {
      write(path("i32"), idx_bytes<std::int32_t>(0x0C, {3}, {-2000000000, 7, 2000000000}));
      CHECK(read_idx<std::int32_t, 1>(path("i32")).to_vector() ==
            std::vector<std::int32_t>{-2000000000, 7, 2000000000});
      write(path("f32"), idx_bytes<float>(0x0D, {1, 3}, {1.5f, -0.25f, 3.0e7f}));
      CHECK(read_idx<float, 2>(path("f32")).to_vector() == std::vector<float>{1.5f, -0.25f, 3.0e7f});
      write(path("f64"), idx_bytes<double>(0x0E, {2}, {0.1, -1e300}));
      CHECK(read_idx<double, 1>(path("f64")).to_vector() == std::vector<double>{0.1, -1e300});
    }
    SUBCASE("zero-sized and rank-0 arrays") {
      write(path("empty"), idx_bytes<std::uint8_t>(0x08, {0, 5}, {}));
      CHECK(read_idx<std::uint8_t, 2>(path("empty")).shape() == Shape<2>{0, 5});
      write(path("scalar"), idx_bytes<float>(0x0D, {}, {42.0f}));
      CHECK(read_idx<float, 0>(path("scalar")).item() == 42.0f);
    }
    SUBCASE("type-erased reader") {
      write(path("any"), idx_bytes<std::int16_t>(0x0B, {3}, {1, -2, 3}));
      const IdxArray a = read_idx_any(path("any"));
      CHECK(a.type == IdxType::i16);
      CHECK(a.dtype == DType::i32);
      CHECK(a.shape == std::vector<index_t>{3});
      REQUIRE(a.data.size() == 12);
      std::int32_t got[3];
      std::memcpy(got, a.data.data(), 12);
      CHECK(got[1] == -2);
    }
  }
}

TEST_CASE("idx: malformed files raise io_error naming the path and the problem") {
  TempDir dir;
  const auto p = dir.path / "bad-idx";
  const auto good = idx_bytes<std::uint8_t>(0x08, {2, 3}, {1, 2, 3, 4, 5, 6});

  SUBCASE("missing file") {
    const auto m = io_error_message([&] { read_idx<std::uint8_t, 2>(dir.path / "nope"); });
    CHECK(contains(m, (dir.path / "nope").string()));
  }
  SUBCASE("bad magic") {
    Bytes b = good;
    b[0] = 0x1f;
    write_bytes(p, b);
    const auto m = io_error_message([&] { read_idx<std::uint8_t, 2>(p); });
    CHECK(contains(m, p.string()));
    CHECK(contains(m, "magic"));
  }
  SUBCASE("unknown type code") {
    Bytes b = good;
    b[2] = 0x0A;
    write_bytes(p, b);
    const auto m = io_error_message([&] { read_idx<std::uint8_t, 2>(p); });
    CHECK(contains(m, p.string()));
    CHECK(contains(m, "0x0a"));
  }
  SUBCASE("wrong rank") {
    write_bytes(p, good);
    const auto m = io_error_message([&] { read_idx<std::uint8_t, 3>(p); });
    CHECK(contains(m, p.string()));
    CHECK(contains(m, "2 dimensions, expected 3"));
  }
  SUBCASE("wrong element type") {
    write_bytes(p, good);
    const auto m = io_error_message([&] { read_idx<float, 2>(p); });
    CHECK(contains(m, p.string()));
    CHECK(contains(m, "float32"));
    CHECK(contains(m, "uint8"));
  }
  SUBCASE("truncated data") {
    Bytes b = good;
    b.pop_back();
    write_bytes(p, b);
    const auto m = io_error_message([&] { read_idx<std::uint8_t, 2>(p); });
    CHECK(contains(m, p.string()));
    CHECK(contains(m, "truncated"));
    CHECK(contains(m, "byte 12"));
  }
  SUBCASE("truncated header") {
    Bytes b(good.begin(), good.begin() + 7);
    write_bytes(p, b);
    CHECK(contains(io_error_message([&] { read_idx<std::uint8_t, 2>(p); }), "truncated header"));
    write_bytes(p, Bytes{0, 0});
    CHECK(contains(io_error_message([&] { read_idx<std::uint8_t, 2>(p); }), "truncated"));
  }
  SUBCASE("dimensions far beyond the file size") {
    write_bytes(p, idx_bytes<std::uint8_t>(0x08, {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu}, {1, 2}));
    const auto m = io_error_message([&] { read_idx<std::uint8_t, 3>(p); });
    CHECK(contains(m, "truncated"));
  }
  SUBCASE("trailing bytes") {
    Bytes b = good;
    b.push_back(9);
    b.push_back(9);
    write_bytes(p, b);
    const auto m = io_error_message([&] { read_idx<std::uint8_t, 2>(p); });
    CHECK(contains(m, p.string()));
    CHECK(contains(m, "2 trailing bytes"));
    CHECK(contains(m, "byte 18"));
  }
#if defined(METAGRAD_WITH_ZLIB) && METAGRAD_WITH_ZLIB
  SUBCASE("corrupt gzip") {
    std::vector<std::uint8_t> big(4000);
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::uint8_t>((i * 7919) % 251);
    const auto gz = dir.path / "data-idx.gz";
    write_gz(gz, idx_bytes<std::uint8_t>(0x08, {4000}, big));
    REQUIRE(read_idx<std::uint8_t, 1>(gz).to_vector() == big);
    const Bytes packed = read_bytes(gz);

    Bytes flipped = packed;  // a flipped bit in the deflate data or the CRC
    flipped[packed.size() / 2] ^= 0x10;
    write_bytes(gz, flipped);
    auto m = io_error_message([&] { read_idx<std::uint8_t, 1>(gz); });
    CHECK(contains(m, gz.string()));
    CHECK(contains(m, "corrupt gzip"));

    Bytes crc = packed;  // the CRC trailer alone
    crc[packed.size() - 6] ^= 0xFF;
    write_bytes(gz, crc);
    CHECK(contains(io_error_message([&] { read_idx<std::uint8_t, 1>(gz); }), "corrupt gzip"));

    write_bytes(gz, Bytes(packed.begin(), packed.begin() + static_cast<std::ptrdiff_t>(packed.size() - 20)));
    m = io_error_message([&] { read_idx<std::uint8_t, 1>(gz); });
    CHECK(contains(m, gz.string()));
    CHECK(contains(m, "truncated"));

    write_bytes(gz, Bytes(good));  // not gzip at all
    CHECK(contains(io_error_message([&] { read_idx<std::uint8_t, 2>(gz); }), "gzip"));

    Bytes trailing = packed;
    trailing.push_back(0);
    trailing.push_back(0);
    write_bytes(gz, trailing);
    CHECK(contains(io_error_message([&] { read_idx<std::uint8_t, 1>(gz); }), "trailing"));
  }
#else
  SUBCASE("gzip without zlib") {
    const auto gz = dir.path / "data-idx.gz";
    write_bytes(gz, good);
    const auto m = io_error_message([&] { read_idx<std::uint8_t, 2>(gz); });
    CHECK(contains(m, "no zlib"));
    CHECK(contains(m, "gunzip"));
  }
#endif
}

TEST_CASE("idx: load_mnist on a synthetic directory") {
  TempDir dir;
  constexpr int n = 5, rows = 28, cols = 28;
  std::vector<std::uint8_t> pixels(n * rows * cols), labels = {3, 0, 9, 1, 7};
  for (std::size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<std::uint8_t>(i % 256);
  write_bytes(dir.path / "train-images-idx3-ubyte", idx_bytes<std::uint8_t>(0x08, {n, rows, cols}, pixels));
  write_bytes(dir.path / "train-labels-idx1-ubyte", idx_bytes<std::uint8_t>(0x08, {n}, labels));

  SUBCASE("shapes, pixels and labels") {
    const MnistData d = load_mnist(dir.path, MnistSplit::train);
    CHECK(d.images.shape() == Shape<4>{n, 1, rows, cols});
    CHECK(d.images(2, 0, 3, 4) == pixels[static_cast<std::size_t>((2 * rows + 3) * cols + 4)]);
    CHECK(d.labels.to_vector() == std::vector<std::int64_t>{3, 0, 9, 1, 7});
  }
  SUBCASE("the test split is missing") {
    const auto m = io_error_message([&] { load_mnist(dir.path, MnistSplit::test); });
    CHECK(contains(m, "t10k-images-idx3-ubyte"));
    CHECK(contains(m, dir.path.string()));
  }
  SUBCASE("counts disagree") {
    write_bytes(dir.path / "t10k-images-idx3-ubyte", idx_bytes<std::uint8_t>(0x08, {n, rows, cols}, pixels));
    write_bytes(dir.path / "t10k-labels-idx1-ubyte", idx_bytes<std::uint8_t>(0x08, {4}, {1, 2, 3, 4}));
    const auto m = io_error_message([&] { load_mnist(dir.path, MnistSplit::test); });
    CHECK(contains(m, "5 images"));
    CHECK(contains(m, "4 labels"));
  }
  SUBCASE("a label out of range") {
    write_bytes(dir.path / "t10k-images-idx3-ubyte", idx_bytes<std::uint8_t>(0x08, {n, rows, cols}, pixels));
    write_bytes(dir.path / "t10k-labels-idx1-ubyte", idx_bytes<std::uint8_t>(0x08, {n}, {1, 2, 10, 4, 5}));
    const auto m = io_error_message([&] { load_mnist(dir.path, MnistSplit::test); });
    CHECK(contains(m, "label 10 of sample 2"));
  }
}

TEST_CASE("idx: load_mnist on Fashion-MNIST (dataset-fashion-mnist)") {
  const fs::path dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(dir / "train-images-idx3-ubyte.gz") && !fs::exists(dir / "train-images-idx3-ubyte")) {
    MESSAGE("skipped: " << dir.string() << " not found (apt-get install dataset-fashion-mnist)");
    return;
  }
  if (!detail::have_zlib && !fs::exists(dir / "train-images-idx3-ubyte")) {
    MESSAGE("skipped: Fashion-MNIST is gzip-compressed and this build has no zlib");
    return;
  }
  for (auto [split, count] : {std::pair{MnistSplit::train, 60000}, std::pair{MnistSplit::test, 10000}}) {
    const MnistData d = load_mnist(dir, split);
    CHECK(d.images.shape() == Shape<4>{count, 1, 28, 28});
    CHECK(d.labels.shape() == Shape<1>{count});
    std::vector<index_t> per_class(10, 0);
    index_t out_of_range = 0;
    for (std::int64_t l : d.labels.to_vector()) {
      if (l < 0 || l >= 10)
        ++out_of_range;
      else
        ++per_class[static_cast<std::size_t>(l)];
    }
    CHECK(out_of_range == 0);
    // Fashion-MNIST is balanced: 6,000 (train) or 1,000 (test) images of each class.
    for (index_t c : per_class) CHECK(c == count / 10);
    std::uint8_t mx = 0;
    for (std::uint8_t v : d.images.to_vector()) mx = std::max(mx, v);
    CHECK(mx == 255);
  }
}
