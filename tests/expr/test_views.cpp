// Tests of the views of expr/view.hpp (permute, transpose, t, slice, select, squeeze, unsqueeze,
// broadcast_to/expand, reshape, flatten) and contiguous(): every view is checked element by element
// against explicit index arithmetic on random tensors, over tensors (leaves, folded into strides) and over
// computed expressions (remapped inside the fused loop), alone, composed, and inside broadcasting ops.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <metagrad/metagrad.hpp>
#include <random>
#include <string>
#include <vector>

namespace mg = metagrad;
using mg::index_t;
using mg::Slice;

namespace {

template <int R>
using Idx = mg::Array<index_t, R>;

// Calls f(idx) for every multi-index of `s` in row-major order.
template <int R, class F>
void for_each_index(const mg::Shape<R>& s, F&& f) {
  if (s.numel() == 0) return;
  Idx<R> i{};
  for (;;) {
    f(static_cast<const Idx<R>&>(i));
    int d = R - 1;
    for (; d >= 0; --d) {
      if (++i[d] < s[d]) break;
      i[d] = 0;
    }
    if (d < 0) return;
  }
}

// Element of a tensor at a multi-index, through its strides.
template <class T, int R>
T at(const mg::Tensor<T, R>& t, const Idx<R>& i) {
  index_t off = 0;
  for (int d = 0; d < R; ++d) off += i[d] * t.strides()[d];
  return t.data()[off];
}

template <int R>
std::string idx_str(const Idx<R>& i) {
  std::string s = "(";
  for (int d = 0; d < R; ++d) s += (d ? ", " : "") + std::to_string(i[d]);
  return s + ")";
}

// Checks that `got` has shape `want_shape` and got[i] == want(i) everywhere (one CHECK for the whole tensor).
template <class T, int R, class F>
void check_values(const mg::Tensor<T, R>& got, const mg::Shape<R>& want_shape, F&& want) {
  REQUIRE_MESSAGE(got.shape() == want_shape,
                  "got shape " << mg::to_string(got.shape()) << ", want " << mg::to_string(want_shape));
  index_t bad = 0;
  std::string first;
  for_each_index(want_shape, [&](const Idx<R>& i) {
    const T g = at(got, i), w = want(i);
    if (!(g == w)) {
      if (!bad) first = "at " + idx_str<R>(i) + ": got " + std::to_string(g) + ", want " + std::to_string(w);
      ++bad;
    }
  });
  CHECK_MESSAGE(bad == 0, bad << " wrong elements; first " << first);
}

std::mt19937& rng() {
  static std::mt19937 g(20240611);
  return g;
}

template <int R>
mg::Shape<R> random_shape(index_t lo = 1, index_t hi = 5) {
  std::uniform_int_distribution<index_t> d(lo, hi);
  mg::Shape<R> s;
  for (int i = 0; i < R; ++i) s[i] = d(rng());
  return s;
}

// A tensor of distinct-looking random values in [-10, 10).
template <class T = float, int R>
mg::Tensor<T, R> random_tensor(const mg::Shape<R>& s) {
  mg::Tensor<T, R> t(s);
  std::uniform_real_distribution<double> d(-10, 10);
  for (index_t i = 0; i < s.numel(); ++i) t.data()[i] = static_cast<T>(d(rng()));
  return t;
}

// Python's slice.indices() followed by range(): the positions a slice selects on an axis of extent n.
// Written from the CPython reference (PySlice_AdjustIndices), independently of the library.
std::vector<index_t> py_slice(index_t n, index_t start, index_t stop, index_t step) {
  const index_t lower = step > 0 ? 0 : -1, upper = step > 0 ? n : n - 1;
  auto adjust = [&](index_t v, index_t dflt) {
    if (v == Slice::none) return dflt;
    if (v < 0) {
      v += n;
      return v < lower ? lower : v;
    }
    return v > upper ? upper : v;
  };
  const index_t b = adjust(start, step > 0 ? lower : upper), e = adjust(stop, step > 0 ? upper : lower);
  std::vector<index_t> out;
  for (index_t i = b; step > 0 ? i < e : i > e; i += step) out.push_back(i);
  return out;
}

template <int R>
std::string shape_str(const mg::Shape<R>& s) {
  return mg::to_string(s);
}

}  // namespace

