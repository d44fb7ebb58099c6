// The device-independent half of the CUDA reduction driver (backend/cuda/reduce_layout.hpp), run on the CPU: the
// enumeration of segments and positions (every input element exactly once, the CPU's position within the
// reduced axes, the output offset, flat offsets) against naive loops over many shapes, masks, output strides
// and memory orders; the cutting of segments into parts; and a CPU replay of the kernels (the full
// reduction, warp per segment, thread per segment, the merge of parts) with the same accumulation code and
// the same merge trees, against cpu::reduce, for every reducer. The kernels run this same code on a GPU.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <deque>
#include <memory>
#include <metagrad/backend/cuda/reduce_layout.hpp>
#include <metagrad/metagrad.hpp>
#include <random>
#include <type_traits>
#include <vector>

namespace mg = metagrad;
namespace cd = metagrad::cuda::detail;
using mg::index_t;

namespace {

template <int R>
index_t row_major(const mg::Array<index_t, R>& idx, const mg::Shape<R>& in, const mg::Array<bool, R>& pick, bool want) {
  index_t lin = 0;
  for (int d = 0; d < R; ++d)
    if (pick[d] == want) lin = lin * in[d] + idx[d];
  return lin;
}

// Checks the enumeration of one reduction against naive loops.
template <class I, int R>
void check_index(const mg::Shape<R>& in, const mg::Array<bool, R>& mask, const mg::Strides<R>& ost,
                 const mg::Array<index_t, R>* mem) {
  const auto ix = cd::make_reduce_index(in, mask, ost, mem);
  index_t M = 1, N = 1;
  for (int d = 0; d < R; ++d) (mask[d] ? N : M) *= in[d];
  REQUIRE(ix.M == M);
  REQUIRE(ix.N == N);
  // Expected flags.
  int last_nonunit = -1;
  index_t best_key = -1;
  bool run = true;
  int state = 0;
  for (int d = 0; d < R; ++d) {
    if (in[d] == 1) continue;
    if (mem) {
      const index_t s = (*mem)[d];
      const index_t key = s == 0 ? std::numeric_limits<index_t>::max() : (s < 0 ? -s : s);
      if (last_nonunit < 0 || key <= best_key) {
        best_key = key;
        last_nonunit = d;
      }
    } else {
      last_nonunit = d;
    }
    if (mask[d]) {
      if (state == 2) run = false;
      state = 1;
    } else if (state == 1) {
      state = 2;
    }
  }
  if (last_nonunit >= 0) CHECK(ix.inner_reduced == mask[last_nonunit]);
  if (!mem) CHECK(ix.run == run);
  if (M == 0 || N == 0) return;
  index_t numel = M * N;
  std::vector<int> seen(static_cast<std::size_t>(numel), 0);
  std::vector<int> seen_m(static_cast<std::size_t>(M), 0);
  for (I m = 0; m < static_cast<I>(M); ++m) {
    mg::Array<I, R> idx{};
    const I kflat = ix.set_kept(idx, m);
    mg::Array<index_t, R> wide{};
    for (int d = 0; d < R; ++d) wide[d] = idx[d];
    const index_t mlog = row_major(wide, in, mask, false);
    ++seen_m[static_cast<std::size_t>(mlog)];
    if (!mem) REQUIRE(mlog == static_cast<index_t>(m));
    index_t want_out = 0;
    for (int d = 0; d < R; ++d)
      if (!mask[d]) want_out += wide[d] * ost[d];
    REQUIRE(static_cast<index_t>(ix.out_offset(m)) == want_out);
    for (I t = 0; t < static_cast<I>(N); ++t) {
      mg::Array<I, R> id2 = idx;
      I pos = -1;
      const I rflat = ix.set_reduced(id2, t, pos);
      index_t lin = 0;
      for (int d = 0; d < R; ++d) {
        REQUIRE(id2[d] >= 0);
        REQUIRE(id2[d] < in[d]);
        wide[d] = id2[d];
        lin = lin * in[d] + id2[d];
      }
      ++seen[static_cast<std::size_t>(lin)];
      REQUIRE(static_cast<index_t>(kflat + rflat) == lin);
      REQUIRE(static_cast<index_t>(ix.reduced_flat(t)) == static_cast<index_t>(rflat));
      REQUIRE(static_cast<index_t>(pos) == row_major(wide, in, mask, true));
      if (!mem) REQUIRE(pos == t);
    }
  }
  for (int s : seen) REQUIRE(s == 1);
  for (int s : seen_m) REQUIRE(s == 1);
}

template <int R>
void index_sweep(std::mt19937& rng, int shapes) {
  std::uniform_int_distribution<int> ext(0, 4), coin(0, 3);
  for (int k = 0; k < shapes; ++k) {
    mg::Shape<R> in;
    for (int d = 0; d < R; ++d) in[d] = ext(rng) == 0 && coin(rng) == 0 ? 0 : 1 + ext(rng) % 4;
    for (int bits = 0; bits < (1 << R); ++bits) {
      mg::Array<bool, R> mask{};
      for (int d = 0; d < R; ++d) mask[d] = (bits >> d) & 1;
      // Output strides: keepdims-contiguous, and a strided, reversed layout (a transposed destination).
      mg::Strides<R> keep{}, rev{};
      index_t c = 1, c2 = 3;
      for (int d = R - 1; d >= 0; --d) {
        keep[d] = mask[d] ? 0 : c;
        c *= mask[d] ? 1 : in[d];
      }
      for (int d = 0; d < R; ++d) {
        rev[d] = mask[d] ? 12345 : c2;  // garbage on reduced axes must be ignored
        c2 *= mask[d] ? 1 : in[d] + 1;
      }
      // Memory orders: none (row-major), a permutation of contiguous strides, one with a broadcast axis.
      mg::Array<int, R> perm{};
      for (int d = 0; d < R; ++d) perm[d] = d;
      std::shuffle(perm.v, perm.v + R, rng);
      mg::Array<index_t, R> mem{}, bcast{};
      index_t s = 1;
      for (int i = R - 1; i >= 0; --i) {
        mem[perm[i]] = (i % 2 ? -s : s);
        s *= in[perm[i]] > 0 ? in[perm[i]] : 1;
      }
      bcast = mem;
      bcast[perm[0]] = 0;
      for (const auto& o : {keep, rev}) {
        // Strides on reduced axes are ignored by the driver (it zeroes them); make_reduce_index ignores them too.
        check_index<std::int32_t, R>(in, mask, o, nullptr);
        check_index<std::int64_t, R>(in, mask, o, nullptr);
        check_index<std::int32_t, R>(in, mask, o, &mem);
        check_index<std::int64_t, R>(in, mask, o, &bcast);
      }
    }
  }
}

}  // namespace

