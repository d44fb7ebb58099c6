// The run-time errors of gradients and of the leaves and products they are made of: two different Input/Param
// objects sharing one tag type (metagrad::error at grad()), matmul shapes that disagree (shape_error naming
// matmul and both shapes, in a forward pass and in its gradient), and an Input evaluated before it is bound
// (unbound_error naming the input). The compile-time checks are in tests/compile_fail/grad_*.cpp and
// tests/compile_fail/matmul_*.cpp.
#include <doctest/doctest.h>

#include <metagrad/metagrad.hpp>
#include <string>

#include "grad_check.hpp"

using namespace grad_test;

namespace {

// The message of the exception of type E that f() throws; a failed check (and "") when it throws nothing.
template <class E, class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  FAIL_CHECK("the expected exception was not thrown");
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("autodiff: two leaves sharing one tag type are refused at grad()") {
  mg::Param<struct shared_tag, double, 1> w1("w1", mg::Tensor<double, 1>{1, 2});
  mg::Param<struct shared_tag, double, 1> w2("w2", mg::Tensor<double, 1>{3, 4});
  SUBCASE("the loss reads one, the gradient asks for the other") {
    const auto loss = mg::sum(w1 * 2.0);
    CHECK_THROWS_AS((void)mg::grad(loss, w2), mg::error);
    const auto msg = message_of<mg::error>([&] { (void)mg::grad(loss, w2); });
    CHECK_MESSAGE(contains(msg, "w1"), msg);
    CHECK_MESSAGE(contains(msg, "w2"), msg);
    CHECK_MESSAGE(contains(msg, "tag"), msg);
  }
  SUBCASE("the loss reads both") {
    const auto loss = mg::sum(w1 * w2);
    CHECK_THROWS_AS((void)mg::grad(loss, w1), mg::error);
    CHECK_THROWS_AS((void)mg::grad(loss, w2), mg::error);
  }
  SUBCASE("two Inputs sharing a tag") {
    mg::Input<struct shared_input, double, 1> a("a"), b("b");
    a.bind(mg::Tensor<double, 1>{1, 2});
    b.bind(mg::Tensor<double, 1>{3, 4});
    const auto msg = message_of<mg::error>([&] { (void)mg::grad(mg::sum(mg::exp(a)), b); });
    CHECK_MESSAGE(contains(msg, "'a'"), msg);
    CHECK_MESSAGE(contains(msg, "'b'"), msg);
  }
  SUBCASE("a copy of a Param is the same leaf, not a second one") {
    const auto w1_copy = w1;
    const auto loss = mg::sum(w1 * w1_copy);
    mg::Tensor<double, 1> g;
    CHECK_NOTHROW(g = mg::eval(std::get<0>(mg::grad(loss, w1_copy))));
    check_values("d/dw sum(w * w) through a copy", g, mg::Tensor<double, 1>{2, 4});
  }
}

TEST_CASE("autodiff: matmul shape errors name matmul and both shapes") {
  SUBCASE("inner extents") {
    const auto a = mg::ones<double>({2, 3});
    const auto b = mg::ones<double>({4, 5});
    const auto msg = message_of<mg::shape_error>([&] { (void)mg::eval(mg::matmul(a, b)); });
    CHECK_MESSAGE(contains(msg, "matmul"), msg);
    CHECK_MESSAGE(contains(msg, "[2, 3]"), msg);
    CHECK_MESSAGE(contains(msg, "[4, 5]"), msg);
    CHECK_THROWS_AS((void)mg::matmul(a, b).shape(), mg::shape_error);
  }
  SUBCASE("batch axes that do not broadcast") {
    const auto a = mg::ones<double>({2, 2, 3});
    const auto b = mg::ones<double>({3, 3, 4});
    const auto msg = message_of<mg::shape_error>([&] { (void)mg::eval(mg::matmul(a, b)); });
    CHECK_MESSAGE(contains(msg, "matmul"), msg);
    CHECK_MESSAGE(contains(msg, "[2, 2, 3]"), msg);
    CHECK_MESSAGE(contains(msg, "[3, 3, 4]"), msg);
  }
  SUBCASE("in the forward pass and in the gradient of a graph whose input is bound with a wrong shape") {
    mg::Input<struct mm_err_x, double, 2> x("x");
    mg::Param<struct mm_err_w, double, 2> w("w", mg::ones<double>({3, 4}));
    const auto loss = mg::sum(mg::tanh(mg::matmul(x, w)));
    const auto [dw] = mg::grad(loss, w);  // built before any binding: shapes are read at evaluation
    x.bind(mg::ones<double>({5, 2}));
    const auto fwd = message_of<mg::shape_error>([&] { (void)loss.item(); });
    CHECK_MESSAGE(contains(fwd, "matmul"), fwd);
    CHECK_MESSAGE(contains(fwd, "[5, 2]"), fwd);
    CHECK_MESSAGE(contains(fwd, "[3, 4]"), fwd);
    const auto bwd = message_of<mg::shape_error>([&] { (void)mg::eval(dw); });
    CHECK_MESSAGE(contains(bwd, "matmul"), bwd);
    // and with a correct binding the same gradient evaluates
    x.bind(mg::ones<double>({5, 3}));
    CHECK(mg::eval(dw).shape() == mg::Shape<2>{3, 4});
  }
}

TEST_CASE("autodiff: an unbound Input is reported by name when evaluated") {
  mg::Input<struct unbound_x, double, 2> x("features");
  mg::Param<struct unbound_w, double, 2> w("w", mg::ones<double>({3, 2}));
  SUBCASE("a forward pass") {
    const auto msg = message_of<mg::unbound_error>([&] { (void)mg::sum(x * 2.0).item(); });
    CHECK_MESSAGE(contains(msg, "features"), msg);
    CHECK_THROWS_AS((void)mg::eval(mg::exp(x)), mg::unbound_error);
    CHECK_THROWS_AS((void)x.value(), mg::unbound_error);
  }
  SUBCASE("a gradient built before binding, evaluated before binding") {
    const auto loss = mg::mean(mg::square(mg::matmul(x, w)));
    const auto [dw] = mg::grad(loss, w);  // building needs no binding
    const auto msg = message_of<mg::unbound_error>([&] { (void)mg::eval(dw); });
    CHECK_MESSAGE(contains(msg, "features"), msg);
    // an unbound_error is a metagrad::error
    CHECK_THROWS_AS((void)mg::eval(dw), mg::error);
    x.bind(mg::ones<double>({4, 3}));
    // d/dw mean((x w)^2) with x, w all ones: 2 (x w) x / 8 = 2 * 3 * 4 / 8 = 3 everywhere
    check_values("after binding", mg::eval(dw), mg::Tensor<double, 2>{{3, 3}, {3, 3}, {3, 3}});
  }
  SUBCASE("views and reductions of an unbound input") {
    CHECK_THROWS_AS((void)mg::eval(x.t()), mg::unbound_error);
    CHECK_THROWS_AS((void)mg::eval(x.reshape({-1})), mg::unbound_error);
    CHECK_THROWS_AS((void)mg::max(x).item(), mg::unbound_error);
  }
  SUBCASE("binding an empty tensor is refused, naming the input") {
    const auto msg = message_of<mg::error>([&] { x.bind(mg::Tensor<double, 2>()); });
    CHECK_MESSAGE(contains(msg, "features"), msg);
  }
}