TEST_CASE("views: permute matches index arithmetic for every permutation") {
  SUBCASE("all six permutations of random rank-3 tensors, as a view of a tensor and of an expression") {
    for (int trial = 0; trial < 4; ++trial) {
      const auto s = random_shape<3>();
      const auto x = random_tensor(s);
      int p[3] = {0, 1, 2};
      do {
        CAPTURE(shape_str(s));
        CAPTURE(p[0] * 100 + p[1] * 10 + p[2]);
        const mg::Shape<3> os{s[p[0]], s[p[1]], s[p[2]]};
        auto want = [&](const Idx<3>& o) {
          Idx<3> i{};
          for (int k = 0; k < 3; ++k) i[p[k]] = o[k];
          return at(x, i);
        };
        check_values(mg::Tensor<float, 3>(x.permute(p)), os, want);
        check_values(mg::Tensor<float, 3>((x * 2).permute(p)), os, [&](const Idx<3>& o) { return want(o) * 2; });
        check_values(mg::Tensor<float, 3>(mg::permute(x, p)), os, want);
      } while (std::next_permutation(p, p + 3));
    }
  }
  SUBCASE("rank 4 with negative axes") {
    const auto s = random_shape<4>();
    const auto x = random_tensor(s);
    const mg::Tensor<float, 4> y = x.permute({-1, 0, -2, 1});  // {3, 0, 2, 1}
    check_values(y, mg::Shape<4>{s[3], s[0], s[2], s[1]}, [&](const Idx<4>& o) {
      return at(x, Idx<4>{o[1], o[3], o[2], o[0]});
    });
  }
  SUBCASE("a repeated axis throws index_error") {
    const auto x = random_tensor(mg::Shape<3>{2, 3, 4});
    CHECK_THROWS_AS(x.permute({0, 0, 1}), mg::index_error);
    CHECK_THROWS_AS(x.permute({0, 1, 3}), mg::index_error);
  }
}

TEST_CASE("views: transpose and t") {
  const auto s = random_shape<3>(2, 5);
  const auto x = random_tensor(s);
  SUBCASE("transpose swaps two axes, negative axes allowed") {
    check_values(mg::Tensor<float, 3>(x.transpose(0, 2)), mg::Shape<3>{s[2], s[1], s[0]}, [&](const Idx<3>& o) {
      return at(x, Idx<3>{o[2], o[1], o[0]});
    });
    check_values(mg::Tensor<float, 3>(x.transpose(-1, 1)), mg::Shape<3>{s[0], s[2], s[1]}, [&](const Idx<3>& o) {
      return at(x, Idx<3>{o[0], o[2], o[1]});
    });
    check_values(mg::Tensor<float, 3>(x.transpose(1, 1)), s, [&](const Idx<3>& o) { return at(x, o); });
  }
  SUBCASE("t() of a matrix and of a matrix expression") {
    const auto m = random_tensor(random_shape<2>(1, 7));
    const auto ms = m.shape();
    check_values(mg::Tensor<float, 2>(m.t()), mg::Shape<2>{ms[1], ms[0]}, [&](const Idx<2>& o) {
      return at(m, Idx<2>{o[1], o[0]});
    });
    check_values(mg::Tensor<float, 2>((m - 1).t()), mg::Shape<2>{ms[1], ms[0]}, [&](const Idx<2>& o) {
      return at(m, Idx<2>{o[1], o[0]}) - 1;
    });
  }
  SUBCASE("an axis out of range throws index_error") { CHECK_THROWS_AS(x.transpose(0, 3), mg::index_error); }
}

