// CUDA tests of the optimisers and model state on the GPU: SGD (momentum, dampening, Nesterov, weight
// decay), Adam, AdamW with AMSGrad and RMSprop (centred, momentum) stepping GPU parameters of several shapes
// (one spanning several 64Ki-element chunks, one with a non-contiguous gradient) through the multi-tensor
// kernels, against the CPU optimiser on the same data over 5 steps, state included; frozen parameters;
// grad_scale; state dicts and checkpoints saved from the GPU and loaded on the CPU and back; moving a model
// with an optimiser built before the move. They compile and link wherever nvcc is and report "skipped: no
// CUDA device" when no GPU is present.
//
// Tolerance: the kernels run the same METAGRAD_HD rule as the CPU loop, but nvcc contracts a * b + c into
// fused multiply-adds (-fmad=true, its default) where the host compiler does not, so each operation may
// round differently by an ulp, and five steps of the recurrences carry that forward. Cancellation (centred
// RMSprop's square_avg - grad_avg^2, Nesterov's g + momentum * buf, p - update for p near 0) can make an
// element's own relative error large while its absolute error stays at the ulps of the tensor's largest
// values, so each element is compared to the tensor's largest magnitude: |gpu - cpu| <= rtol * max |cpu|
// with rtol 1e-6 in float32 (about 8 ulp) and 1e-12 in float64. A wrong element, state or scale is off by a
// whole update (about lr relative), far above that.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <metagrad/metagrad.hpp>
#include <random>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "cuda_test_support.hpp"

using namespace metagrad;

