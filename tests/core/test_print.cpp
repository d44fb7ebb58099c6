// Tests of the text form of tensors (core/print.hpp) against golden strings written by hand from what torch
// prints (torch._tensor_str: one format for the whole tensor chosen from the shown non-zero finite values,
// "1." / 4 decimals / scientific, right-aligned columns, a blank line between blocks per dimension above 2,
// "..." over long dimensions), followed by the shape and dtype. Where torch and NumPy differ, metagrad
// follows NumPy: nan, inf and -0. count toward the column width (torch prints [nan, 1., 2.], NumPy and
// metagrad [nan,  1.,  2.]) and one space precedes "..."; true/false are spelled as in C++.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <metagrad/metagrad.hpp>
#include <sstream>
#include <string>

namespace mg = metagrad;
using mg::index_t;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

template <class E>
std::string printed(const E& e) {
  std::ostringstream os;
  os << e;
  return os.str();
}

// Restores the default print options when a test that changes them ends.
struct PrintOptionsGuard {
  mg::PrintOptions saved = mg::print_options();
  ~PrintOptionsGuard() { mg::print_options() = saved; }
};

}  // namespace

TEST_CASE("print: rank 0") {
  mg::Tensor<float, 0> s(mg::Shape<0>{});
  s() = 3.5f;
  CHECK(mg::to_string(s) == "tensor(3.5000, shape=[], dtype=float32)");
  s() = 2;
  CHECK(mg::to_string(s) == "tensor(2., shape=[], dtype=float32)");
  mg::Tensor<double, 0> d(mg::Shape<0>{});
  d() = -0.5;
  CHECK(mg::to_string(d) == "tensor(-0.5000, shape=[], dtype=float64)");
  d() = 1e-5;
  CHECK(mg::to_string(d) == "tensor(1.0000e-05, shape=[], dtype=float64)");
}