TEST_CASE("views: slice follows Python semantics") {
  const index_t bounds[] = {Slice::none, -100, -7, -6, -5, -3, -1, 0, 1, 2, 4, 5, 6, 7, 100};
  const index_t steps[] = {1, 2, 3, -1, -2, -3, 7, -7};
  SUBCASE("every start/stop/step on short axes, tensor and expression") {
    for (index_t n : {index_t{0}, index_t{1}, index_t{5}, index_t{6}}) {
      const auto x = random_tensor(mg::Shape<1>{n});
      for (index_t b : bounds)
        for (index_t e : bounds)
          for (index_t st : steps) {
            const auto want = py_slice(n, b, e, st);
            CAPTURE(n);
            CAPTURE(b);
            CAPTURE(e);
            CAPTURE(st);
            const mg::Shape<1> ws{static_cast<index_t>(want.size())};
            check_values(mg::Tensor<float, 1>(x.slice(0, b, e, st)), ws,
                         [&](const Idx<1>& o) { return at(x, Idx<1>{want[o[0]]}); });
            check_values(mg::Tensor<float, 1>((x + 1).slice(0, b, e, st)), ws,
                         [&](const Idx<1>& o) { return at(x, Idx<1>{want[o[0]]}) + 1; });
          }
    }
  }
  SUBCASE("one axis of a rank-3 tensor, the others whole") {
    const auto s = random_shape<3>(3, 6);
    const auto x = random_tensor(s);
    for (int axis = -3; axis < 3; ++axis)
      for (index_t st : {index_t{2}, index_t{-1}, index_t{-2}}) {
        const int a = axis < 0 ? axis + 3 : axis;
        const auto want = py_slice(s[a], -2, 0, st);
        mg::Shape<3> ws = s;
        ws[a] = static_cast<index_t>(want.size());
        auto f = [&](const Idx<3>& o) {
          Idx<3> i = o;
          i[a] = want[o[a]];
          return at(x, i);
        };
        CAPTURE(axis);
        CAPTURE(st);
        check_values(mg::Tensor<float, 3>(x.slice(axis, -2, 0, st)), ws, f);
        check_values(mg::Tensor<float, 3>((x * 1).slice(axis, -2, 0, st)), ws, f);
      }
  }
  SUBCASE("one Slice per axis") {
    const auto x = random_tensor(mg::Shape<3>{5, 6, 7});
    const Slice sl[3] = {Slice{1, Slice::none, 2}, Slice{Slice::none, Slice::none, -1}, Slice{-3, -100, -2}};
    const auto i0 = py_slice(5, 1, Slice::none, 2), i1 = py_slice(6, Slice::none, Slice::none, -1),
               i2 = py_slice(7, -3, -100, -2);
    const mg::Shape<3> ws{static_cast<index_t>(i0.size()), static_cast<index_t>(i1.size()),
                          static_cast<index_t>(i2.size())};
    CHECK(ws == mg::Shape<3>{2, 6, 3});
    auto f = [&](const Idx<3>& o) { return at(x, Idx<3>{i0[o[0]], i1[o[1]], i2[o[2]]}); };
    check_values(mg::Tensor<float, 3>(x.slice(sl)), ws, f);
    check_values(mg::Tensor<float, 3>((x + 0).slice(sl)), ws, f);
    check_values(mg::Tensor<float, 3>(x.slice({Slice{}, Slice{}, Slice{}})), x.shape(),
                 [&](const Idx<3>& o) { return at(x, o); });
  }
  SUBCASE("a zero step throws index_error") {
    const auto x = random_tensor(mg::Shape<1>{4});
    CHECK_THROWS_AS(x.slice(0, 0, 4, 0), mg::index_error);
    CHECK_THROWS_AS(x.slice(1, 0, 4), mg::index_error);
  }
  SUBCASE("a slice of a tensor that later shrinks is refused") {
    auto x = random_tensor(mg::Shape<1>{10});
    auto v = x.slice(0, 5, 9);
    x = random_tensor(mg::Shape<1>{3});
    CHECK_THROWS_AS((mg::Tensor<float, 1>(v)), mg::shape_error);
  }
}

TEST_CASE("views: select") {
  const auto s = random_shape<3>(2, 5);
  const auto x = random_tensor(s);
  SUBCASE("every axis, every index (negative too)") {
    for (int axis = 0; axis < 3; ++axis)
      for (index_t i = -s[axis]; i < s[axis]; ++i) {
        const index_t ii = i < 0 ? i + s[axis] : i;
        mg::Shape<2> ws;
        for (int d = 0, k = 0; d < 3; ++d)
          if (d != axis) ws[k++] = s[d];
        auto f = [&](const Idx<2>& o) {
          Idx<3> full{};
          for (int d = 0, k = 0; d < 3; ++d) full[d] = d == axis ? ii : o[k++];
          return at(x, full);
        };
        CAPTURE(axis);
        CAPTURE(i);
        check_values(mg::Tensor<float, 2>(x.select(axis, i)), ws, f);
        check_values(mg::Tensor<float, 2>((-x).select(axis, i)), ws, [&](const Idx<2>& o) { return -f(o); });
      }
  }
  SUBCASE("an index out of range throws index_error") {
    CHECK_THROWS_AS(x.select(0, s[0]), mg::index_error);
    CHECK_THROWS_AS(x.select(2, -s[2] - 1), mg::index_error);
  }
  SUBCASE("select down to rank 0") {
    const auto v = random_tensor(mg::Shape<1>{4});
    CHECK(mg::Tensor<float, 0>(v.select(0, -1)).item() == v(3));
  }
}

