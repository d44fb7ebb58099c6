// Multi-tensor updates on the CPU: the packing of tensors into launches (every element of every tensor
// covered exactly once, tables within the kernel-parameter budget, for empty tensors, one huge tensor,
// thousands of tiny ones and the capacity boundaries), the per-chunk body the CUDA kernel runs replayed by a
// CPU loop over blocks and threads with the real optimiser rules (against the CPU optimiser step), and the
// device errors of the optimiser and the state entries in a file not compiled by nvcc.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <map>
#include <metagrad/backend/multi_tensor_plan.hpp>
#include <metagrad/nn.hpp>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

using namespace metagrad;
using metagrad::detail::for_each_multi_tensor_launch;
using metagrad::detail::multi_tensor_chunk;
using metagrad::detail::multi_tensor_chunk_size;
using metagrad::detail::MultiTensorEntry;
using metagrad::detail::MultiTensorTable;

namespace {

// Fake, distinct, never dereferenced buffer addresses: tensor i's buffer j.
template <class T>
T* fake_ptr(std::size_t i, int j) {
  return reinterpret_cast<T*>(std::uintptr_t{0x10000} + (i * 8 + static_cast<std::size_t>(j)) * 0x1000);
}

// Packs tensors of the given sizes and checks every launch's table against the list: capacities respected,
// every slot one of the list's tensors with all its buffers and its size, every chunk of every non-empty
// tensor run exactly once (chunks partition a tensor's elements). Returns the number of launches.
template <int NPtr>
int check_packing(const std::vector<index_t>& sizes, index_t chunk, int max_tensors, int max_chunks) {
  using Table = MultiTensorTable<float, NPtr>;
  std::vector<MultiTensorEntry<float, NPtr>> list(sizes.size());
  std::map<const float*, std::size_t> index_of;
  std::vector<std::vector<std::uint8_t>> hits(sizes.size());
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    for (int j = 0; j < NPtr; ++j) list[i].ptr[j] = fake_ptr<float>(i, j);
    list[i].numel = sizes[i];
    index_of[list[i].ptr[0]] = i;
    hits[i].assign(static_cast<std::size_t>((sizes[i] + chunk - 1) / chunk), 0);
  }
  int launches = 0;
  bool ok = true;
  for_each_multi_tensor_launch(
      list, chunk,
      [&](const Table& t) {
        ++launches;
        ok = ok && t.chunk_size == chunk && t.num_chunks >= 1 && t.num_chunks <= max_chunks && t.num_tensors >= 1 &&
             t.num_tensors <= max_tensors;
        for (int c = 0; c < t.num_chunks && ok; ++c) {
          const int slot = t.chunk_tensor[c];
          ok = slot >= 0 && slot < t.num_tensors;
          if (!ok) break;
          const auto it = index_of.find(t.ptr[0][slot]);
          ok = it != index_of.end();
          if (!ok) break;
          const std::size_t i = it->second;
          for (int j = 0; j < NPtr; ++j) ok = ok && t.ptr[j][slot] == list[i].ptr[j];
          ok = ok && t.numel[slot] == sizes[i] && t.chunk_index[c] >= 0 &&
               static_cast<std::size_t>(t.chunk_index[c]) < hits[i].size();
          if (ok) ++hits[i][static_cast<std::size_t>(t.chunk_index[c])];
        }
      },
      max_tensors, max_chunks);
  CHECK(ok);
  for (std::size_t i = 0; i < sizes.size(); ++i)
    for (std::size_t c = 0; c < hits[i].size(); ++c) {
      if (hits[i][c] == 1) continue;
      CAPTURE(i);
      CAPTURE(c);
      CHECK(hits[i][c] == 1);
    }
  return launches;
}

// Counts visits: every element of the parameter and of each state must be visited exactly once.
struct CountVisits {
  static constexpr int max_state = 3;
  void operator()(float& p, float g, float* s) const {
    p += g;
    for (int j = 0; j < max_state; ++j) s[j] += 1.0f;
  }
};

// Runs a table the way the kernel does: block c of a launch is chunk c, `lanes` threads stride over it.
template <int NS, class T, int NPtr, class Op>
void replay_launch(const MultiTensorTable<T, NPtr>& t, const Op& op, index_t lanes) {
  for (int c = 0; c < t.num_chunks; ++c)
    for (index_t lane = 0; lane < lanes; ++lane) multi_tensor_chunk<NS>(t, c, lane, lanes, op);
}

