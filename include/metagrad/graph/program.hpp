// metagrad/graph/program.hpp — compile(outputs...) and the Program it returns. The Program owns copies of
// the output expressions and runs the compile-time Plan (graph/plan.hpp): every boundary node type once, in
// order, into its buffer slot (or straight into the output it is the root of), then the fused elementwise
// outputs. Slots are sized on the first run and reused; later runs with the same shapes allocate nothing.
// Include <metagrad/graph.hpp> instead.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/storage.hpp"
#include "../core/tensor.hpp"
#include "capture.hpp"
#include "plan.hpp"

METAGRAD_NAMESPACE_BEGIN

namespace graph::detail {

using metagrad::detail::same_node;

// Calls f(node) for every boundary node under e (e included), children first.
template <class E, class F>
void for_each_boundary(const E& e, F& f) {
  if constexpr (requires { e.takes_first(); }) {
    // A SelectExpr: only the chosen branch is ever evaluated.
    if (e.takes_first())
      for_each_boundary(e.first_branch(), f);
    else
      for_each_boundary(e.second_branch(), f);
  } else if constexpr (requires { e.children(); }) {
    metagrad::detail::unpack([&](const auto&... c) { (for_each_boundary(c, f), ...); }, e.children());
  }
  if constexpr (boundary_expression<E>) f(e);
}

template <class G>
using group_tensor_t = Tensor<typename G::value_type, G::rank>;

// The run-time state of one group (one boundary node type).
template <class G>
struct GroupState {
  const G* rep = nullptr;  // the node that is evaluated
  group_tensor_t<G> view;  // where its result is this run (a slot view or an output)
  // Same type, different value: evaluated at the same step. Held as const void* (each a const G*): one
  // std::vector instantiation for every group instead of one per group type.
  std::vector<const void*> others;
  std::vector<std::unique_ptr<group_tensor_t<G>>> other_values;
  const G& other(std::size_t i) const { return *static_cast<const G*>(others[i]); }
  std::size_t occurrences = 0;
};

// The states of all groups, reached by group number. Not a std::tuple: nvcc 13's front end gives up
// ("excessive recursion") on std::tuple's constructor constraints over the hundred-odd groups of a conv net's
// training step.
using metagrad::detail::get_indexed;
using metagrad::detail::IndexedPack;

template <class Tuple>
struct group_states;
template <class... G>
struct group_states<std::tuple<G...>> {
  using type = IndexedPack<std::index_sequence_for<G...>, GroupState<G>...>;
};

// The Program's state is held as a StateBase, not as std::unique_ptr<State>: nvcc 13's front end
// (cudafe++) does not finish instantiating libstdc++'s unique_ptr (its __uniq_ptr_impl) over a type whose
// template arguments are a large gradient expression, whereas g++ takes a second. Measured in bench/README.md,
// "nvcc's front end and compiled gradients". One virtual destructor per Program, nothing per step.
struct StateBase {
  StateBase() = default;
  StateBase(const StateBase&) = delete;
  StateBase& operator=(const StateBase&) = delete;
  virtual ~StateBase() = default;
};

inline std::string bytes_text(std::size_t b) {
  std::ostringstream os;
  if (b >= (1u << 20))
    os << static_cast<double>(b) / (1 << 20) << " MiB";
  else if (b >= 1024)
    os << static_cast<double>(b) / 1024 << " KiB";
  else
    os << b << " B";
  return os.str();
}

template <class G>
std::string node_name(const G& g) {
  if constexpr (requires { G::step_name; })
    return G::step_name;
  else if constexpr (requires { g.reducer(); })
    return std::string("reduce ") + std::remove_cvref_t<decltype(g.reducer())>::name;
  else if constexpr (requires { g.alpha(); })
    return "matmul (GEMM)";
  else if constexpr (requires { g.materialised(); })
    return "sum_to (adjoint of a broadcast)";
  else if constexpr (requires { g.takes_first(); })
    return g.takes_first() ? "gradient (adjoints summed at shared subexpressions)"
                           : "gradient (shared subexpressions differ: propagated separately)";
  else
    return "boundary";
}

template <class E>
std::string shape_text(const E& e) {
  try {
    return to_string(e.shape());
  } catch (const unbound_error&) {
    return "[?]";
  }
}
}  // namespace graph::detail