TEST_CASE("print: floating number formats") {
  SUBCASE("integral values print with a trailing point") {
    CHECK(mg::to_string(mg::Tensor<float, 1>{1, 2, 3}) == "tensor([1., 2., 3.], shape=[3], dtype=float32)");
    CHECK(mg::to_string(mg::Tensor<float, 1>{-1, 0, 10}) == "tensor([-1.,  0., 10.], shape=[3], dtype=float32)");
    CHECK(mg::to_string(mg::Tensor<float, 1>{1000, 100000}) == "tensor([  1000., 100000.], shape=[2], dtype=float32)");
    CHECK(mg::to_string(mg::Tensor<float, 1>{-0.0f, 1}) == "tensor([-0.,  1.], shape=[2], dtype=float32)");
  }
  SUBCASE("fractional values print with 4 decimals") {
    CHECK(mg::to_string(mg::Tensor<float, 1>{0.5f, 1.25f, -3.125f}) ==
          "tensor([ 0.5000,  1.2500, -3.1250], shape=[3], dtype=float32)");
    CHECK(mg::to_string(mg::Tensor<double, 1>{0.1, 0.2, 1.0 / 3}) ==
          "tensor([0.1000, 0.2000, 0.3333], shape=[3], dtype=float64)");
    CHECK(mg::to_string(mg::Tensor<float, 1>{0.123456f, 9.99996f}) ==
          "tensor([ 0.1235, 10.0000], shape=[2], dtype=float32)");
  }
  SUBCASE("mixed magnitudes switch the whole tensor to scientific notation") {
    CHECK(mg::to_string(mg::Tensor<float, 1>{1e-5f, 1, 1e9f}) ==
          "tensor([1.0000e-05, 1.0000e+00, 1.0000e+09], shape=[3], dtype=float32)");
    // Non-zero magnitudes more than three decades apart.
    CHECK(mg::to_string(mg::Tensor<float, 1>{0.5f, 2000}) ==
          "tensor([5.0000e-01, 2.0000e+03], shape=[2], dtype=float32)");
    // A small value alone.
    CHECK(mg::to_string(mg::Tensor<float, 1>{1.234e-5f, 0.5f}) ==
          "tensor([1.2340e-05, 5.0000e-01], shape=[2], dtype=float32)");
    // Integral values above 1e8.
    CHECK(mg::to_string(mg::Tensor<double, 1>{3, 2e9}) == "tensor([3.0000e+00, 2.0000e+09], shape=[2], dtype=float64)");
    // Negative values widen the column; zero does not count as a magnitude.
    CHECK(mg::to_string(mg::Tensor<float, 1>{-1e-5f, 0, 1}) ==
          "tensor([-1.0000e-05,  0.0000e+00,  1.0000e+00], shape=[3], dtype=float32)");
    CHECK(mg::to_string(mg::Tensor<float, 1>{0, 0.5f, 200}) ==
          "tensor([  0.0000,   0.5000, 200.0000], shape=[3], dtype=float32)");
  }
  SUBCASE("nan and inf take part in the column width only") {
    CHECK(mg::to_string(mg::Tensor<float, 1>{kNaN, kInf, -kInf, 1.5f}) ==
          "tensor([   nan,    inf,   -inf, 1.5000], shape=[4], dtype=float32)");
    CHECK(mg::to_string(mg::Tensor<float, 1>{kNaN, 1, 2}) == "tensor([nan,  1.,  2.], shape=[3], dtype=float32)");
    CHECK(mg::to_string(mg::Tensor<float, 1>{kNaN, kNaN}) == "tensor([nan, nan], shape=[2], dtype=float32)");
    CHECK(mg::to_string(mg::Tensor<double, 1>{-kInf, 1e-6}) ==
          "tensor([      -inf, 1.0000e-06], shape=[2], dtype=float64)");
  }
  SUBCASE("columns align across rows") {
    CHECK(mg::to_string(mg::Tensor<float, 2>{{-1.5f, 20.25f}, {300.125f, -4}}) ==
          "tensor([[ -1.5000,  20.2500],\n"
          "        [300.1250,  -4.0000]], shape=[2, 2], dtype=float32)");
  }
  SUBCASE("the precision option") {
    PrintOptionsGuard guard;
    mg::print_options().precision = 2;
    CHECK(mg::to_string(mg::Tensor<float, 1>{0.5f, 1.125f}) == "tensor([0.50, 1.12], shape=[2], dtype=float32)");
    CHECK(mg::to_string(mg::Tensor<float, 1>{1e-6f}) == "tensor([1.00e-06], shape=[1], dtype=float32)");
  }
}

TEST_CASE("print: integer and bool tensors") {
  CHECK(mg::to_string(mg::Tensor<std::int32_t, 1>{1, -20, 300}) == "tensor([  1, -20, 300], shape=[3], dtype=int32)");
  CHECK(mg::to_string(mg::Tensor<std::int64_t, 2>{{1, 2}, {-3, 40}}) ==
        "tensor([[ 1,  2],\n"
        "        [-3, 40]], shape=[2, 2], dtype=int64)");
  CHECK(mg::to_string(mg::Tensor<std::int64_t, 1>{std::int64_t{1} << 40}) ==
        "tensor([1099511627776], shape=[1], dtype=int64)");
  CHECK(mg::to_string(mg::Tensor<bool, 1>{true, false, true}) ==
        "tensor([ true, false,  true], shape=[3], dtype=bool)");
  CHECK(mg::to_string(mg::Tensor<bool, 2>{{true}, {true}}) ==
        "tensor([[true],\n"
        "        [true]], shape=[2, 1], dtype=bool)");
}