TEST_CASE("cuda reduce index: every (segment, position) names one element, its CPU position and output offset") {
  std::mt19937 rng(12345);
  index_sweep<1>(rng, 10);
  index_sweep<2>(rng, 30);
  index_sweep<3>(rng, 30);
  index_sweep<4>(rng, 20);
  // Rank 0: one segment of one position.
  const auto ix = cd::make_reduce_index(mg::Shape<0>{}, mg::Array<bool, 0>{}, mg::Strides<0>{});
  CHECK(ix.M == 1);
  CHECK(ix.N == 1);
  CHECK(cd::reduce_path(ix) == cd::ReducePath::full);
}

TEST_CASE("cuda reduce index: a contiguous block of reduced axes reads flat offset t * inner") {
  const mg::Shape<4> in{2, 3, 4, 5};
  const mg::Strides<4> ost{5, 0, 0, 1};  // the compact (2, 5) result
  const auto ix = cd::make_reduce_index(in, mg::Array<bool, 4>{{false, true, true, false}}, ost);
  CHECK(ix.run);
  CHECK(ix.inner == 5);
  CHECK(ix.out_contig);
  CHECK(!ix.inner_reduced);
  // Reducing axes 0 and 2 of the same shape is not one block.
  CHECK(!cd::make_reduce_index(in, mg::Array<bool, 4>{{true, false, true, false}}, ost).run);
  // Unit axes do not break a block: (2, 1, 4) over axes {0, 2} is one block.
  CHECK(cd::make_reduce_index(mg::Shape<3>{2, 1, 4}, mg::Array<bool, 3>{{true, false, true}}, mg::Strides<3>{0, 1, 0})
            .run);
}