/// Memory a Program plans to use, from the shapes of its currently bound inputs.
struct MemoryPlan {
  std::size_t slot_bytes = 0;          ///< the shared buffer slots, together
  std::size_t output_bytes = 0;        ///< the outputs the Program returns
  std::size_t intermediate_bytes = 0;  ///< every boundary result and output with a buffer of its own (no plan)
  std::size_t peak_bytes = 0;          ///< slot_bytes + output_bytes
  std::size_t slots = 0;
  std::size_t steps = 0;
};

/// A compiled set of outputs (see compile()). Move-only; owns copies of the expressions.
template <class... Outs>
class Program {
  using P = graph::Plan<Outs...>;
  using Groups = typename P::group_tuple;
  static constexpr std::size_t NG = P::num_groups;
  static constexpr std::size_t NO = sizeof...(Outs);

  struct State : graph::detail::StateBase {
    std::tuple<Outs...> outs;
    typename graph::detail::group_states<Groups>::type groups;
    std::vector<std::shared_ptr<Storage>> slots;
    std::tuple<Tensor<typename Outs::value_type, Outs::rank>...> results;
    std::size_t runs = 0;
    Device device;  // where this run's bound tensors live; slots and outputs are allocated there
    // CUDA-graph replay (set_graph_capture): the last run's key, the recording, and why there is none.
    bool capture = true;
    std::vector<std::uint64_t> last_key;
    graph::detail::RecordedGraph recorded;
    std::size_t replays = 0;
    std::string capture_off;  // non-empty: recording failed once for this reason and is not tried again
    explicit State(const Outs&... o) : outs(o...), slots(P::num_slots) {}
  };

 public:
  using result_type = std::tuple<Tensor<typename Outs::value_type, Outs::rank>...>;

  explicit Program(const Outs&... outs) : s_(new State(outs...)) { bind_nodes(); }
  Program(Program&&) noexcept = default;
  Program& operator=(Program&&) noexcept = default;

  /// Runs the program on the tensors bound to its Inputs (bind them first, or pass x.bind(t) here, which
  /// binds as it is evaluated) and returns the outputs. The returned tensors are the Program's own buffers,
  /// overwritten by the next run: clone() what must outlive it. The program runs on the device of its bound
  /// tensors (CPU, or a CUDA device in a file compiled by nvcc).
  /// @throws unbound_error when an Input is not bound; shape_error when the bound shapes do not fit.
  ///
  /// On a CUDA device the step is recorded as a CUDA graph on the second of two consecutive runs whose
  /// bound tensors (addresses, shapes, strides) and dropout steps are the same, and from
  /// then on replayed with one launch while they stay the same: its results equal those of a run, with the
  /// host-side work of every kernel and library call skipped. Bind the same tensors each step (copy new
  /// data into them) to keep replaying. set_graph_capture(false) turns this off.
  template <class... Bindings>
  const result_type& run(const Bindings&...) {
    State& st = *state();
    st.device = metagrad::detail::unpack(
        [](const auto&... o) {
          std::optional<Device> d;
          ((d = d ? d : detail::first_device(o)), ...);
          return d.value_or(Device::cpu());
        },
        st.outs);
    using graph::detail::CapturePolicy;
    auto action = CapturePolicy::Action::run;
    std::vector<std::uint64_t> key;
    if (st.capture && st.capture_off.empty() && st.device.is_cuda()) {
      key = graph::detail::capture_key(st.outs);
      action = CapturePolicy::decide(true, true, st.runs > 0 && key == st.last_key, st.recorded.matches(key));
    }
    if (action == CapturePolicy::Action::replay) {
      st.recorded.launch();
      ++st.replays;
    } else {
      st.recorded.reset();  // its tensors may be gone: never replay a recording of other bindings
      if (action == CapturePolicy::Action::record)
        record(key);
      else
        run_now();
      if (!key.empty()) st.last_key = std::move(key);
    }
    ++st.runs;
    return st.results;
  }
  template <class... Bindings>
  const result_type& operator()(const Bindings&... b) {
    return run(b...);
  }