TEST_CASE("views: squeeze and unsqueeze") {
  const auto x = random_tensor(mg::Shape<3>{3, 1, 4});
  SUBCASE("squeeze removes an axis of extent 1") {
    check_values(mg::Tensor<float, 2>(x.squeeze(1)), mg::Shape<2>{3, 4}, [&](const Idx<2>& o) {
      return at(x, Idx<3>{o[0], 0, o[1]});
    });
    check_values(mg::Tensor<float, 2>((x * 3).squeeze(-2)), mg::Shape<2>{3, 4}, [&](const Idx<2>& o) {
      return 3 * at(x, Idx<3>{o[0], 0, o[1]});
    });
  }
  SUBCASE("squeeze of an axis longer than 1 throws shape_error") {
    CHECK_THROWS_AS(x.squeeze(0), mg::shape_error);
    CHECK_THROWS_AS((x + 1).squeeze(2), mg::shape_error);
  }
  SUBCASE("unsqueeze inserts an axis of extent 1 at every position") {
    auto f = [&](int pos) {
      return [&x, pos](const Idx<4>& o) {
        Idx<3> i{};
        for (int d = 0, k = 0; d < 4; ++d)
          if (d != pos) i[k++] = o[d];
        return at(x, i);
      };
    };
    check_values(mg::Tensor<float, 4>(x.unsqueeze(0)), mg::Shape<4>{1, 3, 1, 4}, f(0));
    check_values(mg::Tensor<float, 4>(x.unsqueeze(2)), mg::Shape<4>{3, 1, 1, 4}, f(2));
    check_values(mg::Tensor<float, 4>(x.unsqueeze(3)), mg::Shape<4>{3, 1, 4, 1}, f(3));
    check_values(mg::Tensor<float, 4>(x.unsqueeze(-1)), mg::Shape<4>{3, 1, 4, 1}, f(3));
    check_values(mg::Tensor<float, 4>((x + 0).unsqueeze(1)), mg::Shape<4>{3, 1, 1, 4}, f(1));
    CHECK_THROWS_AS(x.unsqueeze(4), mg::index_error);
  }
}

TEST_CASE("views: broadcast_to and expand") {
  const auto v = random_tensor(mg::Shape<2>{3, 1});
  SUBCASE("extent-1 axes repeat and new leading axes are added") {
    auto f = [&](const Idx<3>& o) { return at(v, Idx<2>{o[1], 0}); };
    check_values(mg::Tensor<float, 3>(mg::broadcast_to(v, {2, 3, 4})), mg::Shape<3>{2, 3, 4}, f);
    check_values(mg::Tensor<float, 3>(v.expand(mg::Shape<3>{2, 3, 4})), mg::Shape<3>{2, 3, 4}, f);
    check_values(mg::Tensor<float, 3>(v.broadcast_to(mg::Shape<3>{2, 3, 4})), mg::Shape<3>{2, 3, 4}, f);
    check_values(mg::Tensor<float, 3>(mg::broadcast_to(v * 2, {2, 3, 4})), mg::Shape<3>{2, 3, 4},
                 [&](const Idx<3>& o) { return 2 * f(o); });
  }
  SUBCASE("broadcasting to the same shape is the identity") {
    check_values(mg::Tensor<float, 2>(mg::broadcast_to(v, {3, 1})), v.shape(),
                 [&](const Idx<2>& o) { return at(v, o); });
  }
  SUBCASE("incompatible shapes throw shape_error") {
    CHECK_THROWS_AS(mg::broadcast_to(v, {2, 4, 4}), mg::shape_error);
    CHECK_THROWS_AS(mg::broadcast_to(v, {4, 2}), mg::shape_error);
    // An extent of 1 broadcasts to 0 as well (NumPy).
    CHECK(mg::Tensor<float, 2>(mg::broadcast_to(v, {3, 0})).numel() == 0);
  }
  SUBCASE("a broadcast view composed with other views") {
    // (3,1) -> (3,4) -> transposed (4,3) -> rows 1..3 reversed.
    const mg::Tensor<float, 2> y = mg::broadcast_to(v, {3, 4}).t().slice(0, 3, 0, -1);
    check_values(y, mg::Shape<2>{3, 3}, [&](const Idx<2>& o) { return at(v, Idx<2>{o[1], 0}); });
  }
}

