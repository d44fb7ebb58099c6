// metagrad/autodiff/grad.hpp — grad(y, x1, x2, ...): reverse-mode differentiation done by the C++ compiler.
// The walk starts at the scalar y with adjoint 1 and descends the expression type; at every node the
// op's rule (ops/ for elementwise functors, below for views, reductions and matmul) maps the node's adjoint
// to the adjoints of the children that depend on the requested leaf. What reaches the leaf is summed. The
// results are ordinary expressions, fused and deduplicated like any other; nothing happens at run time
// but their evaluation. Include <metagrad/autodiff.hpp> instead.
#pragma once

#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeindex>
#include <typeinfo>
#include <unordered_map>
#include <utility>

#include "../core/error.hpp"
#include "../core/pack.hpp"
#include "../expr/elementwise.hpp"
#include "../expr/functions.hpp"
#include "../expr/leaf.hpp"
#include "../expr/matmul.hpp"
#include "../expr/reduce.hpp"
#include "../expr/view.hpp"
#include "../ops/reduction.hpp"
#include "nodes.hpp"

METAGRAD_NAMESPACE_BEGIN

namespace detail {

// --- the structure of a node type -----------------------------------------------------------------

// A node's children() is a Pack of const references (detail::refs); a std::tuple (std::tie), as a node
// written outside the library may return, is read as the same Pack.
template <class C>
struct as_pack {
  using type = C;
};
template <class... C>
struct as_pack<std::tuple<C...>> {
  using type = Pack<C...>;
};

template <class E>
struct children_of {
  using type = Pack<>;
};
template <class E>
requires requires(const E& e) { e.children(); }
struct children_of<E> {
  using type = typename as_pack<decltype(std::declval<const E&>().children())>::type;
};
/// The Pack of E's operand types (const references), Pack<> for a leaf.
template <class E>
using children_t = typename children_of<E>::type;

/// Operand I of node e.
template <std::size_t I, class E>
decltype(auto) child(const E& e) {
  if constexpr (requires { get_indexed<I>(e.children()); })
    return get_indexed<I>(e.children());
  else
    return std::get<I>(e.children());
}

template <class E, class L>
struct depends_on;
template <class Tuple, class L>
struct any_depends;
template <class Seq, class... C, class L>
struct any_depends<IndexedPack<Seq, C...>, L>
    : std::bool_constant<(depends_on<std::remove_cvref_t<C>, L>::value || ...)> {};

/// Whether the value of expression type E changes with leaf L (through anything but stop_gradient).
template <class E, class L>
struct depends_on : any_depends<children_t<E>, L> {};
template <class L>
struct depends_on<L, L> : std::true_type {};
template <class A, class L>
struct depends_on<StopGradientExpr<A>, L> : std::false_type {};
/// A node type that says `static constexpr bool stops_gradient = true` (the statistics outputs of batch_norm)
/// is a constant to grad(), like stop_gradient.
template <class E, class L>
requires(!std::is_same_v<E, L> && requires { requires E::stops_gradient; }) struct depends_on<E, L> : std::false_type {
};

template <class T>
inline constexpr bool is_floating_v = std::is_floating_point_v<T>;

template <class W, class E, class G>
auto backprop(const W& w, const E& e, const G& g);

// Continue into child `c` (closure type A) with adjoint `adj` when it depends on L.
template <class W, class A, class AE, class Adj>
auto into(const W& w, const AE& c, Adj&& adj) {
  if constexpr (depends_on<AE, typename W::target>::value)
    return backprop(w, c, std::forward<Adj>(adj));
  else
    return Pack<>{};
}

// The adjoint of a broadcast operand: summed back to the operand's shape.
template <class Adj, class X>
auto sum_to(Adj&& adj, const X& x) {
  using XV = std::remove_cvref_t<X>;
  return SumToExpr<std::remove_cvref_t<Adj>, XV>(std::forward<Adj>(adj), x);
}

// --- rules for each node kind ---------------------------------------------------------------------

template <class W, class Op, class A, class G>
auto backprop_node(const W& w, const UnaryExpr<Op, A>& e, const G& g) {
  using AE = std::remove_cvref_t<A>;
  const auto& x = operand_value<A>(e.operand());
  if constexpr (requires { e.op().grad(g, x, e); }) {
    return into<W, A>(w, e.operand(), e.op().grad(g, x, e));
  } else if constexpr (requires { typename Op::target_type; }) {
    // cast: the adjoint converts back; a cast to or from an integer type has none.
    if constexpr (is_floating_v<typename Op::target_type> && is_floating_v<typename AE::value_type>)
      return into<W, A>(w, e.operand(), cast<typename AE::value_type>(g));
    else
      return Pack<>{};
  } else {
    return Pack<>{};  // piecewise constant (floor, sign, comparisons): the gradient is zero
  }
}

template <class W, class Op, class A, class B, class G>
auto backprop_node(const W& w, const BinaryExpr<Op, A, B>& e, const G& g) {
  using AE = std::remove_cvref_t<A>;
  using BE = std::remove_cvref_t<B>;
  const auto& a = operand_value<A>(e.lhs());
  const auto& b = operand_value<B>(e.rhs());
  if constexpr (requires { e.op().grad_lhs(g, a, b, e); }) {
    auto left = [&] {
      if constexpr (depends_on<AE, typename W::target>::value)
        return into<W, A>(w, e.lhs(), sum_to(e.op().grad_lhs(g, a, b, e), a));
      else
        return Pack<>{};
    };
    auto right = [&] {
      if constexpr (depends_on<BE, typename W::target>::value)
        return into<W, B>(w, e.rhs(), sum_to(e.op().grad_rhs(g, a, b, e), b));
      else
        return Pack<>{};
    };
    return pack_cat(left(), right());
  } else {
    return Pack<>{};
  }
}

template <class W, class Op, class C, class A, class B, class G>
auto backprop_node(const W& w, const TernaryExpr<Op, C, A, B>& e, const G& g) {
  using AE = std::remove_cvref_t<A>;
  using BE = std::remove_cvref_t<B>;
  const auto& c = operand_value<C>(e.first());
  const auto& a = operand_value<A>(e.second());
  const auto& b = operand_value<B>(e.third());
  auto second = [&] {
    if constexpr (depends_on<AE, typename W::target>::value)
      return into<W, A>(w, e.second(), sum_to(e.op().grad_second(g, c, a, b, e), a));
    else
      return Pack<>{};
  };
  auto third = [&] {
    if constexpr (depends_on<BE, typename W::target>::value)
      return into<W, B>(w, e.third(), sum_to(e.op().grad_third(g, c, a, b, e), b));
    else
      return Pack<>{};
  };
  return pack_cat(second(), third());
}

template <class W, class A, int RO, class G>
auto backprop_node(const W& w, const AxisMapExpr<A, RO>& e, const G& g) {
  constexpr int RC = std::remove_cvref_t<A>::rank;
  // Child axis c came from output axis i where from[i] == c; a squeezed child axis (extent 1) comes back as
  // a new axis; an inserted output axis (extent 1) is dropped.
  Array<int, RC> inv{};
  for (int c = 0; c < RC; ++c) inv[c] = -1;
  for (int i = 0; i < RO; ++i)
    if (e.axes()[i] >= 0) inv[e.axes()[i]] = i;
  using M = AxisMapExpr<G, RC>;
  return into<W, A>(w, e.operand(), M(g, inv, typename M::unchecked_t{}));
}

template <class W, class A, class G>
auto backprop_node(const W& w, const SliceExpr<A>& e, const G& g) {
  using X = std::remove_cvref_t<decltype(operand_value<A>(e.operand()))>;
  return into<W, A>(w, e.operand(),
                    UnsliceExpr<G, X>(g, operand_value<A>(e.operand()), e.starts(), e.steps(), e.shape()));
}

template <class W, class A, int RO, class G>
auto backprop_node(const W& w, const ReshapeExpr<A, RO>& e, const G& g) {
  using X = std::remove_cvref_t<decltype(operand_value<A>(e.operand()))>;
  return into<W, A>(w, e.operand(), ReshapeLikeExpr<G, X>(g, operand_value<A>(e.operand())));
}

template <class W, class A, int RO, class G>
auto backprop_node(const W& w, const BroadcastExpr<A, RO>& e, const G& g) {
  return into<W, A>(w, e.operand(), sum_to(g, operand_value<A>(e.operand())));
}

template <class W, class A, class X, class G>
auto backprop_node(const W& w, const BroadcastLikeExpr<A, X>& e, const G& g) {
  return into<W, A>(w, e.operand(), sum_to(g, e.operand()));
}

template <class W, class G2, class X, class G>
auto backprop_node(const W& w, const SumToExpr<G2, X>& e, const G& g) {
  return into<W, G2>(w, e.operand(), BroadcastLikeExpr<G, G2>(g, e.operand()));
}

template <class W, class G2, class X, class G>
auto backprop_node(const W& w, const UnsliceExpr<G2, X>& e, const G& g) {
  return into<W, G2>(w, e.operand(), SliceExpr<G>(g, e.starts(), e.steps(), e.operand().shape()));
}

template <class W, class G2, class X, class G>
auto backprop_node(const W& w, const ReshapeLikeExpr<G2, X>& e, const G& g) {
  return into<W, G2>(w, e.operand(), ReshapeLikeExpr<G, G2>(g, e.operand()));
}

// Reductions: the adjoint of each output element goes back to the elements it combined.
template <int K, int R>
Array<int, K> axes_of(const Array<bool, R>& mask) {
  Array<int, K> a{};
  for (int d = 0, i = 0; d < R; ++d)
    if (mask[d]) a[i++] = d;
  return a;
}

template <class W, class Red, class A, int K, bool Keep, class G>
auto backprop_node(const W& w, const ReduceExpr<Red, A, K, Keep>& e, const G& g) {
  using AE = std::remove_cvref_t<A>;
  constexpr int RI = AE::rank;
  using T = typename AE::value_type;
  using XV = std::remove_cvref_t<decltype(operand_value<A>(e.operand()))>;
  const XV x = operand_value<A>(e.operand());
  const auto mask = e.reduced_axes();
  // h (shaped like the reduction's output) read at x's shape: the reduced axes come back with extent 1.
  auto expand = [&](auto h) {
    using H = decltype(h);
    if constexpr (Keep) {
      return BroadcastLikeExpr<H, XV>(h, x);
    } else {
      Array<int, RI> from{};
      for (int d = 0, c = 0; d < RI; ++d) from[d] = mask[d] ? -1 : c++;
      using M = AxisMapExpr<H, RI>;
      return BroadcastLikeExpr<M, XV>(M(h, from, typename M::unchecked_t{}), x);
    }
  };
  const auto axes = axes_of<K>(mask);
  using F = ops::float_of_t<T>;
  if constexpr (!is_floating_v<T>) {
    return Pack<>{};
  } else if constexpr (std::is_same_v<Red, ops::SumReducer>) {
    return into<W, A>(w, e.operand(), expand(g));
  } else if constexpr (std::is_same_v<Red, ops::MeanReducer>) {
    return into<W, A>(w, e.operand(), expand(g) / ReduceCountExpr<F, XV>(x, mask));
  } else if constexpr (std::is_same_v<Red, ops::ProdReducer>) {
    // d prod / d x_i is the product of the other elements: prod / x_i where x_i != 0. At a zero that is 0 / 0;
    // there it is the product of the non-zero elements when x_i is its group's only zero, else 0.
    auto zero = x == T(0);
    auto nonzero = where(zero, T(1), x);
    auto nonzero_prod = ReduceExpr<ops::ProdReducer, decltype(nonzero), K, Keep>(ops::ProdReducer{}, nonzero, axes);
    auto zeros = ReduceExpr<ops::SumReducer, decltype(cast<T>(zero)), K, Keep>(ops::SumReducer{}, cast<T>(zero), axes);
    return into<W, A>(w, e.operand(),
                      expand(g) * where(zero, expand(nonzero_prod) * cast<T>(expand(zeros) == T(1)), expand(e) / x));
  } else if constexpr (std::is_same_v<Red, ops::MaxReducer> || std::is_same_v<Red, ops::MinReducer>) {
    // Ties share the adjoint evenly: each maximum gets g / (number of maxima).
    auto hit = cast<T>(x == expand(e));
    auto count = ReduceExpr<ops::SumReducer, decltype(hit), K, Keep>(ops::SumReducer{}, hit, axes);
    return into<W, A>(w, e.operand(), expand(g) * hit / expand(count));
  } else if constexpr (std::is_same_v<Red, ops::VarReducer> || std::is_same_v<Red, ops::StdReducer>) {
    auto centred = x - expand(ReduceExpr<ops::MeanReducer, XV, K, Keep>(ops::MeanReducer{}, x, axes));
    auto n = ReduceCountExpr<F, XV>(x, mask, e.reducer().ddof);
    if constexpr (std::is_same_v<Red, ops::VarReducer>)
      return into<W, A>(w, e.operand(), expand(g) * 2 * centred / n);
    else
      return into<W, A>(w, e.operand(), expand(g) * centred / (n * expand(e)));
  } else if constexpr (std::is_same_v<Red, ops::LogSumExpReducer>) {
    return into<W, A>(w, e.operand(), expand(g) * exp(x - expand(e)));
  } else if constexpr (std::is_same_v<Red, ops::NormReducer>) {
    // d ||x||_p = sign(x) (|x| / ||x||)^(p-1); p = 0 (a count) has gradient 0.
    const double p = e.reducer().p;
    return into<W, A>(w, e.operand(),
                      expand(g) * sign(x) * pow(abs(x) / expand(e), p == 0 ? 0.0 : p - 1) * (p == 0 ? 0.0 : 1.0));
  } else {
    return Pack<>{};  // argmax, argmin, all, any: piecewise constant
  }
}

template <class W, class A, class B, class G>
auto backprop_node(const W& w, const MatmulExpr<A, B>& e, const G& g) {
  using AE = std::remove_cvref_t<A>;
  using BE = std::remove_cvref_t<B>;
  const auto& a = operand_value<A>(e.lhs());
  const auto& b = operand_value<B>(e.rhs());
  // C = alpha A B: dA = alpha G B^T, dB = alpha A^T G, as GEMMs with transpose flags (no copies), summed
  // over broadcast batch axes.
  // Plain matrix products (no batch axes) need no sum_to: the product already has the operand's shape.
  constexpr bool batched = MatmulExpr<A, B>::batch_rank > 0;
  auto left = [&] {
    if constexpr (depends_on<AE, typename W::target>::value) {
      auto d = matmul(g, transpose(b, -1, -2), e.alpha());
      if constexpr (batched)
        return into<W, A>(w, e.lhs(), sum_to(d, a));
      else
        return into<W, A>(w, e.lhs(), d);
    } else {
      return Pack<>{};
    }
  };
  auto right = [&] {
    if constexpr (depends_on<BE, typename W::target>::value) {
      auto d = matmul(transpose(a, -1, -2), g, e.alpha());
      if constexpr (batched)
        return into<W, B>(w, e.rhs(), sum_to(d, b));
      else
        return into<W, B>(w, e.rhs(), d);
    } else {
      return Pack<>{};
    }
  };
  return pack_cat(left(), right());
}

template <class W, class A, class B, class G>
auto backprop_node(const W& w, const SelectExpr<A, B>& e, const G& g) {
  // Only the chosen branch is the value; the other gets a zero adjoint (the choice is a constant).
  auto first = [&] {
    if constexpr (depends_on<A, typename W::target>::value)
      return into<W, A>(w, e.first_branch(), g * (e.takes_first() ? 1.0 : 0.0));
    else
      return Pack<>{};
  };
  auto second = [&] {
    if constexpr (depends_on<B, typename W::target>::value)
      return into<W, B>(w, e.second_branch(), g * (e.takes_first() ? 0.0 : 1.0));
    else
      return Pack<>{};
  };
  return pack_cat(first(), second());
}

// A node that carries its own rule (conv, pooling, gather, ... beside their definitions in expr/) answers
// e.backward(ic<I>, g): the adjoint of its child I. Children the target does not depend on are skipped, so
// a node need not define a rule for operands nobody differentiates (labels, indices).
template <std::size_t I, class W, class E, class G>
auto child_adjoint(const W& w, const E& e, const G& g) {
  using C = std::remove_cvref_t<pack_element_t<I, children_t<E>>>;
  if constexpr (depends_on<C, typename W::target>::value) {
    static_assert(
        requires { e.backward(std::integral_constant<int, int(I)>{}, g); },
        "metagrad: grad: this node has no derivative with respect to one of its operands");
    return backprop(w, child<I>(e), e.backward(std::integral_constant<int, int(I)>{}, g));
  } else {
    return Pack<>{};
  }
}

// A node that states its value as a composition of other nodes (e.composition(), built from copies of its
// operands) is differentiated through that composition: the fast node computes the value, the composition
// only the derivatives (batch_norm's backward outputs, whose second derivatives come from it).
template <class W, class E, class G>
requires(!self_differentiating<E> &&
         requires(const E& e) { e.composition(); }) auto backprop_node(const W& w, const E& e, const G& g) {
  return backprop(w, e.composition(), g);
}

template <class W, class E, class G>
requires self_differentiating<E>
auto backprop_node(const W& w, const E& e, const G& g) {
  return [&]<std::size_t... I>(std::index_sequence<I...>) { return pack_cat(child_adjoint<I>(w, e, g)...); }
  (std::make_index_sequence<pack_size_v<children_t<E>>>{});
}

// --- the walk ---------------------------------------------------------------------------------------

// The type-level walks below fold over operator| (types<...> and cat from core/pack.hpp, and Pick below)
// instead of recursing over a list: the depth of nested instantiations stays constant however many nodes a
// graph has. nvcc's front end stops at 200 nested instantiations (g++ at 900), and a list of every node of
// a batch-normalised convolutional net, with repeats, is longer than that.

template <class T, class List>
struct has_type;
template <class T, class... U>
struct has_type<T, types<U...>> : std::bool_constant<(std::is_same_v<T, U> || ...)> {};

template <class T, class List>
struct count_of;
template <class T, class... U>
struct count_of<T, types<U...>> : std::integral_constant<int, (int(std::is_same_v<T, U>) + ... + 0)> {};

template <class Tuple>
struct nodes_in;
/// Every node type of E's tree (E included), children first, with repeats.
template <class E>
using nodes_t = typename cat<typename nodes_in<children_t<E>>::type, types<E>>::type;
template <class Seq, class... C>
struct nodes_in<IndexedPack<Seq, C...>> {
  using type = typename cat<types<>, nodes_t<std::remove_cvref_t<C>>...>::type;
};

// One node type T of the list, and whether it belongs in the result: `| Pick<T, true>` appends T unless
// it is already there.
template <class T, bool Take>
struct Pick {};
template <class... D, class T>
auto operator|(types<D...>, Pick<T, true>)
    -> std::conditional_t<(std::is_same_v<T, D> || ...), types<D...>, types<D..., T>>;
template <class... D, class T>
auto operator|(types<D...>, Pick<T, false>) -> types<D...>;

// Whether node type T of the list All is shared: it occurs more than once, is not a leaf, and leads to one
// of the leaves.
template <class T, class All, class... Leaves>
inline constexpr bool is_shared_v = count_of<T, All>::value > 1 && pack_size_v<children_t<T>> != 0 &&
                                    (depends_on<T, Leaves>::value || ...);

template <class All, class... Leaves>
struct shared_impl;
template <class... N, class... Leaves>
struct shared_impl<types<N...>, Leaves...> {
  using type = decltype((types<>{} | ... | Pick<N, is_shared_v<N, types<N...>, Leaves...>>{}));
};
/// The node types that occur more than once in Y and lead to one of the leaves: where adjoints meet.
template <class Y, class... Leaves>
using shared_t = typename shared_impl<nodes_t<Y>, Leaves...>::type;

/// A walk towards `Target` (a leaf, or a shared node type) that stops at the nodes in `Shared`: their
/// adjoints are summed first and propagated from them once.
template <class Target, class Shared>
struct Walk {
  using target = Target;
  using shared = Shared;
  const Target* node;
};

template <class W, class E, class G>
auto backprop(const W& w, const E& e, const G& g) {
  if constexpr (std::is_same_v<E, typename W::target>) {
    if constexpr (variable<E>) {
      if (e.identity() != w.node->identity())
        throw error("grad: two different objects named '" + e.name() + "' and '" + w.node->name() +
                    "' share one tag type; each Input and Param needs its own tag");
    }
    return Pack<G>{{g}};
  } else if constexpr (has_type<E, typename W::shared>::value) {
    return Pack<>{};  // reached again from the shared node, with the sum of its adjoints
  } else {
    return backprop_node(w, e, g);
  }
}

template <class T, class C>
auto cast_to(const C& c) {
  if constexpr (std::is_same_v<typename C::value_type, T>)
    return c;
  else
    return cast<T>(c);
}

template <class T, class P>
auto sum_contributions(const P& t) {
  return unpack([](const auto&... c) { return (cast_to<T>(c) + ...); }, t);
}

// The first occurrence of node type T in e's tree.
template <class T, class E>
const T* find_first(const E& e) {
  if constexpr (std::is_same_v<T, E>) {
    return &e;
  } else if constexpr (has_type<T, nodes_t<E>>::value) {
    const T* found = nullptr;
    unpack([&](const auto&... c) { ((found = found ? found : find_first<T>(c)), ...); }, e.children());
    return found;
  } else {
    return nullptr;
  }
}

// Whether every occurrence of T in e's tree is the same node as `first` (equal parameters and leaves).
template <class T, class E>
bool all_equal(const E& e, const T& first) {
  if constexpr (std::is_same_v<T, E>) {
    return same_node(e, first);
  } else if constexpr (has_type<T, nodes_t<E>>::value) {
    return unpack([&](const auto&... c) { return (all_equal<T>(c, first) && ...); }, e.children());
  } else {
    return true;
  }
}

// A cached adjoint, held through a non-template base rather than shared_ptr<const void>: one class per
// shared node type instead of the control block and allocator instantiations make_shared brings. The base
// is at namespace scope on purpose: nvcc's front end does not finish std::unique_ptr over a class nested in
// a template whose arguments are expression types (see graph/program.hpp, StateBase).
struct HeldAdjointBase {
  virtual ~HeldAdjointBase() = default;
};
template <class A>
struct HeldAdjoint final : HeldAdjointBase {
  explicit HeldAdjoint(A a) : value(std::move(a)) {}
  /// value = make(), built in place (no copy of a large expression on the stack).
  template <class Make>
  HeldAdjoint(std::in_place_t, Make&& make) : value(make()) {}
  A value;
};

/// Reverse accumulation over the expression *graph*: the adjoint of a shared node type S is the sum of
/// what reaches it from the root and from the shared nodes above it; a leaf's gradient is what reaches it
/// from the root and from every shared node above it.
template <class Y, class Shared>
struct Accumulator {
  const Y& y;
  // The summed adjoint of each shared node type, built once: a shared node's adjoint feeds every node
  // below it, and rebuilding it for each of them would take time exponential in the depth of the sharing
  // (every layer of a network whose logits feed two terms of the loss is shared).
  mutable std::unordered_map<std::type_index, std::unique_ptr<HeldAdjointBase>> cache;