namespace {

using cuda_test::have_device;

const Device gpu = Device::cuda(0);

template <class T>
constexpr double rtol() {
  return std::is_same_v<T, float> ? 1e-6 : 1e-12;
}

std::mt19937& rng() {
  static std::mt19937 r(2024);
  return r;
}

template <class T, int R>
Tensor<T, R> random_tensor(const Shape<R>& s) {
  std::normal_distribution<double> normal(0.0, 1.0);
  Tensor<T, R> t(s);
  for (index_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<T>(normal(rng()));
  return t;
}

// The elements of a state entry, on the host (device entries copied).
template <class T>
std::vector<T> entry_values(const nn::StateEntry& e) {
  std::vector<T> v(static_cast<std::size_t>(e.numel()));
  metagrad::detail::copy_bytes(v.data(), Device::cpu(), e.data, e.device, v.size() * sizeof(T));
  return v;
}

// Counts the elements of got that differ from want by more than rtol times want's largest magnitude.
template <class T>
int count_far(const std::vector<T>& got, const std::vector<T>& want, double tol) {
  if (got.size() != want.size()) return -1;
  double scale = 0;
  for (T w : want) scale = std::max(scale, std::abs(static_cast<double>(w)));
  int bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i)
    bad += !(std::abs(static_cast<double>(got[i]) - static_cast<double>(want[i])) <= tol * scale);
  return bad;
}

// Every entry of two state lists (same names, same order) agrees within the tolerance; device entries
// must be on the GPU and host entries on the CPU.
template <class T>
void check_states(const std::vector<nn::StateEntry>& gpu_state, const std::vector<nn::StateEntry>& cpu_state,
                  double tol) {
  REQUIRE(gpu_state.size() == cpu_state.size());
  for (std::size_t i = 0; i < gpu_state.size(); ++i) {
    const auto& g = gpu_state[i];
    const auto& c = cpu_state[i];
    CAPTURE(g.name);
    REQUIRE(g.name == c.name);
    CHECK(c.device == Device::cpu());
    if (g.dtype == DType::i64) {
      CHECK(entry_values<std::int64_t>(g) == entry_values<std::int64_t>(c));
      continue;
    }
    CHECK(g.device == gpu);
    CHECK(count_far(entry_values<T>(g), entry_values<T>(c), tol) == 0);
  }
}

struct pa {};
struct pb {};
struct pc {};
struct pd {};

// Four parameters: a matrix (its gradient non-contiguous on the GPU), a vector, a rank-4 kernel and a
// vector of 3 chunks and a bit; each as a CPU and a GPU copy with the same values.
template <class T>
struct Params {
  Param<pa, T, 2> a{"a"};
  Param<pb, T, 1> b{"b"};
  Param<pc, T, 4> c{"c"};
  Param<pd, T, 1> d{"d"};
  auto tuple() const { return std::make_tuple(a, b, c, d); }
};

template <class T>
std::pair<Params<T>, Params<T>> twin_params() {
  Params<T> cpu, dev;
  cpu.a.set(random_tensor<T>(Shape<2>{{33, 17}}));
  cpu.b.set(random_tensor<T>(Shape<1>{{5}}));
  cpu.c.set(random_tensor<T>(Shape<4>{{2, 3, 4, 5}}));
  cpu.d.set(random_tensor<T>(Shape<1>{{3 * 65536 + 7}}));
  dev.a.set(cpu.a.value().to(gpu));
  dev.b.set(cpu.b.value().to(gpu));
  dev.c.set(cpu.c.value().to(gpu));
  dev.d.set(cpu.d.value().to(gpu));
  return {cpu, dev};
}

// One step's gradients: host tensors, and the same values on the GPU, the matrix's as a transposed view
// (strides [1, 33]) of a [17, 33] device tensor so that the optimiser has to make it contiguous.
template <class T>
struct Grads {
  Tensor<T, 2> a, a_dev;
  Tensor<T, 1> b, d;
  Tensor<T, 4> c;
  static Grads make(const Params<T>& p) {
    Grads g;
    g.a = random_tensor<T>(p.a.shape());
    g.b = random_tensor<T>(p.b.shape());
    g.c = random_tensor<T>(p.c.shape());
    g.d = random_tensor<T>(p.d.shape());
    Tensor<T, 2> at(Shape<2>{{17, 33}});
    for (index_t i = 0; i < 33; ++i)
      for (index_t j = 0; j < 17; ++j) at.data()[j * 33 + i] = g.a.data()[i * 17 + j];
    const auto at_dev = at.to(gpu);
    g.a_dev = Tensor<T, 2>::from_storage(at_dev.storage(), 0, Shape<2>{{33, 17}}, Strides<2>{{1, 33}});
    return g;
  }
  auto host() const { return std::make_tuple(a, b, c, d); }
  auto device() const { return std::make_tuple(a_dev, b.to(gpu), c.to(gpu), d.to(gpu)); }
};

template <class Opt, class T>
std::vector<nn::StateEntry> params_and_state(const Params<T>& p, Opt& opt) {
  std::vector<nn::StateEntry> out;
  out.push_back(nn::state_entry("a", p.a.value(), true));
  out.push_back(nn::state_entry("b", p.b.value(), true));
  out.push_back(nn::state_entry("c", p.c.value(), true));
  out.push_back(nn::state_entry("d", p.d.value(), true));
  opt.collect_state(out);
  return out;
}

// Five steps of the same optimiser on the CPU and on the GPU, compared after each step.
template <class T, class Make>
void check_against_cpu(Make make, double scale, bool freeze_b = false) {
  auto [cpu, dev] = twin_params<T>();
  const auto a0 = cpu.a.value().to_vector();
  const auto b0 = cpu.b.value().to_vector();
  const auto d0 = cpu.d.value().to_vector();
  auto opt_cpu = make(cpu.tuple());
  auto opt_dev = make(dev.tuple());
  if (freeze_b) {
    CHECK(opt_cpu.freeze("b") == 1);
    CHECK(opt_dev.freeze("b") == 1);
  }
  for (int step = 1; step <= 5; ++step) {
    CAPTURE(step);
    const auto g = Grads<T>::make(cpu);
    opt_cpu.step(g.host(), scale);
    opt_dev.step(g.device(), scale);
    check_states<T>(params_and_state(dev, opt_dev), params_and_state(cpu, opt_cpu), rtol<T>());
  }
  // The parameters moved, so the comparison above was not between two untouched copies.
  CHECK(count_far(dev.a.value().to_vector(), a0, 1e-4) > 100);
  CHECK(count_far(dev.d.value().to_vector(), d0, 1e-4) > 100000);
  if (freeze_b) {
    CHECK(dev.b.value().to_vector() == b0);
    CHECK(cpu.b.value().to_vector() == b0);
  }
}

std::filesystem::path tmp_path(const std::string& name) {
  return std::filesystem::temp_directory_path() / ("metagrad_optim_cuda_" + std::to_string(::getpid()) + "_" + name);
}

struct net {};
template <class T>
auto make_model() {
  return nn::sequential<net>(nn::linear<T>(6, 5), nn::relu(), nn::batch_norm1d<T>(5), nn::linear<T>(5, 3));
}
using Model = decltype(make_model<float>());

// Random gradients shaped like a model's params, on `device`.
template <class Tuple>
auto random_grads(const Tuple& params, Device device) {
  return std::apply(
      [&](const auto&... p) {
        return std::make_tuple(
            random_tensor<typename std::remove_cvref_t<decltype(p)>::value_type>(p.shape()).to(device)...);
      },
      params);
}
template <class Tuple>
auto grads_to(const Tuple& grads, Device device) {
  return std::apply([&](const auto&... g) { return std::make_tuple(g.to(device)...); }, grads);
}

// The model's state (parameters and buffers), on the host.
std::vector<std::vector<float>> host_state(const Model& m) {
  std::vector<std::vector<float>> out;
  for (const auto& e : nn::state_of(m)) {
    if (e.dtype == DType::i64) {
      const auto v = entry_values<std::int64_t>(e);
      out.emplace_back(v.begin(), v.end());
    } else {
      out.push_back(entry_values<float>(e));
    }
  }
  return out;
}

void copy_params(const Model& dst, const Model& src) {
  const auto d = dst.params();
  const auto s = src.params();
  [&]<std::size_t... I>(std::index_sequence<I...>) { (std::get<I>(d).set(std::get<I>(s).value().clone()), ...); }
  (std::make_index_sequence<std::tuple_size_v<decltype(d)>>{});
}

}  // namespace