template <class P, std::size_t... I>
auto tuple_of(const std::vector<P>& v, std::index_sequence<I...>) {
  return std::make_tuple(v[I]...);
}
template <class Rule, class... Ps>
auto make_optimizer(std::tuple<Ps...> params, const typename Rule::options& o) {
  return nn::Optimizer<Rule, Ps...>(std::move(params), o);
}

struct rp {};

// Steps the CPU optimiser and, on copies of the same data, replays the multi-tensor kernel body with the
// same rule over small chunks and tight launch limits (so tensors span chunks and launches, and vector,
// tail and unaligned paths all run); parameters and every state buffer must agree after each step. The
// two paths evaluate the same expressions in the same order, so they agree exactly unless the compiler
// may contract a * b + c into an FMA in one place and not the other (-mfma, -march=native).
template <class Rule, class T>
void check_replay(const typename Rule::options& o, double scale) {
  constexpr std::size_t N = 9;
  const std::array<index_t, N> sizes = {0, 1, 3, 4, 17, 64, 65, 130, 301};
  std::mt19937 rng(1234);
  std::normal_distribution<double> normal(0.0, 1.0);
  using P = Param<rp, T, 1>;
  std::vector<P> params;
  std::vector<std::vector<T>> ref_p(N);
  const int ns = Rule::state_count(o);
  std::vector<std::vector<std::vector<T>>> ref_s(N);
  std::vector<index_t> offset(N);
  for (std::size_t i = 0; i < N; ++i) {
    Tensor<T, 1> v(Shape<1>{{sizes[i]}});
    offset[i] = i % 3 == 2 ? 1 : 0;  // every third tensor's replay buffers start off the 16-byte grid
    ref_p[i].assign(static_cast<std::size_t>(sizes[i] + 1), T(0));
    for (index_t e = 0; e < sizes[i]; ++e) {
      v.data()[e] = static_cast<T>(normal(rng));
      ref_p[i][static_cast<std::size_t>(e + offset[i])] = v.data()[e];
    }
    ref_s[i].assign(static_cast<std::size_t>(ns), std::vector<T>(static_cast<std::size_t>(sizes[i] + 1), T(0)));
    params.emplace_back("p" + std::to_string(i), v);
  }
  auto opt = make_optimizer<Rule>(tuple_of(params, std::make_index_sequence<N>{}), o);
  std::vector<nn::StateEntry> state;
  opt.collect_state(state);
  REQUIRE(state.size() == N * static_cast<std::size_t>(ns) + 1);

  for (int step = 1; step <= 5; ++step) {
    std::vector<Tensor<T, 1>> grads;
    std::vector<std::vector<T>> ref_g(N);
    for (std::size_t i = 0; i < N; ++i) {
      Tensor<T, 1> g(Shape<1>{{sizes[i]}});
      ref_g[i].assign(static_cast<std::size_t>(sizes[i] + 1), T(0));
      for (index_t e = 0; e < sizes[i]; ++e) {
        g.data()[e] = static_cast<T>(normal(rng));
        ref_g[i][static_cast<std::size_t>(e + offset[i])] = g.data()[e];
      }
      grads.push_back(g);
    }
    opt.step(tuple_of(grads, std::make_index_sequence<N>{}), scale);

    const nn::detail::RuleUpdate<Rule, T> op{o, Rule::scalars(o, o.lr, step), static_cast<T>(scale)};
    auto run = [&]<int NS>(std::integral_constant<int, NS>) {
      if constexpr (NS <= Rule::max_state) {
        std::vector<MultiTensorEntry<T, 2 + NS>> list(N);
        for (std::size_t i = 0; i < N; ++i) {
          list[i].ptr[0] = ref_p[i].data() + offset[i];
          list[i].ptr[1] = ref_g[i].data() + offset[i];
          for (int j = 0; j < NS; ++j) list[i].ptr[2 + j] = ref_s[i][static_cast<std::size_t>(j)].data() + offset[i];
          list[i].numel = sizes[i];
        }
        for_each_multi_tensor_launch(
            list, 16, [&](const MultiTensorTable<T, 2 + NS>& t) { replay_launch<NS>(t, op, 3); }, 3, 4);
      }
    };
    if (ns == 0) run(std::integral_constant<int, 0>{});
    if (ns == 1) run(std::integral_constant<int, 1>{});
    if (ns == 2) run(std::integral_constant<int, 2>{});
    if (ns == 3) run(std::integral_constant<int, 3>{});

    // The two loops are compiled separately (at -O3 -march=native in CI), so the compiler may contract a
    // multiply-add into an FMA in one and not the other: a few ulps apart, and more where an update cancels
    // (p - lr * g with p close to lr * g). Each element is compared to within 1e-6 (float) / 1e-12 (double) of
    // its tensor's largest value, far below what a wrong rule gives (about lr * |g|, 1e-3 and up here).
    int bad = 0;
    auto max_abs = [](const T* v, index_t n) {
      double m = 0;
      for (index_t e = 0; e < n; ++e) m = std::max(m, std::abs(double(v[e])));
      return m;
    };
    auto same = [&](T a, T b, double scale) {
      return std::abs(double(a) - double(b)) <= (sizeof(T) == 4 ? 1e-6 : 1e-12) * (scale + 1e-30);
    };
    for (std::size_t i = 0; i < N; ++i) {
      const T* pd = params[i].value().data();
      const double ps = max_abs(ref_p[i].data() + offset[i], sizes[i]);
      for (index_t e = 0; e < sizes[i]; ++e) bad += !same(pd[e], ref_p[i][static_cast<std::size_t>(e + offset[i])], ps);
      for (int j = 0; j < ns; ++j) {
        const T* sd = static_cast<const T*>(state[i * static_cast<std::size_t>(ns) + static_cast<std::size_t>(j)].data);
        const T* rs = ref_s[i][static_cast<std::size_t>(j)].data() + offset[i];
        const double ss = max_abs(rs, sizes[i]);
        for (index_t e = 0; e < sizes[i]; ++e) bad += !same(sd[e], rs[e], ss);
      }
    }
    CAPTURE(step);
    CHECK(bad == 0);
  }
}

}  // namespace

