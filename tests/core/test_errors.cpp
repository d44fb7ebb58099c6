// Every run-time error path of the core and expression layers: the exception type, and a message that names the
// operation and the offending shapes, indices or values. Errors are thrown before anything is written, so a failed
// assignment leaves its destination as it was.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <metagrad/metagrad.hpp>
#include <string>
#include <vector>

namespace mg = metagrad;

namespace {

/// Runs f and returns the message of the Error it throws; "<nothing thrown>" if it throws nothing. An exception of
/// another type propagates and fails the test case.
template <class Error, class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<nothing thrown>";
}

bool has(const std::string& msg, const std::string& part) { return msg.find(part) != std::string::npos; }

#define CHECK_HAS(msg, part) CHECK_MESSAGE(has(msg, part), "message: ", msg)

}  // namespace

TEST_CASE("errors: mismatched shapes name the operation and both shapes") {
  const auto a = mg::ones<float>({2, 3});
  const auto b = mg::ones<float>({4});
  const auto c = mg::ones<float>({3, 1, 4});
  auto check_op = [&](const char* name, auto&& eval_it) {
    CAPTURE(name);
    const std::string msg = message_of<mg::shape_error>(eval_it);
    CHECK_HAS(msg, std::string(name) + ":");
    CHECK_HAS(msg, "[2, 3]");
    CHECK_HAS(msg, "[4]");
  };
  SUBCASE("arithmetic") {
    check_op("add", [&] { (void)mg::eval(a + b); });
    check_op("sub", [&] { (void)mg::eval(a - b); });
    check_op("mul", [&] { (void)mg::eval(a * b); });
    check_op("div", [&] { (void)mg::eval(a / b); });
    check_op("fmod", [&] { (void)mg::eval(mg::fmod(a, b)); });
    check_op("minimum", [&] { (void)mg::eval(mg::minimum(a, b)); });
    check_op("maximum", [&] { (void)mg::eval(mg::maximum(a, b)); });
    check_op("pow", [&] { (void)mg::eval(mg::pow(a, b)); });
    check_op("atan2", [&] { (void)mg::eval(mg::atan2(a, b)); });
  }
  SUBCASE("comparisons and logic") {
    check_op("eq", [&] { (void)mg::eval(a == b); });
    check_op("ne", [&] { (void)mg::eval(a != b); });
    check_op("lt", [&] { (void)mg::eval(a < b); });
    check_op("le", [&] { (void)mg::eval(a <= b); });
    check_op("gt", [&] { (void)mg::eval(a > b); });
    check_op("ge", [&] { (void)mg::eval(a >= b); });
    check_op("logical_and", [&] { (void)mg::eval(a && b); });
    check_op("logical_or", [&] { (void)mg::eval(mg::logical_or(a, b)); });
    check_op("logical_xor", [&] { (void)mg::eval(mg::logical_xor(a, b)); });
    check_op("where", [&] { (void)mg::eval(mg::where(a > 0.0f, a, b)); });
  }
  SUBCASE("the mismatch is found where it is, deep inside an expression") {
    const std::string msg = message_of<mg::shape_error>([&] { (void)mg::eval(mg::exp(a * 2.0f) - mg::sin(c)); });
    CHECK_HAS(msg, "sub:");
    CHECK_HAS(msg, "[2, 3]");
    CHECK_HAS(msg, "[3, 1, 4]");
  }
  SUBCASE("a failed assignment leaves the destination untouched") {
    auto y = mg::full<float>({2, 3}, 5.0f);
    const float* storage = y.data();
    CHECK_THROWS_AS(y = a + b, mg::shape_error);
    CHECK(y.data() == storage);
    CHECK(y.to_vector() == std::vector<float>(6, 5.0f));
    CHECK_THROWS_AS(y += b, mg::shape_error);
    CHECK(y.to_vector() == std::vector<float>(6, 5.0f));
  }
  SUBCASE("assign() needs an operand that broadcasts to the destination") {
    auto y = mg::zeros<float>({2, 3});
    const std::string msg = message_of<mg::shape_error>([&] { y.assign(mg::ones<float>({3, 3})); });
    CHECK_HAS(msg, "assign");
    CHECK_HAS(msg, "[3, 3]");
    CHECK_HAS(msg, "[2, 3]");
    mg::Tensor<float, 2> empty;
    CHECK_HAS(message_of<mg::shape_error>([&] { empty.assign(a); }), "assign");
  }
  SUBCASE("broadcast_to needs a compatible target") {
    const std::string msg = message_of<mg::shape_error>([&] { (void)mg::eval(a.broadcast_to({4, 3, 3})); });
    CHECK_HAS(msg, "broadcast_to");
    CHECK_HAS(msg, "[2, 3]");
    CHECK_HAS(msg, "[4, 3, 3]");
  }
}