TEST_CASE_TEMPLATE("cuda optim: SGD on GPU parameters matches the CPU optimiser", T, float, double) {
  if (!have_device()) return;
  for (const nn::SGDOptions o : {nn::SGDOptions{.lr = 0.1}, nn::SGDOptions{.lr = 0.05, .momentum = 0.9},
                                 nn::SGDOptions{.lr = 0.05, .momentum = 0.9, .dampening = 0.3, .weight_decay = 0.01},
                                 nn::SGDOptions{.lr = 0.05, .momentum = 0.8, .weight_decay = 0.1, .nesterov = true}}) {
    CAPTURE(o.momentum);
    CAPTURE(o.nesterov);
    check_against_cpu<T>([&](auto p) { return nn::SGD(p, o); }, 1.0);
    check_against_cpu<T>([&](auto p) { return nn::SGD(p, o); }, 0.25);
  }
}

TEST_CASE_TEMPLATE("cuda optim: Adam, AdamW (AMSGrad) on GPU parameters match the CPU optimiser", T, float, double) {
  if (!have_device()) return;
  check_against_cpu<T>([](auto p) { return nn::Adam(p, {.lr = 1e-2}); }, 1.0);
  check_against_cpu<T>([](auto p) { return nn::Adam(p, {.lr = 1e-2, .weight_decay = 0.1}); }, 0.5);
  check_against_cpu<T>([](auto p) { return nn::AdamW(p, {.lr = 1e-2, .weight_decay = 0.01, .amsgrad = true}); }, 1.0);
  check_against_cpu<T>([](auto p) { return nn::AdamW(p, {.lr = 1e-2, .amsgrad = false}); }, 2.0);
}

