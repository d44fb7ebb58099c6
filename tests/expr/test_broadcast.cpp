// Property tests of NumPy broadcasting in fused elementwise expressions: over many random shape pairs (ranks
// 0..4, extents 1..5 with random 1s, contiguous and permuted memory layouts) the result shape follows
// NumPy's rule, implemented independently below, and every element equals the one found by explicit index
// arithmetic. Incompatible shapes throw shape_error naming the operation and both shapes; assign()
// broadcasts into existing memory; zero-size extents and rank-0 operands broadcast like any other.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <metagrad/metagrad.hpp>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace mg = metagrad;
using mg::index_t;

namespace {

using Dims = std::vector<index_t>;

// NumPy's rule, written from its documentation: align the shapes on the right, treat missing axes as 1; two
// extents are compatible when equal or when one of them is 1, and the result takes the larger.
std::optional<Dims> numpy_broadcast(const Dims& a, const Dims& b) {
  const std::size_t r = std::max(a.size(), b.size());
  Dims out(r);
  for (std::size_t k = 0; k < r; ++k) {  // k counts axes from the right
    const index_t da = k < a.size() ? a[a.size() - 1 - k] : 1;
    const index_t db = k < b.size() ? b[b.size() - 1 - k] : 1;
    if (da != db && da != 1 && db != 1) return std::nullopt;
    out[r - 1 - k] = da == 1 ? db : da;
  }
  return out;
}

std::string format_dims(const Dims& d) {
  std::string s = "[";
  for (std::size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

index_t count(const Dims& d) { return std::accumulate(d.begin(), d.end(), index_t{1}, std::multiplies<>()); }

// Row-major offset in an operand of extents `in` of the output multi-index `out_idx` (right-aligned; an
// operand axis of extent 1 always reads its element 0).
index_t source_offset(const Dims& in, const Dims& out_idx) {
  index_t off = 0;
  const std::size_t shift = out_idx.size() - in.size();
  for (std::size_t d = 0; d < in.size(); ++d) off = off * in[d] + (in[d] == 1 ? 0 : out_idx[d + shift]);
  return off;
}

// Row-major multi-index of flat position i in extents `d`.
Dims unravel(index_t i, const Dims& d) {
  Dims idx(d.size());
  for (std::size_t k = d.size(); k-- > 0;) {
    idx[k] = i % d[k];
    i /= d[k];
  }
  return idx;
}

template <int R>
mg::Shape<R> to_shape(const Dims& d) {
  REQUIRE(d.size() == static_cast<std::size_t>(R));
  mg::Shape<R> s;
  for (int i = 0; i < R; ++i) s[i] = d[static_cast<std::size_t>(i)];
  return s;
}

template <int R>
Dims to_dims(const mg::Shape<R>& s) {
  Dims d(R);
  for (int i = 0; i < R; ++i) d[static_cast<std::size_t>(i)] = s[i];
  return d;
}

Dims random_dims(std::mt19937& rng, int rank) {
  std::uniform_int_distribution<int> ext(1, 5);
  std::bernoulli_distribution one(0.3);
  Dims d(static_cast<std::size_t>(rank));
  for (auto& e : d) e = one(rng) ? 1 : ext(rng);
  return d;
}

// Extents that broadcast to `out` (right-aligned): each is out's extent or, at random, 1.
Dims compatible_with(std::mt19937& rng, const Dims& out, int rank) {
  std::bernoulli_distribution one(0.35);
  Dims d(static_cast<std::size_t>(rank));
  for (int i = 0; i < rank; ++i) d[static_cast<std::size_t>(i)] = one(rng) ? 1 : out[out.size() - rank + i];
  return d;
}

std::vector<float> random_values(std::mt19937& rng, index_t n) {
  // Small integers: every sum, difference and product below is exact in float, so comparisons are exact.
  std::uniform_int_distribution<int> v(-50, 50);
  std::vector<float> x(static_cast<std::size_t>(n));
  for (auto& e : x) e = static_cast<float>(v(rng));
  return x;
}

// A tensor with logical row-major values `vals`, stored either contiguously or in the memory order of a
// random permutation of its axes (a non-contiguous leaf, as a transposed or permuted view would be).
template <int R>
mg::Tensor<float, R> make_tensor(std::mt19937& rng, const std::vector<float>& vals, const Dims& dims, bool permuted) {
  const auto shape = to_shape<R>(dims);
  std::array<int, R> order;  // memory order: order[0] is the slowest axis
  std::iota(order.begin(), order.end(), 0);
  if (permuted) std::shuffle(order.begin(), order.end(), rng);
  mg::Strides<R> strides{};
  index_t acc = 1;
  for (int k = R - 1; k >= 0; --k) {
    strides[order[static_cast<std::size_t>(k)]] = acc;
    acc *= shape[order[static_cast<std::size_t>(k)]];
  }
  mg::Tensor<float, 1> buffer = mg::zeros<float>({count(dims)});
  for (index_t i = 0; i < count(dims); ++i) {
    const Dims idx = unravel(i, dims);
    index_t off = 0;
    for (int d = 0; d < R; ++d) off += idx[static_cast<std::size_t>(d)] * strides[d];
    buffer.data()[off] = vals[static_cast<std::size_t>(i)];
  }
  return mg::Tensor<float, R>::from_storage(buffer.storage(), 0, shape, strides);
}

template <class F>
std::string shape_error_message(F&& f) {
  try {
    f();
  } catch (const mg::shape_error& e) {
    return e.what();
  }
  return "<no shape_error thrown>";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// One random pair of ranks (RA, RB): shapes drawn either from a common result shape (always compatible) or
// independently (often not); the evaluated expressions are checked element by element, or the error.
template <int RA, int RB>
void check_random_pairs(std::mt19937& rng, int trials, int& compatible_seen, int& incompatible_seen) {
  constexpr int R = RA > RB ? RA : RB;
  for (int trial = 0; trial < trials; ++trial) {
    Dims da, db;
    if (trial % 2 == 0) {
      const Dims out = random_dims(rng, R);
      da = compatible_with(rng, out, RA);
      db = compatible_with(rng, out, RB);
    } else {
      da = random_dims(rng, RA);
      db = random_dims(rng, RB);
    }
    const auto va = random_values(rng, count(da)), vb = random_values(rng, count(db));
    const auto a = make_tensor<RA>(rng, va, da, trial % 3 == 1);
    const auto b = make_tensor<RB>(rng, vb, db, trial % 3 == 2);
    CAPTURE(format_dims(da));
    CAPTURE(format_dims(db));

    const auto expected = numpy_broadcast(da, db);
    if (!expected) {
      ++incompatible_seen;
      const std::string msg = shape_error_message([&] { mg::Tensor<float, R> y = a - b; });
      CHECK_MESSAGE(contains(msg, "sub"), msg);
      CHECK_MESSAGE(contains(msg, format_dims(da)), msg);
      CHECK_MESSAGE(contains(msg, format_dims(db)), msg);
      const std::string msg2 = shape_error_message([&] { mg::Tensor<bool, R> y = a < b; });
      CHECK_MESSAGE(contains(msg2, "lt"), msg2);
      continue;
    }
    ++compatible_seen;
    const mg::Tensor<float, R> diff = a - b;
    const mg::Tensor<float, R> picked = mg::where(a < b, a, b * 10.0f);
    const mg::Tensor<bool, R> less = a < b;
    REQUIRE(to_dims(diff.shape()) == *expected);
    REQUIRE(to_dims(picked.shape()) == *expected);
    REQUIRE(to_dims(less.shape()) == *expected);
    const auto vd = diff.to_vector(), vp = picked.to_vector();
    const auto vl = less.to_vector();
    int mismatches = 0;
    for (index_t i = 0; i < count(*expected); ++i) {
      const Dims idx = unravel(i, *expected);
      const float x = va[static_cast<std::size_t>(source_offset(da, idx))];
      const float y = vb[static_cast<std::size_t>(source_offset(db, idx))];
      const auto k = static_cast<std::size_t>(i);
      mismatches += vd[k] != x - y;
      mismatches += vp[k] != (x < y ? x : y * 10.0f);
      mismatches += vl[k] != (x < y);
    }
    CHECK(mismatches == 0);
  }
}

template <int RA, int... RBs>
void check_row(std::mt19937& rng, int trials, int& ok, int& bad, std::integer_sequence<int, RBs...>) {
  (check_random_pairs<RA, RBs>(rng, trials, ok, bad), ...);
}

}  // namespace

TEST_CASE("broadcast: random shape pairs follow NumPy's rule element by element") {
  std::mt19937 rng(20240611);
  int compatible = 0, incompatible = 0;
  constexpr int trials = 40;
  const auto ranks = std::integer_sequence<int, 0, 1, 2, 3, 4>{};
  check_row<0>(rng, trials, compatible, incompatible, ranks);
  check_row<1>(rng, trials, compatible, incompatible, ranks);
  check_row<2>(rng, trials, compatible, incompatible, ranks);
  check_row<3>(rng, trials, compatible, incompatible, ranks);
  check_row<4>(rng, trials, compatible, incompatible, ranks);
  // The generator must really have produced both kinds, or the property above says little.
  CHECK(compatible >= 25 * trials / 2);
  CHECK(incompatible >= 100);
}

TEST_CASE("broadcast: three operands of where() broadcast together") {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 60; ++trial) {
    const Dims out = random_dims(rng, 3);
    const Dims dc = compatible_with(rng, out, 3), da = compatible_with(rng, out, 2), db = compatible_with(rng, out, 1);
    const auto vc = random_values(rng, count(dc)), va = random_values(rng, count(da)),
               vb = random_values(rng, count(db));
    const auto c = make_tensor<3>(rng, vc, dc, trial % 2 == 0);
    const auto a = make_tensor<2>(rng, va, da, trial % 2 == 1);
    const auto b = make_tensor<1>(rng, vb, db, false);
    const mg::Tensor<float, 3> y = mg::where(c > 0.0f, a, b);
    const auto expected = numpy_broadcast(numpy_broadcast(dc, da).value(), db).value();
    REQUIRE(to_dims(y.shape()) == expected);
    const auto vy = y.to_vector();
    int mismatches = 0;
    for (index_t i = 0; i < count(expected); ++i) {
      const Dims idx = unravel(i, expected);
      const float cv = vc[static_cast<std::size_t>(source_offset(dc, idx))];
      const float av = va[static_cast<std::size_t>(source_offset(da, idx))];
      const float bv = vb[static_cast<std::size_t>(source_offset(db, idx))];
      mismatches += vy[static_cast<std::size_t>(i)] != (cv > 0 ? av : bv);
    }
    CHECK(mismatches == 0);
  }
}

TEST_CASE("broadcast: incompatible shapes throw shape_error naming the op and both shapes") {
  const auto a = mg::zeros<float>({2, 3});
  const auto b = mg::zeros<float>({4});
  const auto c = mg::zeros<float>({5, 1, 4});

  SUBCASE("the message names the operation and both shapes in [2, 3] form") {
    const std::string msg = shape_error_message([&] { mg::Tensor<float, 2> y = a + b; });
    CHECK(contains(msg, "add"));
    CHECK(contains(msg, "[2, 3]"));
    CHECK(contains(msg, "[4]"));
  }
  SUBCASE("each binary front-end reports its own name") {
    CHECK(contains(shape_error_message([&] { (void)mg::eval(a - b); }), "sub"));
    CHECK(contains(shape_error_message([&] { (void)mg::eval(a * b); }), "mul"));
    CHECK(contains(shape_error_message([&] { (void)mg::eval(a / b); }), "div"));
    CHECK(contains(shape_error_message([&] { (void)mg::eval(a == b); }), "eq"));
    CHECK(contains(shape_error_message([&] { (void)mg::eval(mg::maximum(a, b)); }), "maximum"));
    CHECK(contains(shape_error_message([&] { (void)mg::eval(mg::pow(a, b)); }), "pow"));
    CHECK(contains(shape_error_message([&] { (void)mg::eval(mg::where(a > 0.0f, a, b)); }), "where"));
  }
  SUBCASE("a mismatch deep inside a fused expression is reported by the op that meets it") {
    const std::string msg = shape_error_message([&] { (void)mg::eval(mg::exp(a) * 2.0f + mg::sin(c)); });
    CHECK(contains(msg, "add"));
    CHECK(contains(msg, "[2, 3]"));
    CHECK(contains(msg, "[5, 1, 4]"));
  }
  SUBCASE("a rank-0 operand is formatted as []") {
    const auto s = mg::full<float>(mg::Shape<0>{}, 1.0f);
    const auto e = mg::zeros<float>({0});
    const std::string msg = shape_error_message([&] { (void)mg::eval((a + s) * e); });
    CHECK(contains(msg, "mul"));
    CHECK(contains(msg, "[0]"));
  }
}

TEST_CASE("broadcast: rank-0 tensors and scalars broadcast to anything") {
  const mg::Tensor<float, 3> x = mg::arange<float>(24).reshape({2, 3, 4});
  const auto s = mg::full<float>(mg::Shape<0>{}, 0.5f);
  static_assert(decltype(s)::rank == 0);
  CHECK(s.numel() == 1);
  CHECK(s() == 0.5f);

  SUBCASE("a rank-0 tensor on either side") {
    const mg::Tensor<float, 3> y = s - x;
    const mg::Tensor<float, 3> z = x - s;
    CHECK(y.shape() == x.shape());
    for (index_t i = 0; i < 24; ++i) {
      CHECK(y.data()[i] == 0.5f - static_cast<float>(i));
      CHECK(z.data()[i] == static_cast<float>(i) - 0.5f);
    }
  }
  SUBCASE("a C++ scalar on either side") {
    const mg::Tensor<float, 3> y = 2.0f - x;
    const mg::Tensor<float, 3> z = x / 4.0;
    for (index_t i = 0; i < 24; ++i) {
      CHECK(y.data()[i] == 2.0f - static_cast<float>(i));
      CHECK(z.data()[i] == static_cast<float>(i) / 4.0f);
    }
  }
  SUBCASE("rank 0 with rank 0 stays rank 0") {
    const auto t = mg::full<float>(mg::Shape<0>{}, 3.0f);
    const mg::Tensor<float, 0> y = s * t + 1.0f;
    CHECK(y.item() == 2.5f);
  }
  SUBCASE("a rank-0 tensor broadcasts into a zero-size result") {
    const mg::Tensor<float, 2> y = s + mg::zeros<float>({0, 3});
    CHECK(y.shape() == mg::Shape<2>{0, 3});
    CHECK(y.numel() == 0);
  }
}

TEST_CASE("broadcast: assign() writes a broadcast expression into existing memory") {
  SUBCASE("rows, columns and scalars fill the destination and keep its storage") {
    auto y = mg::zeros<float>({3, 4});
    const float* storage = y.data();
    const mg::Tensor<float, 1> row = {1, 2, 3, 4};
    const mg::Tensor<float, 2> col = {{10}, {20}, {30}};
    y.assign(row);
    CHECK(y.data() == storage);
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 4; ++j) CHECK(y(i, j) == static_cast<float>(j + 1));
    y.assign(col + row);
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 4; ++j) CHECK(y(i, j) == static_cast<float>(10 * (i + 1) + j + 1));
    y.assign(mg::full<float>(mg::Shape<0>{}, -1.0f));
    for (float v : y.to_vector()) CHECK(v == -1.0f);
    CHECK(y.data() == storage);
  }
  SUBCASE("random shapes: the destination receives the operand broadcast to its shape") {
    std::mt19937 rng(99);
    for (int trial = 0; trial < 50; ++trial) {
      const Dims dd = random_dims(rng, 4);
      const Dims ds = compatible_with(rng, dd, 1 + trial % 4);
      const auto vs = random_values(rng, count(ds));
      const auto vd = random_values(rng, count(dd));
      auto dst = make_tensor<4>(rng, vd, dd, trial % 2 == 0);  // possibly a non-contiguous destination
      const float* storage = dst.data();
      auto check = [&](auto src) {
        dst.assign(src * 2.0f + 1.0f);
        CHECK(dst.data() == storage);
        const auto got = dst.to_vector();
        int mismatches = 0;
        for (index_t i = 0; i < count(dd); ++i)
          mismatches += got[static_cast<std::size_t>(i)] !=
                        vs[static_cast<std::size_t>(source_offset(ds, unravel(i, dd)))] * 2.0f + 1.0f;
        CHECK(mismatches == 0);
      };
      switch (ds.size()) {
        case 1:
          check(make_tensor<1>(rng, vs, ds, false));
          break;
        case 2:
          check(make_tensor<2>(rng, vs, ds, true));
          break;
        case 3:
          check(make_tensor<3>(rng, vs, ds, true));
          break;
        default:
          check(make_tensor<4>(rng, vs, ds, true));
          break;
      }
    }
  }
  SUBCASE("a strided destination view is written through its strides, its neighbours untouched") {
    auto base = mg::zeros<float>({4, 6});
    // Every second column of base: a [4, 3] view with strides [6, 2].
    auto view = mg::Tensor<float, 2>::from_storage(base.storage(), 1, mg::Shape<2>{4, 3}, mg::Strides<2>{{6, 2}});
    const mg::Tensor<float, 1> row = {1, 2, 3};
    view.assign(row);
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 6; ++j) CHECK(base(i, j) == (j % 2 == 1 ? static_cast<float>(j / 2 + 1) : 0.0f));
  }
  SUBCASE("an operand that only broadcasts the other way round is rejected and the destination kept") {
    auto y = mg::full<float>({3, 1}, 7.0f);
    const auto x = mg::ones<float>({3, 4});
    const std::string msg = shape_error_message([&] { y.assign(x); });
    CHECK(contains(msg, "assign"));
    CHECK(contains(msg, "[3, 4]"));
    CHECK(contains(msg, "[3, 1]"));
    for (float v : y.to_vector()) CHECK(v == 7.0f);
  }
  SUBCASE("plain assignment of a lower-rank expression pads the shape with leading 1s") {
    const mg::Tensor<float, 2> m = {{1, 2}, {3, 4}};
    const mg::Tensor<float, 4> y = m + 1.0f;
    CHECK(y.shape() == mg::Shape<4>{1, 1, 2, 2});
    CHECK(y(0, 0, 1, 0) == 4.0f);
  }
}