  // Contributions (a tuple of expressions) reaching node type / leaf Target, given its object `node`.
  template <class Target>
  auto contributions(const Target* node) const {
    const Walk<Target, Shared> w{node};
    const ScalarExpr<typename Y::value_type> one(1);
    return pack_cat(backprop(w, y, one), from_shared(node, Shared{}));
  }

  template <class Target, class... S>
  auto from_shared([[maybe_unused]] const Target* node, types<S...>) const {
    return pack_cat(from_one<Target, S>(node)...);
  }

  template <class S>
  using adjoint_t = decltype(sum_contributions<typename S::value_type>(
      std::declval<const Accumulator&>().template contributions<S>(static_cast<const S*>(nullptr))));

  template <class S>
  const adjoint_t<S>& adjoint(const S* s) const {
    const std::type_index key(typeid(S));
    using H = HeldAdjoint<adjoint_t<S>>;
    if (auto it = cache.find(key); it != cache.end()) return static_cast<const H*>(it->second.get())->value;
    auto* made = new H(sum_contributions<typename S::value_type>(contributions<S>(s)));
    std::unique_ptr<HeldAdjointBase> owner(made);
    cache.emplace(key, std::move(owner));
    return made->value;
  }

  template <class Target, class S>
  auto from_one(const Target* node) const {
    if constexpr (std::is_same_v<Target, S> || !depends_on<S, Target>::value) {
      return Pack<>{};
    } else if constexpr (pack_size_v<decltype(contributions<S>(static_cast<const S*>(nullptr)))> == 0) {
      return Pack<>{};
    } else {
      const S* s = find_first<S>(y);
      const Walk<Target, Shared> w{node};
      return backprop_node(w, *s, adjoint<S>(s));  // S's own rule, though S is shared
    }
  }
};

// The gradient of y with respect to `leaf` with adjoints summed at the node types in Shared.
template <class Shared, class Y, class L>
auto gradient_of(const Y& y, const L& leaf) {
  const Accumulator<Y, Shared> acc{y, {}};
  return gradient_of(acc, leaf);
}
template <class Shared, class Y, class L>
auto gradient_of(const Accumulator<Y, Shared>& acc, const L& leaf) {
  using T = typename L::value_type;
  auto parts = acc.template contributions<L>(&leaf);
  if constexpr (pack_size_v<decltype(parts)> == 0)
    // Every path to the leaf is piecewise constant: the gradient is zero everywhere.
    return BroadcastLikeExpr<ScalarExpr<T>, L>(ScalarExpr<T>(0), leaf);
  else
    return sum_contributions<T>(parts);  // every contribution already has the leaf's shape
}

template <class Y, class... S>
bool shared_nodes_equal(const Y& y, types<S...>) {
  return ([&] {
    const S* first = find_first<S>(y);
    return first && all_equal<S>(y, *first);
  }() && ...);
}

}  // namespace detail