TEST_CASE_TEMPLATE("cuda optim: RMSprop (centred, momentum) on GPU parameters matches the CPU optimiser", T, float,
                   double) {
  if (!have_device()) return;
  check_against_cpu<T>([](auto p) { return nn::RMSprop(p, {.lr = 1e-2}); }, 1.0);
  check_against_cpu<T>([](auto p) { return nn::RMSprop(p, {.lr = 1e-2, .momentum = 0.9}); }, 0.5);
  check_against_cpu<T>(
      [](auto p) { return nn::RMSprop(p, {.lr = 1e-2, .weight_decay = 0.05, .momentum = 0.5, .centered = true}); },
      1.0);
  check_against_cpu<T>([](auto p) { return nn::RMSprop(p, {.lr = 1e-2, .centered = true}); }, 1.0);
}

TEST_CASE("cuda optim: frozen parameters are left untouched, the others still match") {
  if (!have_device()) return;
  check_against_cpu<float>([](auto p) { return nn::Adam(p, {.lr = 1e-2}); }, 1.0, true);
  check_against_cpu<double>([](auto p) { return nn::SGD(p, {.lr = 0.1, .momentum = 0.9}); }, 0.5, true);
}

TEST_CASE("cuda optim: a gradient on another device is refused before anything changes") {
  if (!have_device()) return;
  auto [cpu, dev] = twin_params<float>();
  nn::SGD opt(dev.tuple(), {.lr = 0.1, .momentum = 0.9});
  const auto g = Grads<float>::make(cpu);
  const auto a0 = dev.a.value().to_vector();
  CHECK_THROWS_AS(opt.step(std::make_tuple(g.a_dev, g.b.to(gpu), g.c, g.d.to(gpu))), device_error);
  CHECK(opt.steps() == 0);
  CHECK(dev.a.value().to_vector() == a0);
}

