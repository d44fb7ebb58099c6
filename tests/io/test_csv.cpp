// Tests of read_csv: values and column names against the numbers written into the test, options
// (delimiter, no header), the accepted variations (quotes, spaces, CRLF, blank lines, BOM), and errors
// naming the file, line and column for bad fields and ragged rows.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <metagrad/io.hpp>
#include <string>
#include <vector>

using namespace metagrad;
namespace fs = std::filesystem;

namespace {

struct TempFile {
  fs::path path;
  explicit TempFile(const std::string& content, const std::string& name = "data.csv") {
    static int counter = 0;
    const fs::path dir = fs::temp_directory_path() /
                         ("metagrad_test_csv_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(dir);
    path = dir / name;
    std::ofstream f(path, std::ios::binary);
    f << content;
  }
  ~TempFile() {
    std::error_code ec;
    fs::remove_all(path.parent_path(), ec);
  }
};

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

TEST_CASE("csv: values and column names") {
  TempFile f("sepal_length,sepal_width,label\n5.1,3.5,0\n4.9,3.0,0\n6.3,-2.5e-1,2\n");
  const auto t = read_csv(f.path);
  CHECK(t.columns == std::vector<std::string>{"sepal_length", "sepal_width", "label"});
  CHECK(t.values.shape() == Shape<2>{3, 3});
  CHECK(t.values.to_vector() == std::vector<float>{5.1f, 3.5f, 0.0f, 4.9f, 3.0f, 0.0f, 6.3f, -0.25f, 2.0f});

  const auto d = read_csv<double>(f.path);
  CHECK(d.values(2, 0) == 6.3);
  CHECK(d.values(2, 1) == -0.25);
}

TEST_CASE("csv: options and accepted variations") {
  SUBCASE("no header, semicolons, integers") {
    TempFile f("1;2;3\n-4;5;+6\n");
    const auto t = read_csv<std::int64_t>(f.path, {.delimiter = ';', .header = false});
    CHECK(t.columns.empty());
    CHECK(t.values.shape() == Shape<2>{2, 3});
    CHECK(t.values.to_vector() == std::vector<std::int64_t>{1, 2, 3, -4, 5, 6});
  }
  SUBCASE("tabs") {
    TempFile f("a\tb\n1\t2\n");
    CHECK(read_csv<std::int32_t>(f.path, {.delimiter = '\t'}).values.to_vector() == std::vector<std::int32_t>{1, 2});
  }
  SUBCASE("quotes, spaces, CRLF, blank lines and a byte-order mark") {
    TempFile f("\xEF\xBB\xBF\"width, cm\" , \"say \"\"hi\"\"\"\r\n\r\n 1.5 , \"2\"\r\n  \n3,4\r\n\n");
    const auto t = read_csv(f.path);
    CHECK(t.columns == std::vector<std::string>{"width, cm", "say \"hi\""});
    CHECK(t.values.to_vector() == std::vector<float>{1.5f, 2.0f, 3.0f, 4.0f});
  }
  SUBCASE("nan and inf in floating columns") {
    TempFile f("x\nnan\ninf\n-inf\n");
    const auto v = read_csv<double>(f.path).values.to_vector();
    CHECK(std::isnan(v[0]));
    CHECK(v[1] == std::numeric_limits<double>::infinity());
    CHECK(v[2] == -std::numeric_limits<double>::infinity());
  }
  SUBCASE("header only, and an empty file without header") {
    TempFile f("a,b,c\n");
    CHECK(read_csv(f.path).values.shape() == Shape<2>{0, 3});
    TempFile e("");
    CHECK(read_csv(e.path, {.header = false}).values.shape() == Shape<2>{0, 0});
  }
}

TEST_CASE("csv: errors name the file, the line and the column") {
  SUBCASE("text in a number column") {
    TempFile f("a,b\n1,2\n3,abc\n");
    const auto m = io_error_message([&] { read_csv(f.path); });
    CHECK(contains(m, f.path.string()));
    CHECK(contains(m, "line 3"));
    CHECK(contains(m, "column 2 ('b')"));
    CHECK(contains(m, "'abc' is not a number of type float32"));
  }
  SUBCASE("fraction in an integer column, out of range, trailing junk") {
    TempFile f("a\n1.5\n");
    CHECK(contains(io_error_message([&] { read_csv<std::int32_t>(f.path); }), "'1.5' is not a number of type int32"));
    TempFile g("a\n3000000000\n");
    CHECK(contains(io_error_message([&] { read_csv<std::int32_t>(g.path); }), "out of range for int32"));
    TempFile h("a\n12x\n");
    CHECK(contains(io_error_message([&] { read_csv(h.path); }), "'12x'"));
  }
  SUBCASE("empty field and trailing delimiter") {
    TempFile f("a,b\n1,\n");
    auto m = io_error_message([&] { read_csv(f.path); });
    CHECK(contains(m, "line 2, column 2"));
    CHECK(contains(m, "empty field"));
    TempFile g("1,2,\n", "g.csv");
    m = io_error_message([&] { read_csv(g.path, {.header = false}); });
    CHECK(contains(m, "column 3"));
  }
  SUBCASE("ragged rows") {
    TempFile f("a,b,c\n1,2,3\n\n4,5\n");
    const auto m = io_error_message([&] { read_csv(f.path); });
    CHECK(contains(m, f.path.string()));
    CHECK(contains(m, "line 4"));
    CHECK(contains(m, "2 fields where line 1 has 3"));
    TempFile g("1,2\n3,4,5\n");
    CHECK(contains(io_error_message([&] { read_csv(g.path, {.header = false}); }), "line 2: 3 fields"));
  }
  SUBCASE("unterminated quote, missing header, missing file") {
    TempFile f("\"a,b\n1\n");
    CHECK(contains(io_error_message([&] { read_csv(f.path); }), "unterminated quoted field"));
    TempFile e("\n\n");
    CHECK(contains(io_error_message([&] { read_csv(e.path); }), "expected a header"));
    CHECK(contains(io_error_message([&] { read_csv("/nonexistent/metagrad.csv"); }), "/nonexistent/metagrad.csv"));
  }
}
