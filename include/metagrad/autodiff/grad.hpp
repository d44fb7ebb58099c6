// metagrad/autodiff/grad.hpp — grad(y, x1, x2, ...): reverse-mode differentiation done by the C++ compiler.
// The walk starts at the scalar y with adjoint 1 and descends the expression type; at every node the
// op's rule (ops/ for elementwise functors, below for views, reductions and matmul) maps the node's adjoint
// to the adjoints of the children that depend on the requested leaf. What reaches the leaf is summed. The
// results are ordinary expressions, fused and deduplicated like any other; nothing happens at run time
// but their evaluation. Include <metagrad/autodiff.hpp> instead.
#pragma once

#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "../core/error.hpp"
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

template <class E>
struct children_of {
  using type = std::tuple<>;
};
template <class E>
requires requires(const E& e) { e.children(); }
struct children_of<E> {
  using type = decltype(std::declval<const E&>().children());
};
template <class E>
using children_t = typename children_of<E>::type;

template <class E, class L>
struct depends_on;
template <class Tuple, class L>
struct any_depends;
template <class... C, class L>
struct any_depends<std::tuple<C...>, L> : std::bool_constant<(depends_on<std::remove_cvref_t<C>, L>::value || ...)> {};

/// Whether the value of expression type E changes with leaf L (through anything but stop_gradient).
template <class E, class L>
struct depends_on : any_depends<children_t<E>, L> {};
template <class L>
struct depends_on<L, L> : std::true_type {};
template <class A, class L>
struct depends_on<StopGradientExpr<A>, L> : std::false_type {};

template <class T>
inline constexpr bool is_floating_v = std::is_floating_point_v<T>;

// A child as rule inputs see it: a tensor becomes a leaf held by value (TensorRef when the node named the
// tensor, Const when it owned a copy), so derived expressions never refer to temporaries of the walk.
template <class A, class AE>
decltype(auto) operand_value(const AE& c) {
  if constexpr (is_tensor_v<AE>) {
    if constexpr (std::is_reference_v<A>)
      return TensorRef<typename AE::value_type, AE::rank>(c);
    else
      return Const<typename AE::value_type, AE::rank>(c);
  } else {
    return (c);
  }
}

template <class L, class E, class G>
auto backprop(const L& leaf, const E& e, const G& g);

// Continue into child `c` (closure type A) with adjoint `adj` when it depends on L.
template <class L, class A, class AE, class Adj>
auto into(const L& leaf, const AE& c, Adj&& adj) {
  if constexpr (depends_on<AE, L>::value)
    return backprop(leaf, c, std::forward<Adj>(adj));
  else
    return std::tuple<>();
}

// The adjoint of a broadcast operand: summed back to the operand's shape.
template <class Adj, class X>
auto sum_to(Adj&& adj, const X& x) {
  using XV = std::remove_cvref_t<X>;
  return SumToExpr<std::remove_cvref_t<Adj>, XV>(std::forward<Adj>(adj), x);
}

// --- rules for each node kind ---------------------------------------------------------------------

template <class L, class Op, class A, class G>
auto backprop_node(const L& leaf, const UnaryExpr<Op, A>& e, const G& g) {
  using AE = std::remove_cvref_t<A>;
  const auto& x = operand_value<A>(e.operand());
  if constexpr (requires { e.op().grad(g, x, e); }) {
    return into<L, A>(leaf, e.operand(), e.op().grad(g, x, e));
  } else if constexpr (requires { typename Op::target_type; }) {
    // cast: the adjoint converts back; a cast to or from an integer type has none.
    if constexpr (is_floating_v<typename Op::target_type> && is_floating_v<typename AE::value_type>)
      return into<L, A>(leaf, e.operand(), cast<typename AE::value_type>(g));
    else
      return std::tuple<>();
  } else {
    return std::tuple<>();  // piecewise constant (floor, sign, comparisons): the gradient is zero
  }
}

template <class L, class Op, class A, class B, class G>
auto backprop_node(const L& leaf, const BinaryExpr<Op, A, B>& e, const G& g) {
  using AE = std::remove_cvref_t<A>;
  using BE = std::remove_cvref_t<B>;
  const auto& a = operand_value<A>(e.lhs());
  const auto& b = operand_value<B>(e.rhs());
  if constexpr (requires { e.op().grad_lhs(g, a, b, e); }) {
    auto left = [&] {
      if constexpr (depends_on<AE, L>::value)
        return into<L, A>(leaf, e.lhs(), sum_to(e.op().grad_lhs(g, a, b, e), a));
      else
        return std::tuple<>();
    };
    auto right = [&] {
      if constexpr (depends_on<BE, L>::value)
        return into<L, B>(leaf, e.rhs(), sum_to(e.op().grad_rhs(g, a, b, e), b));
      else
        return std::tuple<>();
    };
    return std::tuple_cat(left(), right());
  } else {
    return std::tuple<>();
  }
}

