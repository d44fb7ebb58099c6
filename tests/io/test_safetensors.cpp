// Tests of safetensors reading and writing and of AtomicFile: round trips of every dtype at ranks 0-4 and
// of metadata, the writer's exact byte layout, a file from an independent hand-built header, every kind of
// corrupt file raising io_error with the path, a file written by PyTorch (when python3 can import torch),
// and atomic replacement that leaves the old file intact on failure.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <metagrad/io.hpp>
#include <sstream>
#include <string>
#include <vector>

using namespace metagrad;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("metagrad_test_st_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

using Bytes = std::vector<std::uint8_t>;

void write_bytes(const fs::path& p, const Bytes& b) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  REQUIRE(f.good());
}

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// An independent minimal safetensors writer: little-endian length, the header text as given, the data.
Bytes st_file(const std::string& header, const Bytes& data) {
  Bytes b;
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<std::uint8_t>(std::uint64_t{header.size()} >> (8 * i)));
  b.insert(b.end(), header.begin(), header.end());
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

template <class U>
void put_le(Bytes& b, U v) {
  std::uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(U));
  for (std::size_t i = 0; i < sizeof(U); ++i) b.push_back(static_cast<std::uint8_t>(bits >> (8 * i)));
}

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

// Distinct, dtype-appropriate values for element i.
template <class T>
T value_at(index_t i) {
  if constexpr (std::is_same_v<T, bool>)
    return i % 3 == 1;
  else if constexpr (std::is_same_v<T, std::uint8_t>)
    return static_cast<T>((i * 37 + 5) % 256);
  else if constexpr (std::is_floating_point_v<T>)
    return static_cast<T>(i) * static_cast<T>(0.37) - static_cast<T>(2.5);
  else
    return static_cast<T>((i % 2 ? -1 : 1) * (i * 1000003 + 7));
}

template <class T, int R>
Tensor<T, R> filled(const Shape<R>& s) {
  Tensor<T, R> t;
  t.allocate(s);
  for (index_t i = 0; i < s.numel(); ++i) t.data()[i] = value_at<T>(i);
  return t;
}

template <class T, int R>
void check_round_trip(const fs::path& dir, const Shape<R>& s) {
  const auto t = filled<T, R>(s);
  const auto p = dir / ("rt_" + std::to_string(R) + ".safetensors");
  write_safetensors(p, {{"x", t}});
  const SafeTensors f(p);
  CHECK(f.dtype("x") == dtype_of<T>);
  CHECK(f.shape("x") == std::vector<index_t>(s.v, s.v + R));
  const auto back = f.template get<T, R>("x");
  CHECK(back.shape() == s);
  CHECK(back.to_vector() == t.to_vector());
}

}  // namespace

TEST_CASE_TEMPLATE("safetensors: round trip at ranks 0 to 4", T, float, double, std::int32_t, std::int64_t,
                   std::uint8_t, bool) {
  TempDir dir;
  check_round_trip<T, 0>(dir.path, Shape<0>{});
  check_round_trip<T, 1>(dir.path, Shape<1>{7});
  check_round_trip<T, 2>(dir.path, Shape<2>{3, 5});
  check_round_trip<T, 3>(dir.path, Shape<3>{2, 3, 4});
  check_round_trip<T, 4>(dir.path, Shape<4>{2, 1, 3, 2});
  check_round_trip<T, 2>(dir.path, Shape<2>{0, 4});
}