TEST_CASE("errors: element access out of range throws index_error") {
  auto t = mg::zeros<float>({2, 3});
  SUBCASE("positive and negative indices past either end") {
    const std::string msg = message_of<mg::index_error>([&] { (void)t(2, 0); });
    CHECK_HAS(msg, "index 2");
    CHECK_HAS(msg, "axis 0");
    CHECK_HAS(msg, "[2, 3]");
    CHECK_HAS(message_of<mg::index_error>([&] { (void)t(0, 3); }), "axis 1");
    CHECK_HAS(message_of<mg::index_error>([&] { (void)t(-3, 0); }), "index -3");
    CHECK_HAS(message_of<mg::index_error>([&] { (void)t(0, -4); }), "index -4");
    const auto& ct = t;
    CHECK_THROWS_AS((void)ct(0, 3), mg::index_error);
  }
  SUBCASE("the last valid indices, from either end, do not throw") {
    t(1, 2) = 4.0f;
    CHECK(t(-1, -1) == 4.0f);
    CHECK(t(-2, -3) == 0.0f);
  }
  SUBCASE("an empty tensor has no elements") {
    mg::Tensor<float, 1> e;
    CHECK_THROWS_AS((void)e(0), mg::index_error);
    CHECK_THROWS_AS((void)mg::zeros<float>({0})(0), mg::index_error);
  }
  SUBCASE("size() of an axis out of range") {
    const std::string msg = message_of<mg::index_error>([&] { (void)t.size(2); });
    CHECK_HAS(msg, "Tensor::size");
    CHECK_HAS(msg, "axis 2");
    CHECK(t.size(-1) == 3);
  }
}

TEST_CASE("errors: item() needs exactly one element") {
  const std::string msg = message_of<mg::shape_error>([] { (void)mg::zeros<float>({2, 2}).item(); });
  CHECK_HAS(msg, "item");
  CHECK_HAS(msg, "[2, 2]");
  CHECK_THROWS_AS((void)mg::zeros<float>({0}).item(), mg::shape_error);
  CHECK_THROWS_AS((void)(mg::ones<float>({3}) * 2.0f).item(), mg::shape_error);
  CHECK(mg::full<float>({1, 1}, 3.0f).item() == 3.0f);
  CHECK((mg::ones<float>({1}) * 2.0f).item() == 2.0f);
}