TEST_CASE("multi-tensor plan: launch tables fit the kernel-parameter budget") {
  // 32764 bytes of CUDA kernel parameters, less what the update functor takes.
  CHECK(sizeof(MultiTensorTable<float, 2>) <= metagrad::detail::multi_tensor_table_budget);
  CHECK(sizeof(MultiTensorTable<float, 5>) <= metagrad::detail::multi_tensor_table_budget);
  CHECK(sizeof(MultiTensorTable<double, 5>) <= metagrad::detail::multi_tensor_table_budget);
  CHECK(sizeof(MultiTensorTable<double, 5>) + sizeof(nn::detail::RuleUpdate<nn::detail::AdamRule<false>, double>) <=
        32000);
  CHECK(MultiTensorTable<float, 5>::max_tensors >= 256);
  CHECK(MultiTensorTable<float, 5>::max_chunks >= 1024);
}

TEST_CASE("multi-tensor plan: every element of every tensor is covered exactly once") {
  constexpr index_t C = multi_tensor_chunk_size;
  constexpr int MT = MultiTensorTable<float, 5>::max_tensors;
  constexpr int MC = MultiTensorTable<float, 5>::max_chunks;

  SUBCASE("nothing to do: no launch") {
    CHECK(check_packing<5>({}, C, MT, MC) == 0);
    CHECK(check_packing<5>({0, 0, 0}, C, MT, MC) == 0);
  }
  SUBCASE("small tensors and chunk boundaries share one launch") {
    CHECK(check_packing<5>({1, 0, C - 1, C, C + 1, 3 * C, 7}, C, MT, MC) == 1);
  }
  SUBCASE("one huge tensor spans launches by chunks") {
    const index_t n = index_t(3) << 30;  // 3 Gi elements: 49152 chunks
    CHECK(check_packing<5>({n}, C, MT, MC) == static_cast<int>((n / C + MC - 1) / MC));
    CHECK(check_packing<3>({5, n, 9}, C, MultiTensorTable<float, 3>::max_tensors, MC) >= 24);
  }
  SUBCASE("thousands of tiny tensors span launches by tensors") {
    std::vector<index_t> sizes;
    for (int i = 0; i < 5000; ++i) sizes.push_back(i % 7);  // one in seven is empty
    const int nonempty = 5000 - (5000 + 6) / 7;
    CHECK(check_packing<5>(sizes, C, MT, MC) == (nonempty + MT - 1) / MT);
    CHECK(check_packing<2>(sizes, C, MultiTensorTable<float, 2>::max_tensors, MC) ==
          (nonempty + MultiTensorTable<float, 2>::max_tensors - 1) / MultiTensorTable<float, 2>::max_tensors);
  }
  SUBCASE("capacity boundaries") {
    CHECK(check_packing<5>(std::vector<index_t>(MT, 1), C, MT, MC) == 1);
    CHECK(check_packing<5>(std::vector<index_t>(MT + 1, 1), C, MT, MC) == 2);
    CHECK(check_packing<5>({MC * C}, C, MT, MC) == 1);
    CHECK(check_packing<5>({MC * C + 1}, C, MT, MC) == 2);
    CHECK(check_packing<5>({(MC - 1) * C, C}, C, MT, MC) == 1);
    CHECK(check_packing<5>({(MC - 1) * C, C + 1}, C, MT, MC) == 2);
  }
  SUBCASE("random sizes under tight limits") {
    std::mt19937 rng(7);
    for (int trial = 0; trial < 300; ++trial) {
      std::vector<index_t> sizes(rng() % 12);
      for (auto& s : sizes) s = rng() % 4 == 0 ? 0 : static_cast<index_t>(rng() % 40);
      const index_t chunk = 1 + rng() % 9;
      const int mt = 1 + static_cast<int>(rng() % 4), mc = 1 + static_cast<int>(rng() % 6);
      CAPTURE(trial);
      check_packing<3>(sizes, chunk, mt, mc);
    }
  }
  SUBCASE("limits out of range are refused") {
    std::vector<MultiTensorEntry<float, 5>> one(1);
    for (int j = 0; j < 5; ++j) one[0].ptr[j] = fake_ptr<float>(0, j);
    one[0].numel = 1;
    int launches = 0;
    auto count = [&](const MultiTensorTable<float, 5>&) { ++launches; };
    CHECK_THROWS_AS(for_each_multi_tensor_launch(one, 0, count), error);
    CHECK_THROWS_AS(for_each_multi_tensor_launch(one, C, count, MT + 1, MC), error);
    CHECK_THROWS_AS(for_each_multi_tensor_launch(one, C, count, MT, 0), error);
    one[0].numel = index_t(1) << 40;
    CHECK_THROWS_AS(for_each_multi_tensor_launch(one, 1, count), error);  // over 2^31 - 1 chunks
    CHECK(launches == 0);
  }
}