template <class L, class Op, class C, class A, class B, class G>
auto backprop_node(const L& leaf, const TernaryExpr<Op, C, A, B>& e, const G& g) {
  using AE = std::remove_cvref_t<A>;
  using BE = std::remove_cvref_t<B>;
  const auto& c = operand_value<C>(e.first());
  const auto& a = operand_value<A>(e.second());
  const auto& b = operand_value<B>(e.third());
  auto second = [&] {
    if constexpr (depends_on<AE, L>::value)
      return into<L, A>(leaf, e.second(), sum_to(e.op().grad_second(g, c, a, b, e), a));
    else
      return std::tuple<>();
  };
  auto third = [&] {
    if constexpr (depends_on<BE, L>::value)
      return into<L, B>(leaf, e.third(), sum_to(e.op().grad_third(g, c, a, b, e), b));
    else
      return std::tuple<>();
  };
  return std::tuple_cat(second(), third());
}

template <class L, class A, int RO, class G>
auto backprop_node(const L& leaf, const AxisMapExpr<A, RO>& e, const G& g) {
  constexpr int RC = std::remove_cvref_t<A>::rank;
  // Child axis c came from output axis i where from[i] == c; a squeezed child axis (extent 1) comes back as
  // a new axis; an inserted output axis (extent 1) is dropped.
  Array<int, RC> inv{};
  for (int c = 0; c < RC; ++c) inv[c] = -1;
  for (int i = 0; i < RO; ++i)
    if (e.axes()[i] >= 0) inv[e.axes()[i]] = i;
  using M = AxisMapExpr<G, RC>;
  return into<L, A>(leaf, e.operand(), M(g, inv, typename M::unchecked_t{}));
}

template <class L, class A, class G>
auto backprop_node(const L& leaf, const SliceExpr<A>& e, const G& g) {
  using X = std::remove_cvref_t<decltype(operand_value<A>(e.operand()))>;
  return into<L, A>(leaf, e.operand(),
                    UnsliceExpr<G, X>(g, operand_value<A>(e.operand()), e.starts(), e.steps(), e.shape()));
}

template <class L, class A, int RO, class G>
auto backprop_node(const L& leaf, const ReshapeExpr<A, RO>& e, const G& g) {
  using X = std::remove_cvref_t<decltype(operand_value<A>(e.operand()))>;
  return into<L, A>(leaf, e.operand(), ReshapeLikeExpr<G, X>(g, operand_value<A>(e.operand())));
}

template <class L, class A, int RO, class G>
auto backprop_node(const L& leaf, const BroadcastExpr<A, RO>& e, const G& g) {
  return into<L, A>(leaf, e.operand(), sum_to(g, operand_value<A>(e.operand())));
}

template <class L, class A, class X, class G>
auto backprop_node(const L& leaf, const BroadcastLikeExpr<A, X>& e, const G& g) {
  return into<L, A>(leaf, e.operand(), sum_to(g, e.operand()));
}

template <class L, class G2, class X, class G>
auto backprop_node(const L& leaf, const SumToExpr<G2, X>& e, const G& g) {
  return into<L, G2>(leaf, e.operand(), BroadcastLikeExpr<G, G2>(g, e.operand()));
}

template <class L, class G2, class X, class G>
auto backprop_node(const L& leaf, const UnsliceExpr<G2, X>& e, const G& g) {
  return into<L, G2>(leaf, e.operand(), SliceExpr<G>(g, e.starts(), e.steps(), e.operand().shape()));
}

template <class L, class G2, class X, class G>
auto backprop_node(const L& leaf, const ReshapeLikeExpr<G2, X>& e, const G& g) {
  return into<L, G2>(leaf, e.operand(), ReshapeLikeExpr<G, G2>(g, e.operand()));
}

// Reductions: the adjoint of each output element goes back to the elements it combined.
template <int K, int R>
Array<int, K> axes_of(const Array<bool, R>& mask) {
  Array<int, K> a{};
  for (int d = 0, i = 0; d < R; ++d)
    if (mask[d]) a[i++] = d;
  return a;
}