TEST_CASE("errors: shapes of new tensors") {
  SUBCASE("ragged initializer lists") {
    const std::string msg = message_of<mg::shape_error>([] { mg::Tensor<float, 2> m = {{1, 2}, {3}}; });
    CHECK_HAS(msg, "ragged");
    CHECK_HAS(msg, "axis 1");
    CHECK_THROWS_AS((mg::Tensor<int, 3>{{{1, 2}, {3, 4}}, {{5, 6}, {7}}}), mg::shape_error);
    CHECK_THROWS_AS((mg::Tensor<int, 2>{{1}, {2, 3}}), mg::shape_error);
  }
  SUBCASE("negative extents") {
    CHECK_HAS(message_of<mg::shape_error>([] { (void)mg::zeros<float>({2, -1}); }), "negative extent -1");
    CHECK_HAS(message_of<mg::shape_error>([] { (void)mg::ones<double>({-3}); }), "negative extent -3");
    CHECK_HAS(message_of<mg::shape_error>([] { (void)mg::full<int>({-2, 2}, 1); }), "negative extent -2");
    CHECK_HAS(message_of<mg::shape_error>([] { (void)mg::Shape<2>{4, -5}; }), "negative extent -5");
    CHECK_HAS(message_of<mg::shape_error>([] { (void)mg::rand<float>({-1}); }), "negative extent");
  }
  SUBCASE("a Shape needs one extent per axis") {
    const std::string msg = message_of<mg::shape_error>([] { (void)mg::Shape<2>{1, 2, 3}; });
    CHECK_HAS(msg, "Shape");
    CHECK_HAS(msg, "rank-2");
  }
  SUBCASE("from_vector needs exactly as many values as the shape holds") {
    const std::string msg = message_of<mg::shape_error>([] { (void)mg::from_vector(std::vector<float>(5), {2, 3}); });
    CHECK_HAS(msg, "from_vector");
    CHECK_HAS(msg, "5 values");
    CHECK_HAS(msg, "[2, 3]");
  }
  SUBCASE("arange and linspace") {
    CHECK_HAS(message_of<mg::shape_error>([] { (void)mg::arange<float>(0, 5, 0); }), "arange");
    CHECK_HAS(message_of<mg::shape_error>([] { (void)mg::arange<float>(0, INFINITY); }), "arange");
    CHECK_HAS(message_of<mg::shape_error>([] { (void)mg::linspace<float>(0, 1, -1); }), "linspace");
  }
  SUBCASE("randint needs a non-empty range") {
    const std::string msg = message_of<mg::shape_error>([] { (void)mg::randint<std::int64_t>(5, 5, {3}); });
    CHECK_HAS(msg, "randint");
    CHECK_HAS(msg, "[5, 5)");
    CHECK_HAS(message_of<mg::shape_error>([] { (void)mg::randint<std::int32_t>(5, 2, {3}); }), "[5, 2)");
  }
}

