// Tests of compile() and Program: results equal to plain evaluation, each boundary node evaluated once per
// run however many outputs share it, no allocation in steady-state runs, buffer slots shared so that the
// peak stays below the sum of the intermediates, rebinding to other shapes, and describe().
#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <metagrad/metagrad.hpp>
#include <new>
#include <string>

using namespace metagrad;

// --- a counting global allocator: every operator new in the process is counted -----------------------

// GCC pairs the inlined replacement operator new (malloc) with std::free in operator delete and warns of a
// mismatch that is not one: both sides of the pair are replaced here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace {
std::atomic<long> g_news{0};
}  // namespace

void* operator new(std::size_t n) {
  g_news.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  g_news.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace {

// A sum reducer that counts how often a reduction is evaluated (finish() runs once per output element, so
// once per evaluation of a full reduction).
std::atomic<int> g_finishes{0};
struct CountingSum : ops::SumReducer {
  static constexpr const char* name = "counting_sum";
  template <class T>
  acc_t<T> finish(acc_t<T> a, index_t) const {
    g_finishes.fetch_add(1, std::memory_order_relaxed);
    return a;
  }
};
template <class E>
auto counting_sum(E&& e) {
  return metagrad::detail::reduce_all(CountingSum{}, std::forward<E>(e));
}

template <class T, int R>
void check_close(const Tensor<T, R>& a, const Tensor<T, R>& b, double tol = 1e-12) {
  REQUIRE(a.shape() == b.shape());
  const auto va = a.to_vector(), vb = b.to_vector();
  for (std::size_t i = 0; i < va.size(); ++i) CHECK(va[i] == doctest::Approx(vb[i]).epsilon(tol));
}

}  // namespace

TEST_CASE("graph: a compiled program gives the values of plain evaluation") {
  Input<struct px, double, 2> x("x");
  Param<struct pw, double, 2> w("w", randn<double>({5, 4}));
  Param<struct pb, double, 1> b("b", randn<double>({4}));
  auto h = tanh(matmul(x, w) + b);
  auto loss = mean(square(h - 0.5));
  auto [dw, db] = grad(loss, w, b);
  auto program = compile(loss, dw, db);

  SUBCASE("first and later runs") {
    Tensor<double, 2> xv = randn<double>({7, 5});
    x.bind(xv);
    for (int run = 0; run < 3; ++run) {
      const auto& [l, gw, gb] = program.run();
      CHECK(l.item() == doctest::Approx(eval(loss).item()).epsilon(1e-12));
      check_close(gw, eval(dw));
      check_close(gb, eval(db));
    }
    CHECK(program.runs() == 3);
  }
  SUBCASE("rebinding to another batch size") {
    for (index_t batch : {3, 11, 2}) {
      Tensor<double, 2> xv = randn<double>({batch, 5});
      const auto& [l, gw, gb] = program.run(x.bind(xv));
      CHECK(l.item() == doctest::Approx(eval(loss).item()).epsilon(1e-12));
      check_close(gw, eval(dw));
      check_close(gb, eval(db));
    }
  }
  SUBCASE("run_into copies the outputs out") {
    Tensor<double, 2> xv = randn<double>({4, 5});
    x.bind(xv);
    Tensor<double, 0> l;
    Tensor<double, 2> gw;
    Tensor<double, 1> gb;
    program.run_into(l, gw, gb);
    check_close(gw, eval(dw));
    check_close(gb, eval(db));
  }
  SUBCASE("an unbound input is a clear error") {
    Input<struct unbound_x, double, 2> u("features");
    auto p = compile(sum(u * 2.0));
    CHECK_THROWS_WITH_AS(p.run(), doctest::Contains("features"), unbound_error);
  }
}

TEST_CASE("graph: each boundary node runs once per run however many outputs read it") {
  Input<struct cx, double, 1> x("x");
  Param<struct cu, double, 1> u("u", Tensor<double, 1>{0.5, -1.5, 2.0});
  Param<struct cv, double, 1> v("v", Tensor<double, 1>{1.0, 2.0, 3.0});
  Tensor<double, 1> xv{0.25, 0.5, -0.125};
  x.bind(xv);
  // s is a boundary node; the loss reads it twice and both gradients read it again, each in expressions of
  // their own. Every mention has the same type, so the Program evaluates it once per run.
  auto s = counting_sum(x * 2.0);
  auto loss = sum(exp(s) * v + s * s * v * u);
  auto [dv, du] = grad(loss, v, u);
  auto program = compile(loss, dv, du);
  g_finishes = 0;
  program.run();
  CHECK(g_finishes.load() == 1);
  program.run();
  CHECK(g_finishes.load() == 2);

  // loss = sum_i (e^s + s^2 u_i) v_i, dv_i = e^s + s^2 u_i, du_i = s^2 v_i.
  const double sv = 2.0 * (0.25 + 0.5 - 0.125);
  const double uv[3] = {0.5, -1.5, 2.0}, vv[3] = {1.0, 2.0, 3.0};
  const auto& [l, gv, gu] = program.run();
  double expect = 0;
  for (int i = 0; i < 3; ++i) expect += (std::exp(sv) + sv * sv * uv[i]) * vv[i];
  CHECK(l.item() == doctest::Approx(expect));
  for (int i = 0; i < 3; ++i) {
    CHECK(gv.to_vector()[i] == doctest::Approx(std::exp(sv) + sv * sv * uv[i]));
    CHECK(gu.to_vector()[i] == doctest::Approx(sv * sv * vv[i]));
  }

  // Plain evaluation has no planner: every mention evaluates s on its own (what compile() saves).
  g_finishes = 0;
  (void)eval(dv);
  CHECK(g_finishes.load() > 1);
}

TEST_CASE("graph: nodes of one type with different parameters are not merged") {
  Input<struct mx, double, 2> x("x");
  Tensor<double, 2> xv{{1, 2, 3}, {4, 5, 6}};
  x.bind(xv);
  // sum over axis 0 and over axis 1 of a square matrix view have the same type; they must stay apart.
  auto sq = x.slice(1, 0, 2);  // [2, 2]
  auto e = sum(sum(sq, 0) * 10.0 + sum(sq, 1));
  auto program = compile(e);
  const auto& [r] = program.run();
  // columns: 1+4, 2+5 -> 5, 7; rows: 1+2, 4+5 -> 3, 9.
  CHECK(r.item() == doctest::Approx(10.0 * (5 + 7) + (3 + 9)));
  CHECK(program.describe().find("other parameters") != std::string::npos);
}

TEST_CASE("graph: steady-state runs allocate nothing") {
  Input<struct ax, float, 2> x("x");
  Param<struct aw1, float, 2> w1("w1", randn<float>({16, 32}));
  Param<struct ab1, float, 1> b1("b1", zeros<float>({32}));
  Param<struct aw2, float, 2> w2("w2", randn<float>({32, 4}));
  auto h = relu(matmul(x, w1) + b1);
  auto out = matmul(h, w2);
  auto loss = mean(square(out)) + sum(abs(x)) * 0.0f;
  auto [dw1, db1, dw2] = grad(loss, w1, b1, w2);
  auto program = compile(loss, dw1, db1, dw2);
  Tensor<float, 2> xv = randn<float>({8, 16});
  x.bind(xv);
  program.run();
  program.run();
  const auto storages = memory_stats().allocations;
  const long news = g_news.load();
  for (int i = 0; i < 5; ++i) program.run();
  CHECK(memory_stats().allocations == storages);
  CHECK(g_news.load() == news);
}

TEST_CASE("graph: buffer slots are shared, so the peak stays below the sum of the intermediates") {
  Input<struct lx, float, 2> x("x");
  Param<struct l1, float, 2> w1("w1", randn<float>({64, 64}));
  Param<struct l2, float, 2> w2("w2", randn<float>({64, 64}));
  Param<struct l3, float, 2> w3("w3", randn<float>({64, 64}));
  Param<struct l4, float, 2> w4("w4", randn<float>({64, 64}));
  Param<struct l5, float, 2> w5("w5", randn<float>({64, 64}));
  Param<struct l6, float, 2> w6("w6", randn<float>({64, 8}));
  auto h1 = tanh(matmul(x, w1));
  auto h2 = tanh(matmul(h1, w2));
  auto h3 = tanh(matmul(h2, w3));
  auto h4 = tanh(matmul(h3, w4));
  auto h5 = tanh(matmul(h4, w5));
  auto loss = mean(square(matmul(h5, w6)));
  auto [g1, g2, g3, g4, g5, g6] = grad(loss, w1, w2, w3, w4, w5, w6);
  auto program = compile(loss, g1, g2, g3, g4, g5, g6);
  Tensor<float, 2> xv = randn<float>({256, 64});
  x.bind(xv);
  const MemoryPlan m = program.memory_plan();
  CHECK(m.intermediate_bytes > 0);
  CHECK(m.peak_bytes == m.slot_bytes + m.output_bytes);
  CHECK(m.peak_bytes < m.intermediate_bytes);
  CHECK(m.slots < m.steps);
  MESSAGE("6-layer MLP: peak ", m.peak_bytes, " B vs a buffer per result ", m.intermediate_bytes, " B");

  // Sharing slots must not change any value.
  const auto& r = program.run();
  check_close(std::get<1>(r), eval(g1), 1e-4);
  check_close(std::get<6>(r), eval(g6), 1e-4);
}

TEST_CASE("graph: describe() names the steps, slots and memory before any run") {
  Input<struct dx_, float, 2> x("x");
  Param<struct dw_, float, 2> w("w", randn<float>({3, 2}));
  auto loss = sum(square(matmul(x, w)));
  auto [dw] = grad(loss, w);
  auto program = compile(loss, dw);
  const std::string before = program.describe();
  CHECK(before.find("matmul") != std::string::npos);
  CHECK(before.find("[?]") != std::string::npos);
  CHECK(before.find("bind the inputs") != std::string::npos);
  Tensor<float, 2> xv = randn<float>({5, 3});
  x.bind(xv);
  const std::string after = program.describe();
  CHECK(after.find("[5, 2]") != std::string::npos);
  CHECK(after.find("peak") != std::string::npos);
  CHECK(program.runs() == 0);
}

namespace {
int count_occurrences(const std::string& text, const std::string& word) {
  int n = 0;
  for (auto p = text.find(word); p != std::string::npos; p = text.find(word, p + 1)) ++n;
  return n;
}
}  // namespace

TEST_CASE("graph: adjoints are summed where a subexpression is used twice") {
  Input<struct sx_, double, 2> x("x");
  Input<struct sy_, double, 2> y("y");
  Param<struct sw_, double, 2> w("w", randn<double>({6, 4}));
  Tensor<double, 2> xv = randn<double>({5, 6});
  Tensor<double, 2> yv = zeros<double>({5, 4});
  for (index_t i = 0; i < 5; ++i) yv(i, i % 4) = 1.0;
  x.bind(xv);
  y.bind(yv);

  SUBCASE("softmax cross-entropy reads the logits twice, the backward pass runs one GEMM") {
    auto z = matmul(x, w);
    auto loss = mean(logsumexp(z, {1}) - sum(z * y, {1}));
    auto [dw] = grad(loss, w);
    auto program = compile(loss, dw);
    const std::string d = program.describe();
    CHECK(count_occurrences(d, "matmul (GEMM)") == 2);  // forward and dW, not forward and two dW parts
    CHECK(d.find("summed at shared") != std::string::npos);
    // dW = x^T (softmax(z) - y) / batch, computed here by hand.
    Tensor<double, 2> zv = matmul(xv, w.value());
    Tensor<double, 2> p = exp(zv - logsumexp(zv, {1}, keepdims));
    Tensor<double, 2> expect = matmul(t(xv), p - yv) * (1.0 / 5.0);
    const auto& [l, gw] = program.run();
    check_close(gw, expect, 1e-10);
  }
  SUBCASE("uses of one type with different values are propagated separately") {
    auto loss = sum(3.0 * x * x + 2.0 * x);  // (3 * x) and (2 * x) have one type
    auto [dx] = grad(loss, x);
    Tensor<double, 2> expect = 6.0 * xv + 2.0;
    check_close(Tensor<double, 2>(dx), expect, 1e-12);
    auto program = compile(dx);
    CHECK(program.describe().find("propagated separately") != std::string::npos);
    check_close(std::get<0>(program.run()), expect, 1e-12);
  }
}