TEST_CASE("broadcast: zero-size extents") {
  SUBCASE("a zero extent broadcasts against 1 and against itself") {
    const auto a = mg::zeros<float>({0, 3});
    const mg::Tensor<float, 2> y = a + mg::ones<float>({1, 3});
    CHECK(y.shape() == mg::Shape<2>{0, 3});
    const mg::Tensor<float, 3> z = mg::ones<float>({2, 1, 1}) * mg::zeros<float>({4, 0});
    CHECK(z.shape() == mg::Shape<3>{2, 4, 0});
    CHECK(z.numel() == 0);
    const mg::Tensor<float, 2> w = mg::zeros<float>({2, 0}) + mg::zeros<float>({2, 1});
    CHECK(w.shape() == mg::Shape<2>{2, 0});
  }
  SUBCASE("a zero extent does not broadcast against an extent other than 1") {
    const std::string msg = shape_error_message([] { (void)mg::eval(mg::zeros<float>({0}) + mg::zeros<float>({2})); });
    CHECK(contains(msg, "add"));
    CHECK(contains(msg, "[0]"));
    CHECK(contains(msg, "[2]"));
  }
  SUBCASE("assigning into an empty destination writes nothing and throws nothing") {
    auto y = mg::zeros<float>({0, 5});
    y.assign(mg::ones<float>({5}) * 3.0f);
    CHECK(y.numel() == 0);
    CHECK(y.to_vector().empty());
  }
  SUBCASE("the NumPy rule of the test agrees on zero extents") {
    CHECK(numpy_broadcast({0, 3}, {1, 3}) == Dims{0, 3});
    CHECK_FALSE(numpy_broadcast({0}, {2}).has_value());
    CHECK(numpy_broadcast({}, {0}) == Dims{0});
  }
}