TEST_CASE("cuda reduce index: parts of a range cover it once, in nearly equal lengths") {
  for (std::int64_t n : {0, 1, 2, 31, 32, 33, 1000, 4097})
    for (std::int64_t S : {1, 2, 3, 7, 32, 64}) {
      std::int64_t next = 0, lo = n, hi = 0;
      for (std::int64_t s = 0; s < S; ++s) {
        std::int64_t b = 0, e = 0;
        cd::split_range(n, S, s, b, e);
        REQUIRE(b == next);
        REQUIRE(e >= b);
        lo = std::min(lo, e - b);
        hi = std::max(hi, e - b);
        next = e;
      }
      CHECK(next == n);
      CHECK(hi - lo <= 1);
    }
  CHECK(cd::split_count(1000, 100, 8448, 1024, 1 << 24) == 1);  // enough segments: no parts
  CHECK(cd::split_count(3, 5000, 8448, 1024, 1 << 24) == 5);    // few long segments: parts of >= 1024
  CHECK(cd::split_count(3, 0, 8448, 1024, 1 << 24) == 1);
  CHECK(cd::split_count(1, index_t(1) << 40, 8448, 16, 65535) == 8448);
  CHECK(cd::split_count(1, index_t(1) << 40, 1 << 20, 16, 65535) == 65535);
  const auto g = cd::cols_shape(3, 4100, 256, 132);
  CHECK(g.bx == 32);
  CHECK(g.rows == 8);
  CHECK(g.blocks == 1);
  CHECK(g.parts == 33);
  CHECK(cd::cols_shape(1000, 8, 256, 132).bx == 256);
  CHECK(cd::cols_shape(1000, 8, 256, 132).parts == 1);
}

// --- CPU replay of the kernels ------------------------------------------------------------------------------