  /// Runs and writes output k into dsts[k] (each re-allocated only when its shape differs).
  template <class... Dst>
  void run_into(Dst&... dsts) {
    static_assert(sizeof...(Dst) == NO, "metagrad: run_into needs one destination tensor per output");
    metagrad::detail::unpack([&](const auto&... v) { ((dsts = v.clone()), ...); }, run());
  }

  /// The memory the plan needs for the current bindings (no run needed).
  MemoryPlan memory_plan() const {
    MemoryPlan m;
    m.slots = P::num_slots;
    m.steps = NG;
    std::vector<std::size_t> slot(P::num_slots, 0);
    for_groups([&](auto g, const auto& st) {
      if (!st.rep) return;  // only in the branch of a SelectExpr that is not taken
      const std::size_t b = group_bytes(*st.rep);
      m.intermediate_bytes += b;
      if (P::slot_of[g] != P::none && slot[P::slot_of[g]] < b) slot[P::slot_of[g]] = b;
    });
    for (auto b : slot) m.slot_bytes += b;
    std::size_t k = 0;
    auto add_output = [&](const auto& o) {
      const std::size_t b = bytes_of(o);
      m.output_bytes += b;
      if (index_of_output_group(k++) == P::none) m.intermediate_bytes += b;  // not already counted as a step
    };
    metagrad::detail::unpack([&](const auto&... o) { (add_output(o), ...); }, state()->outs);
    m.peak_bytes = m.slot_bytes + m.output_bytes;
    return m;
  }

  /// A readable account of the plan: its steps (boundary nodes with their fused inputs), the fused output
  /// kernels, the buffer slots and the peak memory, for the current bindings (shapes show as [?] where an
  /// Input is not bound yet).
  std::string describe() const {
    std::ostringstream os;
    os << "Program: " << NG << " boundary step" << (NG == 1 ? "" : "s") << ", " << NO << " output"
       << (NO == 1 ? "" : "s") << ", " << P::num_slots << " buffer slot" << (P::num_slots == 1 ? "" : "s") << "\n";
    for_steps([&](auto g, const auto& st) {
      const std::size_t step = P::step_of[decltype(g)::value];
      if (!st.rep) {
        os << "  step " << step << ": skipped (in a branch not taken)\n";
        return;
      }
      os << "  step " << step << ": " << graph::detail::node_name(*st.rep) << " -> "
         << graph::detail::shape_text(*st.rep);
      if constexpr (requires { st.rep->materialised(); }) {
        try {
          if (!st.rep->materialised()) os << " [no broadcast with these shapes: fused into its readers, no buffer]";
        } catch (const unbound_error&) {
        }
      }
      if (P::output_of[g] != P::none)
        os << ", written into output " << P::output_of[g];
      else
        os << ", slot " << P::slot_of[g];
      if (P::last_use[g] == P::none)
        os << ", not read";
      else if (P::last_use[g] == NG)
        os << ", read by the outputs";
      else
        os << ", last read by step " << P::last_use[g];
      if (st.occurrences > 1) os << " (" << st.occurrences << " uses merged)";
      if (!st.others.empty()) os << " (+" << st.others.size() << " of the same type with other parameters)";
      os << "\n";
    });
    std::size_t k = 0;
    metagrad::detail::unpack(
        [&](const auto&... o) {
          (
              [&] {
                os << "  output " << k << ": " << graph::detail::shape_text(o);
                if constexpr (boundary_expression<std::remove_cvref_t<decltype(o)>>)
                  os << ", the result of step " << P::step_of[index_of_output_group(k)];
                else
                  os << ", one fused elementwise kernel";
                os << "\n";
                ++k;
              }(),
              ...);
        },
        state()->outs);
    try {
      const auto m = memory_plan();
      os << "  memory: slots " << graph::detail::bytes_text(m.slot_bytes) << " + outputs "
         << graph::detail::bytes_text(m.output_bytes) << " = peak " << graph::detail::bytes_text(m.peak_bytes)
         << " (a buffer per result would take " << graph::detail::bytes_text(m.intermediate_bytes) << ")\n";
    } catch (const unbound_error&) {
      os << "  memory: bind the inputs to see the sizes\n";
    }
    return os.str();
  }