TEST_CASE("views: reshape and flatten") {
  const auto s = mg::Shape<3>{2, 3, 4};
  const auto x = random_tensor(s);
  auto lin = [&](index_t k) { return x.data()[k]; };  // x is contiguous
  SUBCASE("a contiguous tensor keeps row-major order, with one extent inferred") {
    check_values(mg::Tensor<float, 2>(x.reshape({6, -1})), mg::Shape<2>{6, 4},
                 [&](const Idx<2>& o) { return lin(o[0] * 4 + o[1]); });
    check_values(mg::Tensor<float, 4>(x.reshape({-1, 2, 2, 3})), mg::Shape<4>{2, 2, 2, 3},
                 [&](const Idx<4>& o) { return lin(((o[0] * 2 + o[1]) * 2 + o[2]) * 3 + o[3]); });
    check_values(mg::Tensor<float, 1>(x.flatten()), mg::Shape<1>{24}, [&](const Idx<1>& o) { return lin(o[0]); });
  }
  SUBCASE("reshape of a computed expression") {
    const auto y = random_tensor(s);
    check_values(mg::Tensor<float, 2>((x + y).reshape({4, 6})), mg::Shape<2>{4, 6},
                 [&](const Idx<2>& o) { return lin(o[0] * 6 + o[1]) + y.data()[o[0] * 6 + o[1]]; });
  }
  SUBCASE("reshape of a non-contiguous tensor copies in its logical order") {
    // A (4, 6) layout over the transpose of a (6, 4) matrix.
    const auto m = random_tensor(mg::Shape<2>{6, 4});
    const auto mt = mg::Tensor<float, 2>::from_storage(m.storage(), 0, mg::Shape<2>{4, 6}, mg::Strides<2>{{1, 4}});
    REQUIRE_FALSE(mt.is_contiguous());
    auto f = [&](const Idx<2>& o) {
      const index_t k = o[0] * 8 + o[1];  // position in the (4, 6) row-major order
      return at(m, Idx<2>{k % 6, k / 6});
    };
    check_values(mg::Tensor<float, 2>(mt.reshape({3, 8})), mg::Shape<2>{3, 8}, f);
    check_values(mg::Tensor<float, 2>(m.t().reshape({3, 8})), mg::Shape<2>{3, 8}, f);
    check_values(mg::Tensor<float, 2>((m * 1).t().reshape({3, 8})), mg::Shape<2>{3, 8}, f);
  }
  SUBCASE("reshape of a strided slice") {
    const auto m = random_tensor(mg::Shape<2>{5, 6});
    const mg::Tensor<float, 1> y = m.slice(1, 1, Slice::none, 2).reshape({-1});
    check_values(y, mg::Shape<1>{15}, [&](const Idx<1>& o) { return at(m, Idx<2>{o[0] / 3, 1 + 2 * (o[0] % 3)}); });
  }
  SUBCASE("bad extents throw shape_error") {
    CHECK_THROWS_AS(x.reshape({5, -1}), mg::shape_error);
    CHECK_THROWS_AS(x.reshape({-1, -1}), mg::shape_error);
    CHECK_THROWS_AS(x.reshape({2, 3, 5}), mg::shape_error);
    CHECK_THROWS_AS(x.reshape({-2, 12}), mg::shape_error);
  }
  SUBCASE("an empty tensor reshapes to any shape with zero elements") {
    const auto e = mg::zeros<float>({0, 4});
    CHECK(mg::Tensor<float, 2>(e.reshape({2, 0})).shape() == mg::Shape<2>{2, 0});
    CHECK_THROWS_AS(e.reshape({-1, 0}), mg::shape_error);
  }
}