namespace {

// Lane 0's result of the kernels' shuffle-down warp merge: at offset o lane i takes op(x_i, x_{i+o}).
template <class Acc, class Op>
Acc warp_merge(std::deque<Acc> lanes, const Op& op) {
  for (std::size_t off = 1; off < lanes.size(); off *= 2)
    for (std::size_t l = 0; l + off < lanes.size(); l += 2 * off) lanes[l] = op(lanes[l], lanes[l + off]);
  return lanes[0];
}

// The kernels of run_reduction, replayed thread by thread on the CPU with `sms` multiprocessors assumed.
// full_mode picks the item form of the full path (item_vector needs a flat plan).
template <class Red, class Plan, class Out, int R>
void replay(const Red& red, const Plan& plan, const mg::Shape<R>& in, const mg::Array<bool, R>& mask, Out* out,
            const mg::Strides<R>& ost, int sms, int full_mode) {
  using T = typename Plan::value_type;
  using Acc = typename Red::template acc_t<T>;
  using I = std::int64_t;
  const auto ix = cd::reduce_index_for(plan, in, mask, ost);
  const bool flat = plan.is_flat();
  const cd::MergeOp<Red, T> op{red};
  const index_t M = ix.M, N = ix.N;
  if (M == 0) return;
  const auto path = cd::reduce_path(ix);
  if (path == cd::ReducePath::full) {
    constexpr int L = mg::cuda::vector_lanes<T, Plan>();
    const I items = cd::full_items(N, L, full_mode);
    const cd::FullItem<L, Red, Plan, I, R> item{red, plan, ix, N, full_mode};
    // reduce_items: a warp per part, lanes strided over the items; reduce_parts_block: 256 threads strided
    // over the parts, a tree per warp, then the 8 warps in order.
    const index_t nparts = cd::full_parts(items, sms);
    std::deque<Acc> part;
    for (I s = 0; s < nparts; ++s) {
      I b = 0, e = 0;
      cd::split_range<I>(items, nparts, s, b, e);
      std::deque<Acc> lanes(32, red.template init<T>());
      for (I l = 0; l < 32; ++l)
        for (I j = b + l; j < e; j += 32) lanes[l] = op(lanes[l], item(j));
      part.push_back(warp_merge(lanes, op));
    }
    Acc total = part[0];
    if (nparts > 1) {
      std::deque<Acc> threads(256, red.template init<T>());
      for (I k = 0; k < nparts; ++k) threads[k % 256] = op(threads[k % 256], part[k]);
      total = warp_merge(std::deque<Acc>(threads.begin(), threads.begin() + 32), op);
      for (int w = 1; w < 8; ++w)
        total = op(total, warp_merge(std::deque<Acc>(threads.begin() + 32 * w, threads.begin() + 32 * w + 32), op));
    }
    out[0] = cd::Finisher<Red, T, Out>{red, N}(total);
    return;
  }
  index_t parts = 1;
  std::deque<Acc> partial;  // not a vector: vector<bool> packs bits
  if (path == cd::ReducePath::rows) {
    parts = cd::rows_parts(M, N, sms);
    partial.resize(static_cast<std::size_t>(M * parts));
    for (I w = 0; w < M * parts; ++w) {
      const I m = w / parts, s = w % parts;
      I b = 0, e = 0;
      cd::split_range<I>(N, parts, s, b, e);
      std::deque<Acc> lanes(32, red.template init<T>());
      for (I l = 0; l < 32; ++l) cd::accumulate(red, plan, ix, flat, m, b + l, e, I(32), lanes[l]);
      const Acc acc = warp_merge(lanes, op);
      if (parts > 1)
        partial[static_cast<std::size_t>(w)] = acc;
      else
        out[ix.out_offset(m)] = static_cast<Out>(red.template finish<T>(acc, N));
    }
  } else {
    const auto g = cd::cols_shape(M, N, 256, sms);
    parts = g.parts;
    partial.resize(static_cast<std::size_t>(M * parts));
    for (I s = 0; s < parts; ++s) {
      I b = 0, e = 0;
      cd::split_range<I>(N, parts, s, b, e);
      for (I mb = 0; mb < g.blocks; ++mb)
        for (int tx = 0; tx < g.bx; ++tx) {
          const I m = mb * g.bx + tx;
          if (m >= M) continue;
          std::deque<Acc> rows(static_cast<std::size_t>(g.rows), red.template init<T>());
          for (int ty = 0; ty < g.rows; ++ty) cd::accumulate(red, plan, ix, flat, m, b + ty, e, I(g.rows), rows[ty]);
          Acc acc = rows[0];
          for (int k = 1; k < g.rows; ++k) acc = red.template merge<T>(acc, rows[k]);
          if (parts > 1)
            partial[static_cast<std::size_t>(m * parts + s)] = acc;
          else
            out[ix.out_offset(m)] = static_cast<Out>(red.template finish<T>(acc, N));
        }
    }
  }
  if (parts > 1)
    for (I m = 0; m < M; ++m) {
      std::deque<Acc> lanes(32, red.template init<T>());
      for (I k = 0; k < parts; ++k) lanes[k % 32] = op(lanes[k % 32], partial[static_cast<std::size_t>(m * parts + k)]);
      out[ix.out_offset(m)] = static_cast<Out>(red.template finish<T>(warp_merge(lanes, op), N));
    }
}

template <class V>
bool close(V got, V want) {
  if constexpr (std::is_floating_point_v<V>) {
    if (std::isnan(want)) return std::isnan(got);
    if (std::isinf(want)) return got == want;
    // Sums accumulate in double on both sides and differ only in order: a few ulps of the output type, or of
    // the double accumulator times the number of terms for double outputs (the tests' data are O(1)).
    const double tol = std::is_same_v<V, float> ? 1e-5 : 1e-10;
    return std::fabs(static_cast<double>(got) - static_cast<double>(want)) <=
           tol * (1.0 + std::fabs(static_cast<double>(want)));
  } else {
    return got == want;  // integers, bool, indices, max and min: exact
  }
}

// Reduces `e` over `mask` with the replay (every sms setting and full-path item form) and with cpu::reduce.
template <class Red, class E, int R>
void compare(const Red& red, const E& e, const mg::Array<bool, R>& mask) {
  using T = typename std::remove_cvref_t<E>::value_type;
  using Out = typename Red::template out_t<T>;
  const mg::Shape<R> in = e.shape();
  const auto plan = mg::lower_expr(e, in);
  mg::Strides<R> ost{};
  index_t c = 1, n = 1;
  for (int d = R - 1; d >= 0; --d) {
    ost[d] = c;
    c *= mask[d] ? 1 : in[d];
  }
  for (int d = 0; d < R; ++d) n *= mask[d] ? 1 : in[d];
  const std::size_t size = static_cast<std::size_t>(n);
  std::unique_ptr<Out[]> want(new Out[size + 1]), got(new Out[size + 1]);
  mg::cpu::reduce(red, plan, in, mask, want.get(), ost);
  for (int sms : {1, 132}) {
    std::vector<int> modes{cd::item_strided};
    if (plan.is_flat()) {
      modes.push_back(cd::item_flat);
      modes.push_back(cd::item_vector);
    }
    for (int mode : modes) {
      for (std::size_t i = 0; i < size; ++i) got[i] = Out{};
      replay(red, plan, in, mask, got.get(), ost, sms, mode);
      for (std::size_t i = 0; i < size; ++i) {
        INFO(Red::name, " shape ", mg::to_string(in), " sms ", sms, " mode ", mode, " output ", i);
        REQUIRE(close(got[i], want[i]));
      }
    }
  }
}

// Every reducer that applies to T, over `mask`.
template <class E, int R>
void compare_all(const E& e, const mg::Array<bool, R>& mask) {
  using T = typename std::remove_cvref_t<E>::value_type;
  compare(mg::ops::SumReducer{}, e, mask);
  compare(mg::ops::AnyReducer{}, e, mask);
  compare(mg::ops::AllReducer{}, e, mask);
  compare(mg::ops::ArgMaxReducer{}, e, mask);
  compare(mg::ops::ArgMinReducer{}, e, mask);
  compare(mg::ops::MaxReducer{}, e, mask);
  compare(mg::ops::MinReducer{}, e, mask);
  if constexpr (!std::is_same_v<T, bool>) {
    compare(mg::ops::MeanReducer{}, e, mask);
    compare(mg::ops::VarReducer{1}, e, mask);
    compare(mg::ops::StdReducer{0}, e, mask);
    compare(mg::ops::NormReducer{2.0}, e, mask);
    compare(mg::ops::NormReducer{1.0}, e, mask);
    compare(mg::ops::NormReducer{INFINITY}, e, mask);
    compare(mg::ops::NormReducer{3.0}, e, mask);
  }
  if constexpr (std::is_floating_point_v<T>) compare(mg::ops::LogSumExpReducer{}, e, mask);
}

template <int R>
std::vector<mg::Array<bool, R>> all_masks() {
  std::vector<mg::Array<bool, R>> v;
  for (int bits = 1; bits < (1 << R); ++bits) {
    mg::Array<bool, R> m{};
    for (int d = 0; d < R; ++d) m[d] = (bits >> d) & 1;
    v.push_back(m);
  }
  return v;
}

}  // namespace