TEST_CASE("errors: views") {
  const auto x = mg::zeros<float>({2, 3});
  const auto x3 = mg::zeros<float>({2, 1, 3});
  SUBCASE("reshape to a different number of elements") {
    const std::string msg = message_of<mg::shape_error>([&] { (void)x.reshape({4, 2}); });
    CHECK_HAS(msg, "reshape");
    CHECK_HAS(msg, "[2, 3]");
    CHECK_HAS(msg, "[4, 2]");
    CHECK_HAS(message_of<mg::shape_error>([&] { (void)x.reshape({4, -1}); }), "reshape");
    CHECK_HAS(message_of<mg::shape_error>([&] { (void)mg::zeros<float>({0, 3}).reshape({0, -1}); }), "reshape");
  }
  SUBCASE("reshape with two -1s or a negative extent") {
    const std::string msg = message_of<mg::shape_error>([&] { (void)x.reshape({-1, -1}); });
    CHECK_HAS(msg, "reshape");
    CHECK_HAS(msg, "only one extent may be -1");
    CHECK_HAS(message_of<mg::shape_error>([&] { (void)x.reshape({-2, -3}); }), "negative extent");
  }
  SUBCASE("a reshape whose operand has since changed size") {
    auto y = mg::zeros<float>({2, 3});
    const auto r = y.reshape({3, 2});
    y = mg::zeros<float>({4, 4});
    CHECK_HAS(message_of<mg::shape_error>([&] { (void)mg::eval(r); }), "reshape");
  }
  SUBCASE("permute with a repeated or out-of-range axis") {
    const std::string msg = message_of<mg::index_error>([&] { (void)x3.permute({0, 2, 0}); });
    CHECK_HAS(msg, "permute");
    CHECK_HAS(msg, "axis 0 appears twice");
    CHECK_HAS(message_of<mg::index_error>([&] { (void)x3.permute({0, 1, 3}); }), "permute");
    CHECK_HAS(message_of<mg::index_error>([&] { (void)x3.permute({0, 1, -4}); }), "permute");
    CHECK_NOTHROW((void)x3.permute({-1, 0, 1}));
  }
  SUBCASE("transpose with an axis out of range") {
    CHECK_HAS(message_of<mg::index_error>([&] { (void)x.transpose(0, 2); }), "transpose");
  }
  SUBCASE("squeeze of an axis whose extent is not 1") {
    const std::string msg = message_of<mg::shape_error>([&] { (void)x3.squeeze(2); });
    CHECK_HAS(msg, "squeeze");
    CHECK_HAS(msg, "[2, 1, 3]");
    CHECK_HAS(message_of<mg::index_error>([&] { (void)x3.squeeze(3); }), "squeeze");
    CHECK(x3.squeeze(1).shape() == mg::Shape<2>{2, 3});
  }
  SUBCASE("unsqueeze past the end") {
    CHECK_HAS(message_of<mg::index_error>([&] { (void)x.unsqueeze(3); }), "unsqueeze");
    CHECK(x.unsqueeze(2).shape() == mg::Shape<3>{2, 3, 1});
  }
  SUBCASE("slice with step 0 or an axis out of range") {
    const std::string msg = message_of<mg::index_error>([&] { (void)x.slice(1, 0, 3, 0); });
    CHECK_HAS(msg, "slice");
    CHECK_HAS(msg, "step");
    CHECK_HAS(message_of<mg::index_error>([&] { (void)x.slice(2, 0, 1); }), "slice");
  }
  SUBCASE("a slice whose operand has since shrunk") {
    auto y = mg::zeros<float>({4});
    const auto s = y.slice(0, 1, 4);
    y = mg::zeros<float>({2});
    CHECK_HAS(message_of<mg::shape_error>([&] { (void)mg::eval(s); }), "slice");
  }
  SUBCASE("select out of range") {
    const std::string msg = message_of<mg::index_error>([&] { (void)x.select(1, 3); });
    CHECK_HAS(msg, "select");
    CHECK_HAS(msg, "index 3");
    CHECK_HAS(message_of<mg::index_error>([&] { (void)x.select(0, -3); }), "select");
    CHECK_HAS(message_of<mg::index_error>([&] { (void)x.select(2, 0); }), "select");
    CHECK(mg::eval(x.select(0, -2)).shape() == mg::Shape<1>{3});
  }
}