TEST_CASE("safetensors: several tensors, metadata and strided sources") {
  TempDir dir;
  const auto w = filled<float, 2>(Shape<2>{3, 4});
  const auto b = filled<double, 1>(Shape<1>{3});
  const auto idx = filled<std::int64_t, 1>(Shape<1>{5});
  // A transposed view of w: shape [4, 3], strides [1, 4]; it must be written row-major as the view reads.
  const auto wt = Tensor<float, 2>::from_storage(w.storage(), 0, Shape<2>{4, 3}, Strides<2>{{1, 4}});
  const std::map<std::string, std::string> meta = {
      {"format", "pt"}, {"quote\"back\\slash", "line\nbreak\ttab \x01 caf\xc3\xa9"}, {"empty", ""}};
  const auto p = dir.path / "model.safetensors";
  write_safetensors(p, {{"fc.weight", w}, {"fc.bias", b}, {"0.index", idx}, {"fc.weight_t", wt}}, meta);

  const SafeTensors f(p);
  CHECK(f.size() == 4);
  CHECK(f.names() == std::vector<std::string>{"0.index", "fc.bias", "fc.weight", "fc.weight_t"});
  CHECK(f.contains("fc.bias"));
  CHECK_FALSE(f.contains("fc.Bias"));
  CHECK(f.metadata() == meta);
  CHECK(f.get<double, 1>("fc.bias").to_vector() == b.to_vector());
  CHECK(f.get<std::int64_t, 1>("0.index").to_vector() == idx.to_vector());
  const auto back_t = f.get<float, 2>("fc.weight_t");
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 3; ++j) CHECK(back_t(i, j) == w(j, i));

  SUBCASE("type-erased access") {
    const TensorBytes r = f.raw("fc.weight");
    CHECK(r.dtype == DType::f32);
    CHECK(r.shape == std::vector<index_t>{3, 4});
    REQUIRE(r.bytes.size() == 48);
    float v5;
    std::memcpy(&v5, r.bytes.data() + 20, 4);
    CHECK(v5 == w.data()[5]);
  }
  SUBCASE("wrong dtype, wrong rank and missing names") {
    auto m = io_error_message([&] { (void)f.get<double, 2>("fc.weight"); });
    CHECK(contains(m, "fc.weight"));
    CHECK(contains(m, p.string()));
    CHECK(contains(m, "F32"));
    CHECK(contains(m, "F64"));
    m = io_error_message([&] { (void)f.get<float, 3>("fc.weight"); });
    CHECK(contains(m, "rank 2"));
    CHECK(contains(m, "rank 3"));
    m = io_error_message([&] { (void)f.get<float, 1>("nope"); });
    CHECK(contains(m, "no tensor 'nope'"));
    CHECK(contains(m, "fc.bias"));
  }
}