TEST_CASE("multi-tensor plan: the kernel's chunk body visits every element once (vector, tail, unaligned)") {
  const std::vector<index_t> sizes = {0, 1, 2, 3, 4, 5, 8, 15, 16, 17, 31, 33, 100, 257};
  for (const index_t off : {index_t{0}, index_t{1}, index_t{2}})  // 16-byte aligned, and two misalignments
    for (const index_t chunk : {index_t{4}, index_t{6}, index_t{16}, index_t{1000}})
      for (const index_t lanes : {index_t{1}, index_t{3}, index_t{32}}) {
        std::vector<std::vector<float>> buf(sizes.size() * 5);
        std::vector<MultiTensorEntry<float, 5>> list(sizes.size());
        for (std::size_t i = 0; i < sizes.size(); ++i) {
          for (int j = 0; j < 5; ++j) {
            auto& b = buf[i * 5 + static_cast<std::size_t>(j)];
            b.assign(static_cast<std::size_t>(sizes[i] + 4), j == 1 ? 1.0f : 0.0f);
            list[i].ptr[j] = b.data() + off;
          }
          list[i].numel = sizes[i];
        }
        for_each_multi_tensor_launch(
            list, chunk, [&](const MultiTensorTable<float, 5>& t) { replay_launch<3>(t, CountVisits{}, lanes); }, 5, 7);
        int bad = 0;
        for (std::size_t i = 0; i < sizes.size(); ++i)
          for (int j = 0; j < 5; ++j) {
            if (j == 1) continue;
            const auto& b = buf[i * 5 + static_cast<std::size_t>(j)];
            for (index_t e = 0; e < sizes[i] + 4; ++e) {
              const bool inside = e >= off && e < off + sizes[i];
              bad += b[static_cast<std::size_t>(e)] != (inside ? 1.0f : 0.0f);
            }
          }
        CAPTURE(off);
        CAPTURE(chunk);
        CAPTURE(lanes);
        CHECK(bad == 0);
      }
}