TEST_CASE("errors: reductions") {
  const auto x = mg::ones<float>({2, 3});
  SUBCASE("an axis out of range") {
    const std::string msg = message_of<mg::index_error>([&] { (void)mg::sum(x, 2); });
    CHECK_HAS(msg, "sum");
    CHECK_HAS(msg, "axis 2");
    CHECK_HAS(message_of<mg::index_error>([&] { (void)mg::mean(x, -3); }), "mean");
    CHECK_HAS(message_of<mg::index_error>([&] { (void)mg::max(x, {0, 5}); }), "max");
    CHECK_HAS(message_of<mg::index_error>([&] { (void)mg::var(x, {7}); }), "var");
  }
  SUBCASE("an axis named twice, also as its negative alias") {
    const std::string msg = message_of<mg::index_error>([&] { (void)mg::sum(x, {1, 1}); });
    CHECK_HAS(msg, "sum");
    CHECK_HAS(msg, "twice");
    CHECK_HAS(message_of<mg::index_error>([&] { (void)mg::prod(x, {0, -2}); }), "prod");
    CHECK_HAS(message_of<mg::index_error>([&] { (void)mg::argmin(x, {-1, 1}, mg::keepdims); }), "argmin");
  }
  SUBCASE("max, min, argmax and argmin of an empty axis") {
    const auto e = mg::ones<float>({0, 3});
    const std::string msg = message_of<mg::shape_error>([&] { (void)mg::eval(mg::max(e, 0)); });
    CHECK_HAS(msg, "max");
    CHECK_HAS(msg, "[0, 3]");
    CHECK_HAS(message_of<mg::shape_error>([&] { (void)mg::eval(mg::min(e)); }), "min");
    CHECK_HAS(message_of<mg::shape_error>([&] { (void)mg::eval(mg::argmax(e, 0)); }), "argmax");
    CHECK_HAS(message_of<mg::shape_error>([&] { (void)mg::eval(mg::argmin(e)); }), "argmin");
    // Reducing the other axis touches no empty range; sums of nothing are 0.
    CHECK(mg::eval(mg::max(e, 1)).shape() == mg::Shape<1>{0});
    CHECK(mg::sum(e).item() == 0.0f);
  }
  SUBCASE("a braced list after the operand is always an axis list, never ddof or p") {
    // var(x, {1}) once meant ddof = 1 over all axes; an out-of-range axis must therefore throw, not compute.
    static_assert(decltype(mg::var(x, {1}))::rank == 1);
    static_assert(decltype(mg::stddev(x, {0}))::rank == 1);
    static_assert(decltype(mg::norm(x, {1}))::rank == 1);
    static_assert(decltype(mg::var(x, 1))::rank == 0);
    static_assert(decltype(mg::norm(x, 1))::rank == 0);
    CHECK_HAS(message_of<mg::index_error>([&] { (void)mg::stddev(x, {3}); }), "axis 3");
    CHECK_HAS(message_of<mg::index_error>([&] { (void)mg::norm(x, {-3}); }), "norm");
  }
  SUBCASE("a norm of negative or NaN order") {
    CHECK_HAS(message_of<mg::error>([&] { (void)mg::norm(x, -1.0); }), "norm");
    CHECK_HAS(message_of<mg::error>([&] { (void)mg::norm(x, {0}, NAN); }), "norm");
  }
}

// A build with the CUDA backend serves Device::cuda; these are the errors of one without it.
#if !defined(METAGRAD_WITH_CUDA)
TEST_CASE("errors: CUDA devices in a build without the CUDA backend") {
  SUBCASE("storage on a CUDA device throws device_error and says how to get it") {
    const std::string msg = message_of<mg::device_error>([] { (void)mg::zeros<float>({2}, mg::Device::cuda()); });
    CHECK_HAS(msg, "cuda:0");
    CHECK_HAS(msg, "nvcc");
    CHECK_HAS(message_of<mg::device_error>([] { mg::Tensor<float, 1> t(mg::Shape<1>{4}, mg::Device::cuda(1)); }),
              "cuda:1");
  }
  SUBCASE("moving a tensor to a CUDA device") {
    const auto t = mg::ones<float>({2});
    const std::string msg = message_of<mg::device_error>([&] { (void)t.to(mg::Device::cuda()); });
    CHECK_HAS(msg, "Tensor::to");
    CHECK_HAS(msg, "cuda:0");
    CHECK(t.to(mg::Device::cpu()).data() == t.data());  // already there: the same tensor
  }
}
#endif

TEST_CASE("errors: every exception is a metagrad::error and a std::runtime_error") {
  CHECK_THROWS_AS((void)mg::eval(mg::ones<float>({2}) + mg::ones<float>({3})), mg::error);
  CHECK_THROWS_AS((void)mg::zeros<float>({2})(5), mg::error);
  CHECK_THROWS_AS((void)mg::Shape<1>{-1}, std::runtime_error);
  static_assert(std::is_base_of_v<mg::error, mg::shape_error>);
  static_assert(std::is_base_of_v<mg::error, mg::index_error>);
  static_assert(std::is_base_of_v<mg::error, mg::io_error>);
  static_assert(std::is_base_of_v<mg::error, mg::device_error>);
  static_assert(std::is_base_of_v<std::runtime_error, mg::error>);
}