  /// Turns CUDA-graph recording and replay of this Program on (the default) or off; off drops a recording.
  void set_graph_capture(bool on) {
    state()->capture = on;
    if (!on) state()->recorded.reset();
  }
  /// Whether the next run with the same bindings replays a recorded CUDA graph.
  bool graph_captured() const { return state()->recorded.holds(); }
  /// How many runs were replays of a recording.
  std::size_t graph_replays() const { return state()->replays; }
  /// Why this Program no longer records (empty when it does, or has not tried).
  const std::string& graph_capture_error() const { return state()->capture_off; }

  static constexpr std::size_t steps() { return NG; }
  static constexpr std::size_t slots() { return P::num_slots; }
  std::size_t runs() const { return state()->runs; }
  const std::tuple<Outs...>& outputs() const { return state()->outs; }

 private:
  template <class F, std::size_t... G>
  void for_groups_impl(F&& f, std::index_sequence<G...>) const {
    (f(std::integral_constant<std::size_t, G>{}, graph::detail::get_indexed<G>(state()->groups)), ...);
  }
  template <class F>
  void for_groups(F&& f) const {
    for_groups_impl(f, std::make_index_sequence<NG>{});
  }
  // f(group, state) for every group, in the order of the steps.
  template <class F, std::size_t... S>
  void for_steps_impl(F&& f, std::index_sequence<S...>) const {
    (f(std::integral_constant<std::size_t, P::order[S]>{}, graph::detail::get_indexed<P::order[S]>(state()->groups)),
     ...);
  }
  template <class F>
  void for_steps(F&& f) const {
    for_steps_impl(f, std::make_index_sequence<NG>{});
  }

  static std::size_t index_of_output_group(std::size_t k) {
    for (std::size_t g = 0; g < NG; ++g)
      if (P::output_of[g] == k) return g;
    return P::none;
  }

  template <class E>
  static std::size_t bytes_of(const E& e) {
    return static_cast<std::size_t>(e.shape().numel()) * sizeof(typename E::value_type);
  }
  template <class G>
  static std::size_t group_bytes(const G& g) {
    if constexpr (requires { g.materialised(); }) {
      if (!g.materialised()) return 0;
    }
    return bytes_of(g);
  }

  // Binds every boundary node in the outputs to its group's tensor: equal nodes of one type share the
  // representative's result; a node of the same type but other parameters gets a tensor of its own and is
  // evaluated at the same step (its children are the same groups, so the plan's order and lifetimes hold).
  void bind_nodes() {
    auto visit = [&](const auto& node) {
      using G = std::remove_cvref_t<decltype(node)>;
      constexpr std::size_t g = graph::detail::index_of<G, typename P::groups>::value;
      auto& st = graph::detail::get_indexed<g>(state()->groups);
      ++st.occurrences;
      if (!st.rep) {
        st.rep = &node;
        node.bind_slot(&st.view);
      } else if (graph::detail::same_node(*st.rep, node)) {
        node.bind_slot(&st.view);
      } else {
        for (std::size_t i = 0; i < st.others.size(); ++i)
          if (graph::detail::same_node(st.other(i), node)) {
            node.bind_slot(st.other_values[i].get());
            return;
          }
        st.others.push_back(&node);
        st.other_values.push_back(std::make_unique<graph::detail::group_tensor_t<G>>());
        node.bind_slot(st.other_values.back().get());
      }
    };
    metagrad::detail::unpack([&](const auto&... o) { (graph::detail::for_each_boundary(o, visit), ...); },
                             state()->outs);
  }

  void run_now() {
    size_slots();
    run_steps(std::make_index_sequence<NG>{});
    write_outputs(std::make_index_sequence<NO>{});
  }