TEST_CASE("print: layout of rank 2, 3 and 4") {
  SUBCASE("rank 2: one row per line, aligned under the first") {
    CHECK(mg::to_string(mg::Tensor<float, 2>{{1.5f, 2}, {3, 4.25f}}) ==
          "tensor([[1.5000, 2.0000],\n"
          "        [3.0000, 4.2500]], shape=[2, 2], dtype=float32)");
    CHECK(mg::to_string(mg::Tensor<float, 2>{{7, 8, 9}}) == "tensor([[7., 8., 9.]], shape=[1, 3], dtype=float32)");
  }
  SUBCASE("rank 3: a blank line between matrices") {
    const mg::Tensor<float, 3> x = mg::arange<float>(12).reshape({2, 2, 3});
    CHECK(mg::to_string(x) ==
          "tensor([[[ 0.,  1.,  2.],\n"
          "         [ 3.,  4.,  5.]],\n"
          "\n"
          "        [[ 6.,  7.,  8.],\n"
          "         [ 9., 10., 11.]]], shape=[2, 2, 3], dtype=float32)");
  }
  SUBCASE("rank 4: two blank lines between the outermost blocks, one between the inner ones") {
    const mg::Tensor<float, 4> x = mg::arange<float>(8).reshape({2, 2, 1, 2});
    CHECK(mg::to_string(x) ==
          "tensor([[[[0., 1.]],\n"
          "\n"
          "         [[2., 3.]]],\n"
          "\n"
          "\n"
          "        [[[4., 5.]],\n"
          "\n"
          "         [[6., 7.]]]], shape=[2, 2, 1, 2], dtype=float32)");
  }
  SUBCASE("a non-contiguous tensor prints in its logical order") {
    const mg::Tensor<std::int32_t, 2> m = {{1, 2, 3}, {4, 5, 6}};
    const auto mt =
        mg::Tensor<std::int32_t, 2>::from_storage(m.storage(), 0, mg::Shape<2>{3, 2}, mg::Strides<2>{{1, 3}});
    CHECK(mg::to_string(mt) ==
          "tensor([[1, 4],\n"
          "        [2, 5],\n"
          "        [3, 6]], shape=[3, 2], dtype=int32)");
  }
}

