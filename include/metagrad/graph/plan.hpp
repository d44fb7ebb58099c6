// metagrad/graph/plan.hpp — the compile-time half of compile(): the boundary nodes of a set of output
// expressions collected from their types, duplicates removed by type identity, in an order where every node
// comes after the nodes it reads (post-order), each node's last use, and the buffer slot each node's result
// lives in (nodes whose lifetimes do not overlap share a slot). All of it is constexpr data computed from the
// types. Include <metagrad/graph.hpp> instead.
#pragma once

#include <array>
#include <cstddef>
#include <tuple>
#include <type_traits>

#include "../autodiff/grad.hpp"
#include "../expr/node.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace graph {

template <class... T>
struct TypeList {
  static constexpr std::size_t size = sizeof...(T);
};

namespace detail {
using metagrad::detail::children_t;

// concat, unique_t and index_of fold over an operator or scan an array instead of recursing, so their
// template depth stays constant however many boundary nodes a graph has (a training step of a
// batch-normalised convolutional net has hundreds before deduplication; nvcc's front end stops at 200
// nested instantiations).
template <class... A, class... B>
auto operator|(TypeList<A...>, TypeList<B...>) -> TypeList<A..., B...>;
template <class... L>
struct concat {
  using type = decltype((TypeList<>{} | ... | L{}));
};
template <class... L>
using concat_t = typename concat<L...>::type;

template <class T, class List>
struct contains;
template <class T, class... U>
struct contains<T, TypeList<U...>> : std::bool_constant<(std::is_same_v<T, U> || ...)> {};

template <class T>
struct TypeBox {};
template <class... D, class T>
auto operator|(TypeList<D...>, TypeBox<T>)
    -> std::conditional_t<contains<T, TypeList<D...>>::value, TypeList<D...>, TypeList<D..., T>>;
template <class List>
struct unique_impl;
template <class... T>
struct unique_impl<TypeList<T...>> {
  using type = decltype((TypeList<>{} | ... | TypeBox<T>{}));
};
/// The list without repeats, in order of first occurrence.
template <class List>
using unique_t = typename unique_impl<List>::type;

template <std::size_t N>
constexpr std::size_t first_true(const std::array<bool, N>& same) {
  std::size_t i = 0;
  while (i < N && !same[i]) ++i;
  return i;
}
/// The position of T's first occurrence in List. @pre T is in List.
template <class T, class List>
struct index_of;
template <class T, class... U>
struct index_of<T, TypeList<U...>>
    : std::integral_constant<std::size_t, first_true(std::array<bool, sizeof...(U)>{std::is_same_v<T, U>...})> {
  static_assert(index_of::value < sizeof...(U), "metagrad: index_of: the type is not in the list");
};

template <class E>
inline constexpr bool is_boundary_v = boundary_expression<E>;

template <class Tuple>
struct boundaries_in;
/// Every boundary node type under E (E included), children before parents, each once (deduplicated at
/// every node: a graph whose subexpressions are shared would otherwise list them once per path).
template <class E>
using boundaries_t = unique_t<concat_t<typename boundaries_in<children_t<E>>::type,
                                       std::conditional_t<is_boundary_v<E>, TypeList<E>, TypeList<>>>>;
template <class Seq, class... C>
struct boundaries_in<metagrad::detail::IndexedPack<Seq, C...>> {
  using type = concat_t<TypeList<>, boundaries_t<std::remove_cvref_t<C>>...>;
};

template <class Tuple>
struct direct_in;
/// The boundary nodes E's own evaluation reads: those under its children, not under another boundary.
template <class E>
struct direct_of {
  using type = typename direct_in<children_t<E>>::type;
};
template <class C>
using direct_child_t = std::conditional_t<is_boundary_v<C>, TypeList<C>, typename direct_of<C>::type>;
template <class Seq, class... C>
struct direct_in<metagrad::detail::IndexedPack<Seq, C...>> {
  using type = unique_t<concat_t<TypeList<>, direct_child_t<std::remove_cvref_t<C>>...>>;
};
}  // namespace detail