TEST_CASE("safetensors: the writer lays files out as the reference implementation") {
  const Tensor<float, 1> a = {1.0f, 2.0f};
  const Tensor<std::int32_t, 2> z = {{7}};
  const Bytes out = serialize_safetensors({{"z", z}, {"a", a}}, {{"k", "v"}});
  // Expected bytes, written out by hand: compact JSON, "__metadata__" first, names sorted, data in the same
  // order, header padded with spaces to a multiple of 8.
  std::string header = R"({"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("z":{"dtype":"I32","shape":[1,1],"data_offsets":[8,12]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  Bytes data;
  put_le(data, 1.0f);
  put_le(data, 2.0f);
  put_le(data, std::int32_t{7});
  CHECK(out == st_file(header, data));
  CHECK((out.size() - 12) % 8 == 0);
}

TEST_CASE("safetensors: reads a file built by an independent writer") {
  TempDir dir;
  // Whitespace, key order different from the data order, an escaped key, metadata last, padding.
  const std::string header =
      "{ \"b\\u00e9ta\" : {\"data_offsets\":[8, 16], \"shape\":[], \"dtype\":\"F64\"},\n"
      "  \"alpha\": {\"dtype\": \"I32\", \"shape\": [2], \"data_offsets\": [0, 8]},\n"
      "  \"__metadata__\": {\"who\": \"hand\\/made\"} }    ";
  Bytes data;
  put_le(data, std::int32_t{-5});
  put_le(data, std::int32_t{1 << 30});
  put_le(data, 0.125);
  const auto p = dir.path / "hand.safetensors";
  write_bytes(p, st_file(header, data));
  const SafeTensors f(p);
  CHECK(f.names() == std::vector<std::string>{"alpha", "b\xc3\xa9ta"});
  CHECK(f.get<std::int32_t, 1>("alpha").to_vector() == std::vector<std::int32_t>{-5, 1 << 30});
  CHECK(f.get<double, 0>("b\xc3\xa9ta").item() == 0.125);
  CHECK(f.metadata().at("who") == "hand/made");
}

TEST_CASE("safetensors: corrupt files raise io_error naming the path and the problem") {
  TempDir dir;
  const auto p = dir.path / "bad.safetensors";
  const std::string ok_entry = R"("x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const Bytes eight(8, 0);
  const auto open_error = [&](const Bytes& file) {
    write_bytes(p, file);
    const auto m = io_error_message([&] { SafeTensors f(p); });
    CHECK(contains(m, p.string()));
    return m;
  };

  write_bytes(p, st_file("{" + ok_entry + "}", eight));
  REQUIRE_NOTHROW(SafeTensors{p});  // the base every case below breaks in one place

  SUBCASE("file shorter than the length field") { CHECK(contains(open_error(Bytes{1, 0, 0}), "too short")); }
  SUBCASE("header length beyond the file") {
    Bytes b = st_file("{" + ok_entry + "}", eight);
    b[0] = 0xff;
    b[5] = 0x01;
    CHECK(contains(open_error(b), "header length"));
  }
  SUBCASE("header length cutting the JSON short") {
    Bytes b = st_file("{" + ok_entry + "}", eight);
    b[0] = static_cast<std::uint8_t>(b[0] - 3);
    CHECK(contains(open_error(b), "malformed JSON"));
  }
  SUBCASE("header not an object") { CHECK(contains(open_error(st_file("[1,2]   ", eight)), "byte 8")); }
  SUBCASE("bad JSON") {
    CHECK(contains(open_error(st_file("{" + ok_entry + ",}", eight)), "expected a string key"));
    CHECK(contains(open_error(st_file("{" + ok_entry + " x}", eight)), "expected ',' or '}'"));
    CHECK(contains(open_error(st_file(R"({"x":{"dtype":"F32,"shape":[2],"data_offsets":[0,8]}})", eight)),
                   "malformed JSON"));
    CHECK(contains(open_error(st_file(R"({"x\q":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", eight)),
                   "invalid escape"));
    CHECK(contains(open_error(st_file(R"({"x":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", eight)),
                   "only integers"));
    CHECK(contains(open_error(st_file(R"({"x":{"dtype":"F32","shape":[02],"data_offsets":[0,8]}})", eight)),
                   "leading zeros"));
    CHECK(contains(
        open_error(st_file(R"({"x":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,8]}})", eight)),
        "64-bit range"));
    CHECK(contains(open_error(st_file("{" + ok_entry + "," + ok_entry + "}", eight)), "duplicate key \"x\""));
    const auto m = open_error(st_file("{" + ok_entry + "} extra", eight));
    CHECK(contains(m, "after the JSON value"));
    CHECK(contains(m, "byte " + std::to_string(8 + 2 + ok_entry.size() + 1)));
    std::string deep(100, '[');
    CHECK(contains(open_error(st_file("{\"x\":" + deep + "}", eight)), "nesting"));
  }
  SUBCASE("fields missing or of the wrong kind") {
    CHECK(contains(open_error(st_file(R"({"x":{"dtype":"F32","shape":[2]}})", eight)), "no \"data_offsets\""));
    CHECK(contains(open_error(st_file(R"({"x":{"dtype":5,"shape":[2],"data_offsets":[0,8]}})", eight)),
                   "must be a string"));
    CHECK(contains(open_error(st_file(R"({"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", eight)),
                   "non-negative"));
    CHECK(contains(open_error(st_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", eight)),
                   "two non-negative integers"));
    CHECK(contains(open_error(st_file(R"({"x":[1]})", eight)), "must be an object"));
    CHECK(contains(open_error(st_file("{\"__metadata__\":{\"a\":1}," + ok_entry + "}", eight)), "must be a string"));
  }
  SUBCASE("unknown dtype") {
    const auto m = open_error(st_file(R"({"x":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", eight));
    CHECK(contains(m, "unknown dtype \"F33\""));
  }
  SUBCASE("a dtype metagrad lacks validates, and refuses to load") {
    write_bytes(p, st_file(R"({"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},)"
                           R"("x":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})",
                           eight));
    const SafeTensors f(p);
    CHECK(f.dtype_string("h") == "F16");
    CHECK(f.get<std::uint8_t, 1>("x").shape() == Shape<1>{4});
    auto m = io_error_message([&] { (void)f.dtype("h"); });
    CHECK(contains(m, "F16"));
    CHECK(contains(m, p.string()));
    m = io_error_message([&] { (void)f.get<float, 1>("h"); });
    CHECK(contains(m, "F16"));
  }
  SUBCASE("offsets out of range") {
    CHECK(contains(open_error(st_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,12]}})", eight)),
                   "outside the data region"));
    CHECK(contains(open_error(st_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", eight)),
                   "outside the data region"));
  }
  SUBCASE("size different from numel * itemsize") {
    CHECK(contains(open_error(st_file(R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", eight)),
                   "needs 12 bytes"));
  }
  SUBCASE("overlapping and gapped tensors") {
    CHECK(contains(open_error(st_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                      R"("y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                      eight)),
                   "overlap"));
    CHECK(contains(open_error(st_file(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", eight)),
                   "gap of 4 bytes"));
  }
  SUBCASE("truncated data and trailing bytes") {
    CHECK(contains(open_error(st_file("{" + ok_entry + "}", Bytes(5, 0))), "outside the data region"));
    const auto m = open_error(st_file("{" + ok_entry + "}", Bytes(11, 0)));
    CHECK(contains(m, "3 bytes after the last tensor"));
  }
}

TEST_CASE("safetensors: a file written from PyTorch") {
  // python3 on PATH first; /usr/bin/python3 where a version manager's python3 (without Debian's torch)
  // shadows the system one.
  std::string python;
  for (const char* candidate : {"python3", "/usr/bin/python3"}) {
    if (std::system((std::string(candidate) + " -c \"import torch\" >/dev/null 2>&1").c_str()) == 0) {
      python = candidate;
      break;
    }
  }
  if (python.empty()) {
    MESSAGE("skipped: python3 cannot import torch (Debian: apt-get install python3-torch)");
    return;
  }
  const fs::path script = fs::path(__FILE__).parent_path() / "make_torch_safetensors.py";
  if (!fs::exists(script)) {
    MESSAGE("skipped: " << script.string() << " not found (run the tests from the source tree)");
    return;
  }
  TempDir dir;
  const std::string cmd = python + " \"" + script.string() + "\" \"" + dir.path.string() + "\"";
  REQUIRE(std::system(cmd.c_str()) == 0);
  const SafeTensors f(dir.path / "model.safetensors");
  CHECK(f.metadata().at("format") == "pt");

  std::ifstream expected(dir.path / "expected.txt");
  std::string line;
  int checked = 0;
  while (std::getline(expected, line)) {
    std::stringstream ls(line);
    std::string name, dtype, shape_text, values_text;
    std::getline(ls, name, '\t');
    std::getline(ls, dtype, '\t');
    std::getline(ls, shape_text, '\t');
    std::getline(ls, values_text);
    CAPTURE(name);
    REQUIRE(f.contains(name));
    CHECK(f.dtype_string(name) == dtype);
    std::vector<index_t> shape;
    std::stringstream ss(shape_text);
    for (std::string d; std::getline(ss, d, ',');) shape.push_back(std::stoll(d));
    CHECK(f.shape(name) == shape);
    // Each stored element, decoded from the raw little-endian bytes, must equal Python's exact repr.
    const TensorBytes r = f.raw(name);
    std::stringstream vs(values_text);
    std::size_t i = 0;
    for (std::string v; vs >> v; ++i) {
      CAPTURE(i);
      const std::uint8_t* b = r.bytes.data() + i * dtype_size(r.dtype);
      REQUIRE((i + 1) * dtype_size(r.dtype) <= r.bytes.size());
      switch (r.dtype) {
        case DType::f32: {
          float x;
          std::memcpy(&x, b, 4);
          CHECK(static_cast<double>(x) == std::strtod(v.c_str(), nullptr));
          break;
        }
        case DType::f64: {
          double x;
          std::memcpy(&x, b, 8);
          CHECK(x == std::strtod(v.c_str(), nullptr));
          break;
        }
        case DType::i32: {
          std::int32_t x;
          std::memcpy(&x, b, 4);
          CHECK(x == std::stoll(v));
          break;
        }
        case DType::i64: {
          std::int64_t x;
          std::memcpy(&x, b, 8);
          CHECK(x == std::stoll(v));
          break;
        }
        case DType::u8:
        case DType::b8:
          CHECK(int{*b} == std::stoi(v));
          break;
      }
    }
    CHECK(i * dtype_size(r.dtype) == r.bytes.size());
    ++checked;
  }
  CHECK(checked == 12);
  // The typed path agrees with the raw one.
  CHECK(f.get<float, 2>("0.weight")(2, 3) == doctest::Approx(11.0 / 7 - 0.5));
  CHECK(f.get<std::int64_t, 0>("num_batches_tracked").item() == 42);
  CHECK(f.get<bool, 1>("mask").to_vector() == std::vector<bool>{true, false, false, true});
}

TEST_CASE("atomic_file: the target is replaced whole or not at all") {
  TempDir dir;
  const auto p = dir.path / "ckpt.bin";
  write_file_atomically(p, "old contents");
  CHECK(read_text(p) == "old contents");
  const auto only_target = [&] {
    int n = 0;
    for (const auto& e : fs::directory_iterator(dir.path)) n += e.path() != p;
    return n == 0;
  };

  SUBCASE("commit replaces") {
    AtomicFile f(p);
    f.write("new ");
    f.write("contents");
    CHECK(read_text(p) == "old contents");  // nothing visible before commit
    f.commit();
    CHECK(f.committed());
    CHECK(read_text(p) == "new contents");
    CHECK(only_target());
    CHECK_THROWS_AS(f.write("more"), io_error);
  }
  SUBCASE("an exception before commit leaves the old file and no temporary") {
    try {
      AtomicFile f(p);
      f.write("half of a new fi");
      throw std::runtime_error("crash while writing");
    } catch (const std::runtime_error&) {
    }
    CHECK(read_text(p) == "old contents");
    CHECK(only_target());
  }
  SUBCASE("a bad safetensors entry list leaves the old file") {
    const Tensor<float, 1> a = {1.0f};
    CHECK_THROWS_AS(write_safetensors(p, {{"a", a}, {"a", a}}), error);
    CHECK_THROWS_AS(write_safetensors(p, {{"__metadata__", a}}), error);
    CHECK(read_text(p) == "old contents");
    CHECK(only_target());
  }
  SUBCASE("a directory that does not exist") {
    const auto bad = dir.path / "no" / "such" / "dir" / "f.safetensors";
    const Tensor<float, 1> a = {1.0f};
    const auto m = io_error_message([&] { write_safetensors(bad, {{"a", a}}); });
    CHECK(contains(m, bad.string()));
    CHECK(contains(m, "No such file or directory"));
  }
#if defined(__linux__)
  SUBCASE("a directory where nothing can be created") {
    // Not even root may create files in /proc.
    const auto m = io_error_message([&] { AtomicFile f("/proc/metagrad_cannot_create_here"); });
    CHECK(contains(m, "/proc/metagrad_cannot_create_here"));
  }
#endif
}
