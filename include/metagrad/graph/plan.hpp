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

template <class... L>
struct concat;
template <>
struct concat<> {
  using type = TypeList<>;
};
template <class... A>
struct concat<TypeList<A...>> {
  using type = TypeList<A...>;
};
template <class... A, class... B, class... Rest>
struct concat<TypeList<A...>, TypeList<B...>, Rest...> {
  using type = typename concat<TypeList<A..., B...>, Rest...>::type;
};
template <class... L>
using concat_t = typename concat<L...>::type;

template <class T, class List>
struct contains;
template <class T, class... U>
struct contains<T, TypeList<U...>> : std::bool_constant<(std::is_same_v<T, U> || ...)> {};

template <class Done, class Todo>
struct unique_impl;
template <class Done>
struct unique_impl<Done, TypeList<>> {
  using type = Done;
};
template <class... D, class T, class... R>
struct unique_impl<TypeList<D...>, TypeList<T, R...>> {
  using type = typename unique_impl<std::conditional_t<contains<T, TypeList<D...>>::value, TypeList<D...>,
                                                       TypeList<D..., T>>,
                                    TypeList<R...>>::type;
};
/// The list without repeats, in order of first occurrence.
template <class List>
using unique_t = typename unique_impl<TypeList<>, List>::type;

template <class T, class List>
struct index_of;
template <class T, class... U>
struct index_of<T, TypeList<T, U...>> : std::integral_constant<std::size_t, 0> {};
template <class T, class V, class... U>
struct index_of<T, TypeList<V, U...>> : std::integral_constant<std::size_t, 1 + index_of<T, TypeList<U...>>::value> {};

template <class E>
inline constexpr bool is_boundary_v = boundary_expression<E>;

template <class Tuple>
struct boundaries_in;
/// Every boundary node type under E (E included), children before parents, with repeats.
template <class E>
using boundaries_t =
    concat_t<typename boundaries_in<children_t<E>>::type, std::conditional_t<is_boundary_v<E>, TypeList<E>, TypeList<>>>;
template <class... C>
struct boundaries_in<std::tuple<C...>> {
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
using direct_child_t =
    std::conditional_t<is_boundary_v<C>, TypeList<C>, typename direct_of<C>::type>;
template <class... C>
struct direct_in<std::tuple<C...>> {
  using type = concat_t<TypeList<>, direct_child_t<std::remove_cvref_t<C>>...>;
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

template <class Groups, class... Outs, std::size_t... I>
constexpr auto last_use(TypeList<Outs...>, std::index_sequence<I...>) {
  using GT = typename to_tuple<Groups>::type;
  std::array<std::size_t, Groups::size> last{};
  for (auto& l : last) l = none;
  (
      [&] {
        for (std::size_t r : indices<Groups, typename direct_of<std::tuple_element_t<I, GT>>::type>::value) last[r] = I;
      }(),
      ...);
  // Outputs are evaluated after the last step: whatever they read lives to the end.
  (
      [&] {
        for (std::size_t r : reads_of<Groups, Outs>()) last[r] = Groups::size;
      }(),
      ...);
  // A node that may be fused into its readers at run time (sum_to of equal ranks) reads its own inputs
  // wherever it is read: they live as long as it does. Parents come after children, so one backward sweep
  // carries this through chains of such nodes.
  constexpr std::array<bool, Groups::size> may_fuse{!always_materialised<std::tuple_element_t<I, GT>>()...};
  std::array<std::array<bool, Groups::size>, Groups::size> reads{};
  (
      [&] {
        for (std::size_t r : indices<Groups, typename direct_of<std::tuple_element_t<I, GT>>::type>::value)
          reads[I][r] = true;
      }(),
      ...);
  for (std::size_t g = Groups::size; g-- > 0;)
    if (may_fuse[g] && last[g] != none)
      for (std::size_t r = 0; r < Groups::size; ++r)
        if (reads[g][r] && (last[r] == none || last[r] < last[g])) last[r] = last[g];
  return last;
}

template <class Groups, class... Outs>
constexpr auto output_of(TypeList<Outs...>) {
  std::array<std::size_t, Groups::size> out{};
  for (auto& o : out) o = none;
  std::size_t k = 0;
  (
      [&] {
        if constexpr (is_boundary_v<Outs>) {
          const std::size_t g = index_of<Outs, Groups>::value;
          if (out[g] == none) out[g] = k;
        }
        ++k;
      }(),
      ...);
  return out;
}

template <std::size_t N>
struct Slots {
  std::array<std::size_t, N> slot_of{};
  std::size_t count = 0;
};

// Greedy interval colouring in step order: a slot is free again once the step that last reads its holder is
// done (not during that step: the node computed then may still be reading it).
template <std::size_t N>
constexpr Slots<N> assign_slots(const std::array<std::size_t, N>& last, const std::array<std::size_t, N>& out_of) {
  Slots<N> s{};
  std::array<std::size_t, N + 1> free_after{};
  for (std::size_t g = 0; g < N; ++g) {
    if (out_of[g] != none) {
      s.slot_of[g] = none;
      continue;
    }
    std::size_t pick = none;
    for (std::size_t k = 0; k < s.count && pick == none; ++k)
      if (free_after[k] < g) pick = k;
    if (pick == none) pick = s.count++;
    s.slot_of[g] = pick;
    free_after[pick] = last[g] == none ? g : last[g];
  }
  return s;
}
}  // namespace detail

/// The plan of a set of outputs, all of it compile-time constants.
template <class... Outs>
struct Plan {
  /// The distinct boundary node types, in evaluation order (every node after the nodes it reads).
  using groups = detail::unique_t<detail::concat_t<TypeList<>, detail::boundaries_t<Outs>...>>;
  using group_tuple = typename detail::to_tuple<groups>::type;
  static constexpr std::size_t num_groups = groups::size;
  static constexpr std::size_t num_outputs = sizeof...(Outs);
  static constexpr std::size_t none = detail::none;
  /// last_use[g]: the last step that reads group g's result (num_groups: an output; none: nothing does).
  static constexpr std::array<std::size_t, num_groups> last_use =
      detail::last_use<groups>(TypeList<Outs...>{}, std::make_index_sequence<num_groups>{});
  /// output_of[g]: the output whose root is group g (its result is written straight into it), or none.
  static constexpr std::array<std::size_t, num_groups> output_of = detail::output_of<groups>(TypeList<Outs...>{});

 private:
  static constexpr detail::Slots<num_groups> slots_ = detail::assign_slots(last_use, output_of);

 public:
  /// slot_of[g]: the buffer slot holding group g's result (none for a group written into an output).
  static constexpr std::array<std::size_t, num_groups> slot_of = slots_.slot_of;
  static constexpr std::size_t num_slots = slots_.count;
};

}  // namespace graph
METAGRAD_NAMESPACE_END