TEST_CASE("views: views of views") {
  const auto x = random_tensor(mg::Shape<4>{3, 4, 5, 2});
  SUBCASE("permute, then slice, then select, then transpose") {
    // p: (5, 3, 2, 4) = x[i1?]: p[a, b, c, d] = x[b, d, a, c]
    const mg::Tensor<float, 2> y =
        x.permute({2, 0, 3, 1}).slice(0, 4, 0, -2).select(2, 1).transpose(0, 1).select(2, -1);
    // after slice: a' -> a = 4 - 2a' (a' in 0..1); select(2,1): c = 1 -> (a', b, d); transpose -> (b, a', d);
    // select(2, -1): d = 3 -> (b, a').
    check_values(y, mg::Shape<2>{3, 2}, [&](const Idx<2>& o) { return at(x, Idx<4>{o[0], 3, 4 - 2 * o[1], 1}); });
  }
  SUBCASE("unsqueeze, expand, reshape") {
    const auto v = random_tensor(mg::Shape<1>{4});
    const mg::Tensor<float, 2> y = v.unsqueeze(0).expand(mg::Shape<2>{3, 4}).reshape({4, 3});
    check_values(y, mg::Shape<2>{4, 3}, [&](const Idx<2>& o) { return at(v, Idx<1>{(o[0] * 3 + o[1]) % 4}); });
  }
  SUBCASE("the same chain on a tensor and on an expression agree") {
    const auto b = random_tensor(mg::Shape<4>{3, 4, 5, 2});
    const mg::Tensor<float, 4> sum = x + b;
    auto chain = [](const auto& e) {
      return mg::Tensor<float, 2>(e.transpose(1, 3).slice(2, 1, Slice::none, 2).select(0, -1).reshape({-1, 4}));
    };
    const auto from_leaf = chain(sum);
    const auto from_expr = chain(x + b);
    CHECK(from_expr.to_vector() == from_leaf.to_vector());
    // sum.transpose(1, 3): (3, 2, 5, 4); slice axis 2 from 1 step 2: (3, 2, 2, 4) with c = 1 + 2c';
    // select(0, -1): (2, 2, 4); reshape({-1, 4}): (4, 4).
    check_values(from_leaf, mg::Shape<2>{4, 4}, [&](const Idx<2>& o) {
      const index_t k = o[0] * 4 + o[1];
      const index_t a = k / 8, c = (k / 4) % 2, d = k % 4;
      return at(sum, Idx<4>{2, d, 1 + 2 * c, a});
    });
  }
  SUBCASE("views of broadcasts: reshape copies the repeated elements, slice and select read them") {
    const mg::Tensor<float, 1> v = {1, 2, 3};
    CHECK(mg::Tensor<float, 2>(mg::broadcast_to(v, {2, 3}).reshape({3, 2})).to_vector() ==
          std::vector<float>{1, 2, 3, 1, 2, 3});
    CHECK(mg::Tensor<float, 1>((v * 1).unsqueeze(0).expand({2, 3}).t().reshape({-1})).to_vector() ==
          std::vector<float>{1, 1, 2, 2, 3, 3});
    CHECK(mg::Tensor<float, 1>(mg::broadcast_to(v * 2, {2, 3}).slice(1, 2, Slice::none, -1).select(0, 1)).to_vector() ==
          std::vector<float>{6, 4, 2});
    const mg::Tensor<float, 2> m = mg::arange<float>(6).reshape({2, 3});
    CHECK(mg::Tensor<float, 2>(m.unsqueeze(1).expand({2, 2, 3}).reshape({4, 3})).to_vector() ==
          std::vector<float>{0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5});
    CHECK(mg::Tensor<float, 2>(m.t().reshape({2, 3}).t()).to_vector() == std::vector<float>{0, 4, 3, 2, 1, 5});
  }
  SUBCASE("(a + b).t().reshape({-1}) reads the transposed sum in row-major order") {
    const auto a = random_tensor(mg::Shape<2>{3, 5});
    const auto b = random_tensor(mg::Shape<2>{3, 5});
    const mg::Tensor<float, 1> y = (a + b).t().reshape({-1});
    check_values(y, mg::Shape<1>{15}, [&](const Idx<1>& o) {
      const Idx<2> i{o[0] % 3, o[0] / 3};
      return at(a, i) + at(b, i);
    });
  }
}