  // Records one run as a CUDA graph, then replays it (recording queues nothing). A CUDA error while
  // recording (a library call that cannot be captured, a synchronisation inside a step) turns recording
  // off for this Program, with the reason kept, and the step runs normally; any other error is the run's
  // own (bad shapes, ...) and is rethrown after the recording is discarded.
  void record(std::vector<std::uint64_t> key) {
    State& st = *state();
    const auto& hooks = metagrad::detail::device_hooks_for(st.device, "CUDA graph capture");
    size_slots();  // outside the recording: shapes are those of the last run, so nothing is allocated
    void* token = hooks.graph_begin(st.device);
    try {
      run_steps(std::make_index_sequence<NG>{});
      write_outputs(std::make_index_sequence<NO>{});
    } catch (const cuda_error& e) {
      hooks.graph_abort(st.device, token);
      st.capture_off = e.what();
      run_now();
      return;
    } catch (...) {
      hooks.graph_abort(st.device, token);
      throw;
    }
    std::string why;
    void* g = hooks.graph_end(st.device, token, why);
    if (!g) {
      st.capture_off = why;
      run_now();
      return;
    }
    st.recorded.set(g, std::move(key));
    st.recorded.launch();
  }

  // Grows slot storage to fit this run's shapes (nothing is allocated when they fit).
  void size_slots() {
    for_groups([&](auto g, const auto& st) {
      if constexpr (P::slot_of[decltype(g)::value] != P::none) {
        if (!st.rep) return;
        const std::size_t b = group_bytes(*st.rep);
        auto& slot = state()->slots[P::slot_of[decltype(g)::value]];
        if (!slot || slot->bytes() < b || slot->device() != state()->device) {
          slot.reset();  // free the old one first: peak memory, not old + new
          slot = std::make_shared<Storage>(b, state()->device);
        }
      }
    });
  }

  template <std::size_t G>
  void run_step() {
    using Node = std::tuple_element_t<G, Groups>;
    auto& st = graph::detail::get_indexed<G>(state()->groups);
    if (!st.rep) return;  // only in the branch of a SelectExpr that is not taken
    const Node& n = *st.rep;
    if constexpr (requires { n.materialised(); }) {
      if (!n.materialised()) return;  // a sum_to that is the identity this run: fused into its readers
    }
    const auto shape = n.shape();
    if constexpr (P::output_of[G] != P::none) {
      auto& out = std::get<P::output_of[G]>(state()->results);
      detail::prepare_destination(out, shape, state()->device);
      st.view = out;
    } else {
      st.view = graph::detail::group_tensor_t<Node>::from_storage(state()->slots[P::slot_of[G]], 0, shape,
                                                                  contiguous_strides(shape));
    }
    n.eval_into(st.view);
    for (std::size_t i = 0; i < st.others.size(); ++i) st.other(i).eval_into(*st.other_values[i]);
  }
  template <std::size_t... S>
  void run_steps(std::index_sequence<S...>) {
    (run_step<P::order[S]>(), ...);
  }

  template <std::size_t K>
  void write_output() {
    using O = std::tuple_element_t<K, std::tuple<Outs...>>;
    const O& o = std::get<K>(state()->outs);
    auto& out = std::get<K>(state()->results);
    if constexpr (boundary_expression<O>) {
      constexpr std::size_t g = graph::detail::index_of<O, typename P::groups>::value;
      if constexpr (P::output_of[g] == K) {
        bool done = true;
        if constexpr (requires { o.materialised(); })
          done = graph::detail::get_indexed<g>(state()->groups).rep->materialised();
        (void)o;
        if (done) return;  // the step wrote it
      }
    }
    detail::assigner<Tensor<typename O::value_type, O::rank>>::assign(out, o);
  }
  template <std::size_t... K>
  void write_outputs(std::index_sequence<K...>) {
    (write_output<K>(), ...);
  }

  State* state() const { return static_cast<State*>(s_.get()); }  // s_ always holds a State
  std::unique_ptr<graph::detail::StateBase> s_;
};

/// Compiles output expressions into a Program: their boundary nodes (reductions, matrix products, ...)
/// deduplicated by type and parameters, ordered, with buffer slots shared between nodes whose lifetimes do
/// not overlap. The expressions are copied; Inputs and Params stay shared with the caller's.
/// @code
///   auto [dW, db] = grad(loss, W, b);
///   auto step = compile(loss, dW, db);
///   auto& [l, gW, gb] = step.run(x.bind(batch));
/// @endcode
template <expression... Outs>
auto compile(const Outs&... outs) {
  static_assert(sizeof...(Outs) > 0, "metagrad: compile() needs at least one output expression");
  return Program<std::remove_cvref_t<Outs>...>(outs...);
}

METAGRAD_NAMESPACE_END