TEST_CASE_TEMPLATE("multi-tensor plan: a CPU replay of the kernel matches the CPU optimiser step", T, float, double) {
  using namespace nn::detail;
  SUBCASE("SGD") {
    check_replay<SgdRule, T>({.lr = 0.1}, 1.0);
    check_replay<SgdRule, T>({.lr = 0.05, .momentum = 0.9}, 0.5);
    check_replay<SgdRule, T>({.lr = 0.05, .momentum = 0.9, .dampening = 0.3, .weight_decay = 0.01}, 1.0);
    check_replay<SgdRule, T>({.lr = 0.05, .momentum = 0.8, .weight_decay = 0.1, .nesterov = true}, 0.25);
  }
  SUBCASE("Adam, AdamW, AMSGrad") {
    check_replay<AdamRule<false>, T>({.lr = 1e-2}, 1.0);
    check_replay<AdamRule<false>, T>({.lr = 1e-2, .weight_decay = 0.1}, 0.5);
    check_replay<AdamRule<true>, T>({.lr = 1e-2, .weight_decay = 0.01, .amsgrad = true}, 1.0);
  }
  SUBCASE("RMSprop") {
    check_replay<RmspropRule, T>({.lr = 1e-2}, 1.0);
    check_replay<RmspropRule, T>({.lr = 1e-2, .momentum = 0.9}, 0.5);
    check_replay<RmspropRule, T>({.lr = 1e-2, .weight_decay = 0.05, .momentum = 0.5, .centered = true}, 1.0);
    check_replay<RmspropRule, T>({.lr = 1e-2, .centered = true}, 2.0);
  }
}

TEST_CASE("multi-tensor plan: CUDA parameters in a file not compiled by nvcc") {
  // Device tensors over a fake address: nothing here may read them.
  auto* fake = reinterpret_cast<float*>(std::uintptr_t{0x100000});
  const auto dev = Tensor<float, 1>::from_blob(fake, Shape<1>{{8}}, Device::cuda(0));
  Param<rp, float, 1> w("w", dev);
  nn::SGD opt(std::make_tuple(w), {.lr = 0.1});  // no momentum: no state to allocate on the device
  SUBCASE("stepping them says to compile with nvcc, and changes nothing") {
    try {
      opt.step(std::make_tuple(dev));
      FAIL("no exception");
    } catch (const device_error& e) {
      const std::string m = e.what();
      CHECK(m.find("optimizer step on cuda:0") != std::string::npos);
      CHECK(m.find("nvcc") != std::string::npos);
    }
    CHECK(opt.steps() == 0);
  }
  SUBCASE("a gradient on another device than its parameter is refused by name") {
    try {
      opt.step(std::make_tuple(Tensor<float, 1>(Shape<1>{{8}})));
      FAIL("no exception");
    } catch (const device_error& e) {
      const std::string m = e.what();
      CHECK(m.find("'w' is on cpu, the parameter on cuda:0") != std::string::npos);
    }
  }
  SUBCASE("state entries record the device") {
    const nn::StateEntry e = nn::state_entry("w", dev, true);
    CHECK(e.device == Device::cuda(0));
    CHECK(e.data == static_cast<void*>(fake));
    CHECK(nn::state_entry("c", Tensor<float, 1>(Shape<1>{{2}}), false).device == Device::cpu());
  }
  SUBCASE("moving a model there needs the CUDA backend") {
    auto model = nn::sequential<struct mt_model>(nn::linear(3, 2), nn::relu(), nn::batch_norm1d(2));
    CHECK_THROWS_AS(nn::to_device(model, Device::cuda(0)), device_error);
    nn::to_device(model, Device::cpu());  // already there: nothing to do
    CHECK(model.get<0>().weight().value().device() == Device::cpu());
  }
}