namespace detail {
inline constexpr std::size_t none = static_cast<std::size_t>(-1);

template <class List>
struct to_tuple;
template <class... G>
struct to_tuple<TypeList<G...>> {
  using type = std::tuple<G...>;
};

template <class Groups, class List>
struct indices;
template <class Groups, class... G>
struct indices<Groups, TypeList<G...>> {
  static constexpr std::array<std::size_t, sizeof...(G)> value{index_of<G, Groups>::value...};
};

// The groups the evaluation of E reads: E itself when it is a boundary (an output that is one), else the
// boundaries directly under it.
template <class Groups, class E>
constexpr auto reads_of() {
  if constexpr (is_boundary_v<E>)
    return indices<Groups, TypeList<E>>::value;
  else
    return indices<Groups, typename direct_of<E>::type>::value;
}

template <class G>
constexpr bool always_materialised() {
  if constexpr (requires { G::always_materialised; })
    return G::always_materialised;
  else
    return true;
}

/// Everything the plan derives from the group types, as plain arrays (indices are group numbers unless a
/// name says step).
template <std::size_t N>
struct Schedule {
  std::array<std::size_t, N> order{};     // order[step]: the group evaluated at that step
  std::array<std::size_t, N> step_of{};   // step_of[group]
  std::array<std::size_t, N> last_use{};  // last_use[group]: the last step reading it (N: outputs; none: unread)
  std::array<std::size_t, N> output_of{};
  std::array<std::size_t, N> slot_of{};
  std::size_t slots = 0;
};

template <class Groups, class... Outs, std::size_t... I>
constexpr auto schedule(TypeList<Outs...>, std::index_sequence<I...>) {
  constexpr std::size_t N = Groups::size;
  using GT = typename to_tuple<Groups>::type;
  Schedule<N> sc{};
  std::array<std::array<bool, N>, N> reads{};  // reads[g][r]: group g's evaluation reads group r
  (
      [&] {
        for (std::size_t r : indices<Groups, typename direct_of<std::tuple_element_t<I, GT>>::type>::value)
          reads[I][r] = true;
      }(),
      ...);
  std::array<bool, N> by_output{};
  (
      [&] {
        for (std::size_t r : reads_of<Groups, Outs>()) by_output[r] = true;
      }(),
      ...);
  // A node that may be fused into its readers at run time (sum_to of equal ranks) reads its own inputs
  // wherever it is read; for lifetimes, its readers read them too.
  constexpr std::array<bool, N> may_fuse{!always_materialised<std::tuple_element_t<I, GT>>()...};
  for (std::size_t g = N; g-- > 0;)
    if (may_fuse[g])
      for (std::size_t r = 0; r < N; ++r)
        if (reads[g][r]) {
          by_output[r] = by_output[r] || by_output[g];
          for (std::size_t h = 0; h < N; ++h)
            if (reads[h][g]) reads[h][r] = true;
        }

  // List scheduling: of the nodes whose inputs are ready, take the one that ends the most lifetimes (it is
  // the last reader of the most results), so that a backward pass consumes forward results soon after its
  // adjoints exist; ties go to the earliest in post-order (the order the expressions were written in).
  // The reads as adjacency lists: the scheduling loop below is N steps x N candidates x their reads, and with
  // a dense row per candidate it cost N^3 constant-evaluation steps, past nvcc's limit for a LeNet step.
  std::array<std::array<std::size_t, N>, N> adj{};
  std::array<std::size_t, N> degree{};
  std::array<std::size_t, N> readers_left{};
  for (std::size_t g = 0; g < N; ++g)
    for (std::size_t r = 0; r < N; ++r)
      if (reads[g][r]) {
        adj[g][degree[g]++] = r;
        ++readers_left[r];
      }
  std::array<bool, N> done{};
  for (std::size_t step = 0; step < N; ++step) {
    std::size_t best = none;
    int best_score = -1;
    for (std::size_t g = 0; g < N; ++g) {
      if (done[g]) continue;
      bool ready = true;
      int score = 0;
      for (std::size_t k = 0; k < degree[g] && ready; ++k) {
        const std::size_t r = adj[g][k];
        ready = done[r];
        score += readers_left[r] == 1 && !by_output[r] ? 1 : 0;
      }
      if (ready && score > best_score) {
        best = g;
        best_score = score;
      }
    }
    done[best] = true;
    sc.order[step] = best;
    sc.step_of[best] = step;
    for (std::size_t k = 0; k < degree[best]; ++k) --readers_left[adj[best][k]];
  }

  for (std::size_t g = 0; g < N; ++g) sc.last_use[g] = by_output[g] ? N : none;
  for (std::size_t h = 0; h < N; ++h)
    for (std::size_t k = 0; k < degree[h]; ++k) {
      const std::size_t g = adj[h][k];
      if (!by_output[g] && (sc.last_use[g] == none || sc.step_of[h] > sc.last_use[g])) sc.last_use[g] = sc.step_of[h];
    }

  for (auto& o : sc.output_of) o = none;
  std::size_t k = 0;
  (
      [&] {
        if constexpr (is_boundary_v<Outs>) {
          const std::size_t g = index_of<Outs, Groups>::value;
          if (sc.output_of[g] == none) sc.output_of[g] = k;
        }
        ++k;
      }(),
      ...);

  // Greedy interval colouring in step order: a slot is free again once the step that last reads its holder
  // is done (not during that step: the node computed then may still be reading it).
  std::array<std::size_t, N + 1> free_after{};
  for (std::size_t step = 0; step < N; ++step) {
    const std::size_t g = sc.order[step];
    if (sc.output_of[g] != none) {
      sc.slot_of[g] = none;
      continue;
    }
    std::size_t pick = none;
    for (std::size_t j = 0; j < sc.slots && pick == none; ++j)
      if (free_after[j] < step) pick = j;
    if (pick == none) pick = sc.slots++;
    sc.slot_of[g] = pick;
    free_after[pick] = sc.last_use[g] == none ? step : sc.last_use[g];
  }
  return sc;
}
}  // namespace detail