/// The gradient of a scalar (rank-0) expression y with respect to each of the leaves (Inputs or Params), as
/// a tuple of expressions shaped and typed like the leaves: `auto [dW, db] = grad(loss, W, b);`. The
/// gradients are built at compile time and evaluated like any expression (eval(), assignment, compile()).
/// Gradients of gradients work wherever the rules used are differentiable (all elementwise ops).
/// @pre y has rank 0 and depends on every leaf (both compile-time checks).
/// @throws metagrad::error when two different Input/Param objects share a tag type.
template <expression Y, variable... Leaves>
auto grad(const Y& y, const Leaves&... leaves) {
  using YE = std::remove_cvref_t<Y>;
  static_assert(YE::rank == 0,
                "metagrad: grad(y, x...) needs a scalar y (rank 0): reduce it first, e.g. grad(sum(y), x) or "
                "grad(mean(loss), W)");
  static_assert(detail::is_floating_v<typename YE::value_type>,
                "metagrad: grad(y, x...) needs a floating-point y (float or double)");
  static_assert((detail::depends_on<YE, Leaves>::value && ...),
                "metagrad: grad(y, x...): y does not depend on one of the leaves x (check the leaves you asked "
                "for, and any stop_gradient on the way)");
  static_assert((detail::is_floating_v<typename Leaves::value_type> && ...),
                "metagrad: grad(y, x...): every leaf must have a floating-point dtype");
  using Shared = detail::shared_t<YE, Leaves...>;
  if constexpr (std::is_same_v<Shared, detail::types<>>) {
    return std::make_tuple(detail::gradient_of<Shared>(y, leaves)...);
  } else {
    // Summing adjoints where a subexpression is used twice is right when its uses are one value; the
    // check is made here, once, and the result picks the branch (see SelectExpr).
    const bool merge = detail::shared_nodes_equal(y, Shared{});
    auto pick = [&](const auto& leaf) {
      auto merged = detail::gradient_of<Shared>(y, leaf);
      auto separate = detail::gradient_of<detail::types<>>(y, leaf);
      return SelectExpr<decltype(merged), decltype(separate)>(merged, separate, merge);
    };
    return std::make_tuple(pick(leaves)...);
  }
}