TEST_CASE("cuda optim: state dicts and checkpoints saved from the GPU load on the CPU and back") {
  if (!have_device()) return;
  auto a = make_model<float>();  // CPU
  auto g = make_model<float>();  // different initial values, moved to the GPU
  g.to(gpu);
  CHECK(g.get<0>().weight().value().device() == gpu);
  CHECK(g.get<2>().running_mean().device() == gpu);
  CHECK(host_state(g) != host_state(a));

  const auto sd = tmp_path("state.safetensors");
  nn::save_state_dict(a, sd);
  const auto r = nn::load_state_dict(g, sd);  // CPU file into the GPU model
  CHECK(r.complete());
  CHECK(host_state(g) == host_state(a));
  CHECK(g.get<0>().weight().value().device() == gpu);

  // Train the GPU model a little, save it from the GPU, load it into a fresh CPU model.
  nn::Adam opt(g.params(), {.lr = 1e-2});
  for (int s = 0; s < 2; ++s) opt.step(random_grads(g.params(), gpu));
  nn::save_state_dict(g, sd);
  auto c = make_model<float>();
  CHECK(nn::load_state_dict(c, sd).complete());
  CHECK(host_state(c) == host_state(g));
  CHECK(host_state(c) != host_state(a));

  // Non-strict: a file without the last layer loads the rest into a GPU model; strict refuses it whole.
  {
    auto entries = nn::state_entries(nn::state_of(c));
    REQUIRE(entries.size() == 9);
    REQUIRE(entries[7].first == "3.weight");
    entries.erase(entries.begin() + 7, entries.end());
    const auto part = tmp_path("partial.safetensors");
    write_safetensors(part, entries);
    auto h = make_model<float>();
    h.to(gpu);
    const auto before = host_state(h);
    CHECK_THROWS_AS(nn::load_state_dict(h, part), io_error);
    CHECK(host_state(h) == before);
    const auto rep = nn::load_state_dict(h, part, {.strict = false, .prefix = ""});
    CHECK(rep.loaded.size() == 7);
    CHECK(rep.missing == std::vector<std::string>{"3.weight", "3.bias"});
    const auto now = host_state(h), want = host_state(c);
    for (std::size_t i = 0; i < 7; ++i) CHECK(now[i] == want[i]);
    CHECK(now[7] == before[7]);
    CHECK(now[8] == before[8]);
    std::filesystem::remove(part);
  }

  // A checkpoint of the GPU model and its Adam state, restored on the CPU, then on the GPU again.
  const auto ck = tmp_path("ckpt.safetensors");
  nn::save_checkpoint(ck, g, opt, {{"epoch", "2"}});
  auto cm = make_model<float>();
  nn::Adam copt(cm.params(), {.lr = 1e-2});
  CHECK(nn::load_checkpoint(ck, cm, copt).at("epoch") == "2");
  CHECK(copt.steps() == 2);
  CHECK(host_state(cm) == host_state(g));
  std::vector<nn::StateEntry> gs, cs;
  opt.collect_state(gs);
  copt.collect_state(cs);
  check_states<float>(gs, cs, 0.0);  // copies, not arithmetic: exact

  auto gm = make_model<float>();
  gm.to(gpu);
  nn::Adam gopt(gm.params(), {.lr = 1e-2});
  nn::load_checkpoint(ck, gm, gopt);
  CHECK(gopt.steps() == 2);
  CHECK(host_state(gm) == host_state(g));
  std::vector<nn::StateEntry> gs2;
  gopt.collect_state(gs2);
  check_states<float>(gs2, cs, 0.0);

  // Both continue identically from the restored state (the GPU one through the multi-tensor kernels).
  const auto grads = random_grads(g.params(), Device::cpu());
  opt.step(grads_to(grads, gpu));
  gopt.step(grads_to(grads, gpu));
  CHECK(host_state(gm) == host_state(g));

  std::filesystem::remove(sd);
  std::filesystem::remove(ck);
}

TEST_CASE("cuda optim: moving a model keeps the optimiser built before the move working") {
  if (!have_device()) return;
  auto m = make_model<float>();    // moved CPU -> GPU -> CPU
  auto ref = make_model<float>();  // stays on the CPU
  copy_params(ref, m);
  const auto w_before = m.get<0>().weight();  // a Param handle copied before the move
  nn::SGD opt(m.params(), {.lr = 0.05, .momentum = 0.9, .nesterov = true});
  nn::SGD ropt(ref.params(), {.lr = 0.05, .momentum = 0.9, .nesterov = true});
  auto both = [&](Device d) {
    const auto grads = random_grads(ref.params(), Device::cpu());
    opt.step(grads_to(grads, d));
    ropt.step(grads);
  };
  both(Device::cpu());
  nn::to_device(m, gpu);
  CHECK(w_before.value().device() == gpu);  // identity kept: the old handle sees the moved tensor
  both(gpu);
  both(gpu);
  std::vector<nn::StateEntry> st;
  opt.collect_state(st);
  CHECK(st[0].device == gpu);  // the momentum buffers followed their parameters
  const auto hm = host_state(m), hr = host_state(ref);
  REQUIRE(hm.size() == hr.size());
  for (std::size_t i = 0; i < hm.size(); ++i) CHECK(count_far(hm[i], hr[i], rtol<float>()) == 0);
  m.to(Device::cpu());
  both(Device::cpu());
  std::vector<nn::StateEntry> st2;
  opt.collect_state(st2);
  CHECK(st2[0].device == Device::cpu());
  const auto hm2 = host_state(m), hr2 = host_state(ref);
  for (std::size_t i = 0; i < hm2.size(); ++i) CHECK(count_far(hm2[i], hr2[i], rtol<float>()) == 0);
}