TEST_CASE("views: round trips are the identity") {
  // Runs f(x, same) on five random rank-4 tensors; same(y) checks y == x element by element.
  auto trials = [](auto&& f) {
    for (int trial = 0; trial < 5; ++trial) {
      const auto s = random_shape<4>();
      const auto x = random_tensor(s);
      CAPTURE(shape_str(s));
      f(x, [&](const mg::Tensor<float, 4>& y) { check_values(y, s, [&](const Idx<4>& o) { return at(x, o); }); });
    }
  };
  SUBCASE("permute then the inverse permutation") {
    trials([](const auto& x, auto&& same) {
      int p[4] = {0, 1, 2, 3};
      std::shuffle(p, p + 4, rng());
      int inv[4];
      for (int k = 0; k < 4; ++k) inv[p[k]] = k;
      same(x.permute(p).permute(inv));
      same((x + 0).permute(p).permute(inv));
    });
  }
  SUBCASE("reshape there and back") {
    trials([](const auto& x, auto&& same) {
      const auto s = x.shape();
      same(x.reshape({-1}).reshape(s));
      same(x.reshape({s[0] * s[1], s[2] * s[3]}).reshape(s));
      same((x * 1).reshape({s[3], -1}).reshape(s));
      same(x.permute({3, 2, 1, 0}).reshape({-1}).reshape({s[3], s[2], s[1], s[0]}).permute({3, 2, 1, 0}));
    });
  }
  SUBCASE("unsqueeze then squeeze") {
    trials([](const auto& x, auto&& same) {
      same(x.unsqueeze(2).squeeze(2));
      same((x - 0).unsqueeze(4).squeeze(-1));
    });
  }
  SUBCASE("transpose twice") {
    trials([](const auto& x, auto&& same) {
      same(x.transpose(0, 3).transpose(0, 3));
      same(x.transpose(1, 2).transpose(2, 1));
      same((x + 0).transpose(-1, 0).transpose(3, 0));
    });
  }
  SUBCASE("a double reversal") {
    trials([](const auto& x, auto&& same) {
      same(x.slice(1, Slice::none, Slice::none, -1).slice(1, Slice::none, Slice::none, -1));
      same((x * 1).slice(3, -1, -100, -1).slice(3, -1, -100, -1));
    });
  }
}

TEST_CASE("views: a view reads the tensor's current values") {
  auto x = random_tensor(mg::Shape<2>{3, 4});
  const auto y = random_tensor(mg::Shape<2>{3, 4});
  SUBCASE("assign() into the viewed tensor is seen by a view made before") {
    const auto v = x.t();
    const auto w = (x * 2).slice(1, 1, 3);
    x.assign(y);
    check_values(mg::Tensor<float, 2>(v), mg::Shape<2>{4, 3}, [&](const Idx<2>& o) {
      return at(y, Idx<2>{o[1], o[0]});
    });
    check_values(mg::Tensor<float, 2>(w), mg::Shape<2>{3, 2}, [&](const Idx<2>& o) {
      return 2 * at(y, Idx<2>{o[0], o[1] + 1});
    });
  }
  SUBCASE("assign() of a broadcast expression fills the tensor") {
    const auto row = random_tensor(mg::Shape<1>{4});
    x.assign(row);
    check_values(x, mg::Shape<2>{3, 4}, [&](const Idx<2>& o) { return at(row, Idx<1>{o[1]}); });
    x.assign(row.unsqueeze(0) * 2);
    check_values(x, mg::Shape<2>{3, 4}, [&](const Idx<2>& o) { return 2 * at(row, Idx<1>{o[1]}); });
    CHECK_THROWS_AS(x.assign(row.slice(0, 0, 3)), mg::shape_error);
  }
  SUBCASE("writing into a strided window of the storage changes what views of the whole read") {
    // Column 2 of x as a tensor over the same storage.
    auto col = mg::Tensor<float, 1>::from_storage(x.storage(), 2, mg::Shape<1>{3}, mg::Strides<1>{{4}});
    col.assign(mg::arange<float>(3) + 100);
    const mg::Tensor<float, 1> r = x.select(1, 2);
    CHECK(r.to_vector() == std::vector<float>{100, 101, 102});
    const mg::Tensor<float, 1> c = x.t().select(0, -2);
    CHECK(c.to_vector() == std::vector<float>{100, 101, 102});
  }
  SUBCASE("assigning a view of the tensor to itself goes through a temporary") {
    auto sq = random_tensor(mg::Shape<2>{4, 4});
    const auto before = sq.clone();
    sq = sq.t();
    check_values(sq, mg::Shape<2>{4, 4}, [&](const Idx<2>& o) { return at(before, Idx<2>{o[1], o[0]}); });
    sq.assign(sq.slice(0, Slice::none, Slice::none, -1));
    check_values(sq, mg::Shape<2>{4, 4}, [&](const Idx<2>& o) { return at(before, Idx<2>{o[1], 3 - o[0]}); });
    sq.assign(sq.select(0, 0).unsqueeze(0) + sq);  // row 0 is read by every row while row 0 is written
    check_values(sq, mg::Shape<2>{4, 4}, [&](const Idx<2>& o) {
      return at(before, Idx<2>{o[1], 3}) + at(before, Idx<2>{o[1], 3 - o[0]});
    });
  }
}