/// grad() for graphs whose repeated subexpressions are one value, as in models built from layers: adjoints
/// are always summed where a subexpression is used twice, so each gradient has a single form. grad() also
/// builds the separate-propagation fallback for same-typed uses with different parameters (3 * x beside
/// 2 * x), which doubles the backward graph of a network whose logits feed two terms of the loss; here that
/// case is an error instead. Training steps use this form.
/// @throws metagrad::error when two uses of one subexpression type differ in parameters or leaves.
template <expression Y, variable... Leaves>
auto grad_merged(const Y& y, const Leaves&... leaves) {
  using YE = std::remove_cvref_t<Y>;
  static_assert(YE::rank == 0, "metagrad: grad_merged(y, x...) needs a scalar y (rank 0)");
  static_assert(detail::is_floating_v<typename YE::value_type>, "metagrad: grad_merged needs a floating-point y");
  static_assert((detail::depends_on<YE, Leaves>::value && ...),
                "metagrad: grad_merged(y, x...): y does not depend on one of the leaves x");
  static_assert((detail::is_floating_v<typename Leaves::value_type> && ...),
                "metagrad: grad_merged(y, x...): every leaf must have a floating-point dtype");
  using Shared = detail::shared_t<YE, Leaves...>;
  if constexpr (!std::is_same_v<Shared, detail::types<>>) {
    if (!detail::shared_nodes_equal(y, Shared{}))
      throw error(
          "grad_merged: a subexpression type is used twice with different parameters or leaves, so its adjoints "
          "cannot be summed; use grad(), which handles that case");
  }
  const detail::Accumulator<YE, Shared> acc{y, {}};  // one cache of shared adjoints for every leaf
  return std::make_tuple(detail::gradient_of(acc, leaves)...);
}

METAGRAD_NAMESPACE_END