template <class L, class Red, class A, int K, bool Keep, class G>
auto backprop_node(const L& leaf, const ReduceExpr<Red, A, K, Keep>& e, const G& g) {
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
    return std::tuple<>();
  } else if constexpr (std::is_same_v<Red, ops::SumReducer>) {
    return into<L, A>(leaf, e.operand(), expand(g));
  } else if constexpr (std::is_same_v<Red, ops::MeanReducer>) {
    return into<L, A>(leaf, e.operand(), expand(g) / ReduceCountExpr<F, XV>(x, mask));
  } else if constexpr (std::is_same_v<Red, ops::ProdReducer>) {
    return into<L, A>(leaf, e.operand(), expand(g) * expand(e) / x);
  } else if constexpr (std::is_same_v<Red, ops::MaxReducer> || std::is_same_v<Red, ops::MinReducer>) {
    // Ties share the adjoint evenly: each maximum gets g / (number of maxima).
    auto hit = cast<T>(x == expand(e));
    auto count = ReduceExpr<ops::SumReducer, decltype(hit), K, Keep>(ops::SumReducer{}, hit, axes);
    return into<L, A>(leaf, e.operand(), expand(g) * hit / expand(count));
  } else if constexpr (std::is_same_v<Red, ops::VarReducer> || std::is_same_v<Red, ops::StdReducer>) {
    auto centred = x - expand(ReduceExpr<ops::MeanReducer, XV, K, Keep>(ops::MeanReducer{}, x, axes));
    auto n = ReduceCountExpr<F, XV>(x, mask, e.reducer().ddof);
    if constexpr (std::is_same_v<Red, ops::VarReducer>)
      return into<L, A>(leaf, e.operand(), expand(g) * 2 * centred / n);
    else
      return into<L, A>(leaf, e.operand(), expand(g) * centred / (n * expand(e)));
  } else if constexpr (std::is_same_v<Red, ops::LogSumExpReducer>) {
    return into<L, A>(leaf, e.operand(), expand(g) * exp(x - expand(e)));
  } else if constexpr (std::is_same_v<Red, ops::NormReducer>) {
    // d ||x||_p = sign(x) (|x| / ||x||)^(p-1); p = 0 (a count) has gradient 0.
    const double p = e.reducer().p;
    return into<L, A>(leaf, e.operand(),
                      expand(g) * sign(x) * pow(abs(x) / expand(e), p == 0 ? 0.0 : p - 1) * (p == 0 ? 0.0 : 1.0));
  } else {
    return std::tuple<>();  // argmax, argmin, all, any: piecewise constant
  }
}

template <class L, class A, class B, class G>
auto backprop_node(const L& leaf, const MatmulExpr<A, B>& e, const G& g) {
  using AE = std::remove_cvref_t<A>;
  using BE = std::remove_cvref_t<B>;
  const auto& a = operand_value<A>(e.lhs());
  const auto& b = operand_value<B>(e.rhs());
  // C = alpha A B: dA = alpha G B^T, dB = alpha A^T G, as GEMMs with transpose flags (no copies), summed
  // over broadcast batch axes.
  auto left = [&] {
    if constexpr (depends_on<AE, L>::value)
      return into<L, A>(leaf, e.lhs(), sum_to(matmul(g, transpose(b, -1, -2), e.alpha()), a));
    else
      return std::tuple<>();
  };
  auto right = [&] {
    if constexpr (depends_on<BE, L>::value)
      return into<L, B>(leaf, e.rhs(), sum_to(matmul(transpose(a, -1, -2), g, e.alpha()), b));
    else
      return std::tuple<>();
  };
  return std::tuple_cat(left(), right());
}

template <class L, class E, class G>
auto backprop(const L& leaf, const E& e, const G& g) {
  if constexpr (std::is_same_v<E, L>) {
    if (e.identity() != leaf.identity())
      throw error("grad: two different objects named '" + e.name() + "' and '" + leaf.name() +
                  "' share one tag type; each Input and Param needs its own tag");
    return std::tuple<G>(g);
  } else {
    return backprop_node(leaf, e, g);
  }
}

template <class T, class C>
auto cast_to(const C& c) {
  if constexpr (std::is_same_v<typename C::value_type, T>)
    return c;
  else
    return cast<T>(c);
}

template <class T, class... C>
auto sum_contributions(const std::tuple<C...>& t) {
  return std::apply([](const auto&... c) { return (cast_to<T>(c) + ...); }, t);
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
  const ScalarExpr<typename YE::value_type> one(1);
  return std::make_tuple([&](const auto& leaf) {
    using LE = std::remove_cvref_t<decltype(leaf)>;
    using T = typename LE::value_type;
    auto parts = detail::backprop(leaf, y, one);
    if constexpr (std::tuple_size_v<decltype(parts)> == 0)
      // Every path to the leaf is piecewise constant: the gradient is zero everywhere.
      return BroadcastLikeExpr<ScalarExpr<T>, LE>(ScalarExpr<T>(0), leaf);
    else
      return BroadcastLikeExpr<decltype(detail::sum_contributions<T>(parts)), LE>(
          detail::sum_contributions<T>(parts), leaf);
  }(leaves)...);
}

METAGRAD_NAMESPACE_END