TEST_CASE("print: long dimensions are elided") {
  SUBCASE("a vector of 2000 elements shows three at each end") {
    const mg::Tensor<float, 1> x = mg::arange<float>(2000) / 8 + 1;
    CHECK(mg::to_string(x) ==
          "tensor([  1.0000,   1.1250,   1.2500, ..., 250.6250, 250.7500, 250.8750], shape=[2000], dtype=float32)");
    // The format is chosen from the shown values: 0 and 1999 are more than three decades apart.
    CHECK(mg::to_string(mg::arange<float>(2000)) ==
          "tensor([0.0000e+00, 1.0000e+00, 2.0000e+00, ..., 1.9970e+03, 1.9980e+03, 1.9990e+03], shape=[2000], "
          "dtype=float32)");
  }
  SUBCASE("a 100 x 100 matrix elides rows and columns") {
    const mg::Tensor<std::int32_t, 2> m = mg::arange<std::int32_t>(10000).reshape({100, 100});
    CHECK(mg::to_string(m) ==
          "tensor([[   0,    1,    2, ...,   97,   98,   99],\n"
          "        [ 100,  101,  102, ...,  197,  198,  199],\n"
          "        [ 200,  201,  202, ...,  297,  298,  299],\n"
          "        ...,\n"
          "        [9700, 9701, 9702, ..., 9797, 9798, 9799],\n"
          "        [9800, 9801, 9802, ..., 9897, 9898, 9899],\n"
          "        [9900, 9901, 9902, ..., 9997, 9998, 9999]], shape=[100, 100], dtype=int32)");
    const mg::Tensor<float, 2> f = mg::arange<float>(10000).reshape({100, 100}) / 100 + 1;
    CHECK(mg::to_string(f) ==
          "tensor([[  1.0000,   1.0100,   1.0200, ...,   1.9700,   1.9800,   1.9900],\n"
          "        [  2.0000,   2.0100,   2.0200, ...,   2.9700,   2.9800,   2.9900],\n"
          "        [  3.0000,   3.0100,   3.0200, ...,   3.9700,   3.9800,   3.9900],\n"
          "        ...,\n"
          "        [ 98.0000,  98.0100,  98.0200, ...,  98.9700,  98.9800,  98.9900],\n"
          "        [ 99.0000,  99.0100,  99.0200, ...,  99.9700,  99.9800,  99.9900],\n"
          "        [100.0000, 100.0100, 100.0200, ..., 100.9700, 100.9800, 100.9900]], shape=[100, 100], "
          "dtype=float32)");
  }
  SUBCASE("up to the threshold (1000 elements) nothing is elided") {
    const auto s1000 = mg::to_string(mg::arange<std::int32_t>(1000));
    CHECK(s1000.find("...") == std::string::npos);
    CHECK(s1000.find(" 500,") != std::string::npos);
    CHECK(mg::to_string(mg::arange<std::int32_t>(1001)) ==
          "tensor([   0,    1,    2, ...,  998,  999, 1000], shape=[1001], dtype=int32)");
  }
  SUBCASE("rank 3 with other threshold and edgeitems") {
    PrintOptionsGuard guard;
    mg::print_options().threshold = 10;
    mg::print_options().edgeitems = 1;
    const mg::Tensor<std::int32_t, 3> x = mg::arange<std::int32_t>(27).reshape({3, 3, 3});
    CHECK(mg::to_string(x) ==
          "tensor([[[ 0, ...,  2],\n"
          "         ...,\n"
          "         [ 6, ...,  8]],\n"
          "\n"
          "        ...,\n"
          "\n"
          "        [[18, ..., 20],\n"
          "         ...,\n"
          "         [24, ..., 26]]], shape=[3, 3, 3], dtype=int32)");
    // A dimension of at most 2 * edgeitems is shown whole.
    CHECK(mg::to_string(mg::Tensor<std::int32_t, 2>(mg::arange<std::int32_t>(12).reshape({6, 2}))) ==
          "tensor([[ 0,  1],\n"
          "        ...,\n"
          "        [10, 11]], shape=[6, 2], dtype=int32)");
  }
}

TEST_CASE("print: empty and undefined tensors") {
  CHECK(mg::to_string(mg::zeros<float>({0, 3})) == "tensor([], shape=[0, 3], dtype=float32)");
  CHECK(mg::to_string(mg::zeros<std::int64_t>({0})) == "tensor([], shape=[0], dtype=int64)");
  CHECK(mg::to_string(mg::zeros<bool>({2, 0, 1})) == "tensor([], shape=[2, 0, 1], dtype=bool)");
  CHECK(mg::to_string(mg::Tensor<float, 2>()) == "tensor(<empty>, shape=[0, 0], dtype=float32)");
  CHECK(mg::to_string(mg::Tensor<double, 0>()) == "tensor(<empty>, shape=[], dtype=float64)");
}

TEST_CASE("print: streaming a tensor or an expression") {
  const mg::Tensor<float, 2> a = {{1, 2}, {3, 4}};
  SUBCASE("operator<< of a tensor is to_string") { CHECK(printed(a) == mg::to_string(a)); }
  SUBCASE("an expression is evaluated first") {
    CHECK(printed(a * 0.5f + 1) ==
          "tensor([[1.5000, 2.0000],\n"
          "        [2.5000, 3.0000]], shape=[2, 2], dtype=float32)");
    CHECK(printed(a.t()) ==
          "tensor([[1., 3.],\n"
          "        [2., 4.]], shape=[2, 2], dtype=float32)");
    CHECK(printed(a > 2) ==
          "tensor([[false, false],\n"
          "        [ true,  true]], shape=[2, 2], dtype=bool)");
    CHECK(printed(mg::sum(a, 0)) == "tensor([4., 6.], shape=[2], dtype=float32)");
    CHECK(printed(mg::sum(a)) == "tensor(10., shape=[], dtype=float32)");
  }
}