TEST_CASE("views: contiguous()") {
  const auto x = random_tensor(mg::Shape<2>{5, 3});
  SUBCASE("a contiguous tensor is returned as is, sharing storage") {
    const auto c = mg::contiguous(x);
    CHECK(c.data() == x.data());
    CHECK(c.storage() == x.storage());
  }
  SUBCASE("a view is copied into fresh contiguous memory") {
    const auto c = mg::contiguous(x.t());
    CHECK(c.is_contiguous());
    CHECK(c.data() != x.data());
    check_values(c, mg::Shape<2>{3, 5}, [&](const Idx<2>& o) { return at(x, Idx<2>{o[1], o[0]}); });
    const auto d = mg::contiguous(x.slice(0, 1, 3));
    CHECK(d.data() != x.data() + 3);
    check_values(d, mg::Shape<2>{2, 3}, [&](const Idx<2>& o) { return at(x, Idx<2>{o[0] + 1, o[1]}); });
  }
  SUBCASE("a non-contiguous tensor is cloned") {
    const auto xt = mg::Tensor<float, 2>::from_storage(x.storage(), 0, mg::Shape<2>{3, 5}, mg::Strides<2>{{1, 3}});
    const auto c = mg::contiguous(xt);
    CHECK(c.is_contiguous());
    CHECK(c.data() != x.data());
    CHECK(c.to_vector() == xt.to_vector());
  }
}

TEST_CASE("views: views compose with broadcasting in binary ops") {
  const auto a = random_tensor(mg::Shape<2>{4, 3});
  const auto b = random_tensor(mg::Shape<1>{4});
  const auto c = random_tensor(mg::Shape<2>{3, 4});
  SUBCASE("a transposed tensor plus a row vector") {
    check_values(mg::Tensor<float, 2>(a.t() + b), mg::Shape<2>{3, 4}, [&](const Idx<2>& o) {
      return at(a, Idx<2>{o[1], o[0]}) + at(b, Idx<1>{o[1]});
    });
  }
  SUBCASE("a column made by unsqueeze broadcasts across columns") {
    check_values(mg::Tensor<float, 2>(a * b.unsqueeze(1)), mg::Shape<2>{4, 3},
                 [&](const Idx<2>& o) { return at(a, o) * at(b, Idx<1>{o[0]}); });
  }
  SUBCASE("a selected row of an expression broadcasts against a view") {
    check_values(mg::Tensor<float, 2>(c - (a * 2).t().select(1, 0).unsqueeze(1)), mg::Shape<2>{3, 4},
                 [&](const Idx<2>& o) {
                   return at(c, o) - 2 * at(a, Idx<2>{0, o[0]});
                 });
  }
  SUBCASE("a reversed slice broadcast to a higher rank") {
    check_values(mg::Tensor<float, 3>(c.slice(1, Slice::none, Slice::none, -1) + a.t().unsqueeze(0).slice(0, 0, 1) +
                                      mg::zeros<float>({2, 1, 1})),
                 mg::Shape<3>{2, 3, 4}, [&](const Idx<3>& o) {
                   return at(c, Idx<2>{o[1], 3 - o[2]}) + at(a, Idx<2>{o[2], o[1]});
                 });
  }
  SUBCASE("a broadcast non-leaf view: reshape of a sum, broadcast over a new axis") {
    const auto r = random_tensor(mg::Shape<1>{12});
    check_values(mg::Tensor<float, 3>((r + 1).reshape({3, 4}) * mg::ones<float>({2, 1, 1})), mg::Shape<3>{2, 3, 4},
                 [&](const Idx<3>& o) { return at(r, Idx<1>{o[1] * 4 + o[2]}) + 1; });
    check_values(mg::Tensor<float, 3>((c + 0).t().unsqueeze(0) + mg::zeros<float>({2, 4, 3})), mg::Shape<3>{2, 4, 3},
                 [&](const Idx<3>& o) {
                   return at(c, Idx<2>{o[2], o[1]});
                 });
  }
  SUBCASE("shapes that do not broadcast throw shape_error") {
    CHECK_THROWS_AS((mg::Tensor<float, 2>(a.t() + c.t())), mg::shape_error);
  }
}