/// The plan of a set of outputs, all of it compile-time constants.
template <class... Outs>
struct Plan {
  /// The distinct boundary node types (group numbers index this list, in post-order).
  using groups = detail::unique_t<detail::concat_t<TypeList<>, detail::boundaries_t<Outs>...>>;
  using group_tuple = typename detail::to_tuple<groups>::type;
  static constexpr std::size_t num_groups = groups::size;
  static constexpr std::size_t num_outputs = sizeof...(Outs);
  static constexpr std::size_t none = detail::none;

 private:
  static constexpr detail::Schedule<num_groups> s_ =
      detail::schedule<groups>(TypeList<Outs...>{}, std::make_index_sequence<num_groups>{});

 public:
  /// order[step]: the group evaluated at each step (every group after the groups it reads).
  static constexpr std::array<std::size_t, num_groups> order = s_.order;
  /// step_of[g]: the step at which group g is evaluated.
  static constexpr std::array<std::size_t, num_groups> step_of = s_.step_of;
  /// last_use[g]: the last step that reads group g's result (num_groups: an output; none: nothing does).
  static constexpr std::array<std::size_t, num_groups> last_use = s_.last_use;
  /// output_of[g]: the output whose root is group g (its result is written straight into it), or none.
  static constexpr std::array<std::size_t, num_groups> output_of = s_.output_of;
  /// slot_of[g]: the buffer slot holding group g's result (none for a group written into an output).
  static constexpr std::array<std::size_t, num_groups> slot_of = s_.slot_of;
  static constexpr std::size_t num_slots = s_.slots;
};

}  // namespace graph
METAGRAD_NAMESPACE_END