TEST_CASE("cuda reduce replay: the kernels' accumulation and merge trees give the CPU's results") {
  mg::Generator gen(3);
  SUBCASE("float, flat and fused, every axis set") {
    mg::Tensor<float, 3> a = mg::randn<float>({5, 37, 40}, gen), b = mg::randn<float>({5, 37, 40}, gen);
    for (const auto& m : all_masks<3>()) {
      compare_all(a, m);
      compare(mg::ops::SumReducer{}, mg::exp(a) * b, m);
      compare(mg::ops::ArgMaxReducer{}, mg::exp(a) * b, m);
    }
  }
  SUBCASE("ties and NaNs: argmax/argmin keep the first, max/min propagate NaN") {
    mg::Tensor<float, 2> t = mg::cast<float>(mg::randint<std::int32_t>(0, 3, {70, 90}, gen));
    for (const auto& m : all_masks<2>()) compare_all(t, m);
    float* p = t.data();
    p[5 * 90 + 7] = NAN;
    p[40 * 90 + 88] = NAN;
    p[41 * 90 + 3] = NAN;
    for (const auto& m : all_masks<2>()) {
      compare(mg::ops::ArgMaxReducer{}, t, m);
      compare(mg::ops::ArgMinReducer{}, t, m);
      compare(mg::ops::MaxReducer{}, t, m);
      compare(mg::ops::MinReducer{}, t, m);
    }
  }
  SUBCASE("views read in memory order: transposes, permutes, broadcasts, slices") {
    mg::Tensor<double, 3> a = mg::randn<double>({6, 35, 33}, gen);
    mg::Tensor<double, 1> r = mg::randn<double>({6}, gen);
    for (const auto& m : all_masks<3>()) {
      compare_all(mg::permute(a, {2, 0, 1}), m);
      compare(mg::ops::SumReducer{}, mg::permute(a, {1, 2, 0}) * 2.0, m);
      compare(mg::ops::ArgMaxReducer{}, mg::transpose(a, 0, 2) - r, m);
      compare(mg::ops::VarReducer{0}, mg::slice(a, 1, 3, 30, 2), m);
    }
  }
  SUBCASE("long segments cut into parts (rows and columns), one-element segments, one element") {
    mg::Tensor<float, 2> wide = mg::randn<float>({3, 5000}, gen), tall = mg::randn<float>({5000, 3}, gen);
    for (const auto& m : all_masks<2>()) {
      compare(mg::ops::SumReducer{}, wide, m);
      compare(mg::ops::ArgMinReducer{}, wide, m);
      compare(mg::ops::VarReducer{0}, tall, m);
      compare(mg::ops::ArgMaxReducer{}, tall, m);
      compare(mg::ops::LogSumExpReducer{}, tall * 10.0f, m);
    }
    mg::Tensor<float, 2> col = mg::randn<float>({300, 1}, gen);
    compare_all(col, mg::Array<bool, 2>{{false, true}});
    mg::Tensor<float, 1> one = mg::randn<float>({1}, gen);
    compare_all(one, mg::Array<bool, 1>{{true}});
  }
  SUBCASE("integers and bool") {
    mg::Tensor<std::int32_t, 2> k = mg::randint<std::int32_t>(-1000, 1000, {40, 70}, gen);
    mg::Tensor<std::int64_t, 2> q = mg::randint<std::int64_t>(-5, 5, {40, 70}, gen);
    mg::Tensor<bool, 2> z = mg::randn<float>({40, 70}, gen) > 0.8f;
    for (const auto& m : all_masks<2>()) {
      compare_all(k, m);
      compare_all(q, m);
      compare_all(z, m);
      compare(mg::ops::ProdReducer{}, q, m);  // wraps around identically in any order
      compare(mg::ops::ProdReducer{}, mg::cast<double>(q) * 0.01 + 1.0, m);
    }
  }
  SUBCASE("empty reduced axes finish init: sum 0, mean NaN, all true") {
    mg::Tensor<float, 2> e({4, 0});
    const mg::Array<bool, 2> m{{false, true}};
    compare(mg::ops::SumReducer{}, e, m);
    compare(mg::ops::MeanReducer{}, e, m);
    compare(mg::ops::AllReducer{}, e, m);
    compare(mg::ops::AnyReducer{}, e, m);
    compare(mg::ops::VarReducer{0}, e, m);
  }
}
