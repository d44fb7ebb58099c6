// metagrad/expr/dropout.hpp — dropout as an elementwise node. Whether element i is kept is a pure function
// of (seed, stream, step, i) through the Philox generator (core/philox.hpp), so the mask is never stored:
// the backward pass recomputes it (the node's adjoint is the same mask applied to the incoming gradient), it
// is the same for any thread count, and a DropoutKey's step counter, advanced once per training step, gives
// every step a fresh mask. Include <metagrad/expr.hpp> instead.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/philox.hpp"
#include "../core/shape.hpp"
#include "node.hpp"
#include "plan.hpp"

METAGRAD_NAMESPACE_BEGIN

/// The identity of one dropout site's random masks: a seed, a stream unique to the site (a layer), and a
/// step counter shared by every copy of the key. The training loop calls advance() once per step, so the
/// forward and backward passes of a step see one mask and the next step another.
/// @code
///   DropoutKey key(/*seed=*/1234, /*stream=*/3);       // stream: e.g. the layer's index
///   auto h = dropout(relu(matmul(x, W)), 0.5, key);    // in the graph (training)
///   ... program.run(); key.advance();                  // once per step
/// @endcode
class DropoutKey {
 public:
  /// @pre stream < 2^32 (the step fills the stream word's other half). @throws metagrad::error otherwise.
  explicit DropoutKey(std::uint64_t seed = 0x5eed, std::uint64_t stream = 0)
      : seed_(seed), stream_(stream), step_(std::make_shared<std::uint64_t>(0)) {
    if (stream >> 32) throw error("DropoutKey: stream " + std::to_string(stream) + " does not fit in 32 bits");
  }
  std::uint64_t seed() const { return seed_; }
  std::uint64_t stream() const { return stream_; }
  /// The current step (shared by all copies of this key).
  std::uint64_t step() const { return *step_; }
  /// Moves every copy of the key to the next step (a new mask).
  void advance() const { ++*step_; }
  /// Sets the step, e.g. when resuming from a checkpoint.
  void set_step(std::uint64_t s) const { *step_ = s; }
  /// The Philox stream of the current step: stream in the high half of the stream word, the step (modulo
  /// 2^32, so masks repeat after four billion steps) in the low half.
  PhiloxStream philox() const { return PhiloxStream{seed_, (stream_ << 32) | (*step_ & 0xFFFFFFFFu)}; }
  /// Whether two keys are the same site (copies of one key).
  bool same_site(const DropoutKey& o) const { return seed_ == o.seed_ && stream_ == o.stream_ && step_ == o.step_; }

 private:
  std::uint64_t seed_;
  std::uint64_t stream_;
  std::shared_ptr<std::uint64_t> step_;
};

/// Plan of dropout: the child's element, scaled by 1 / (1 - p) where the element is kept, else 0. Element
/// i of the node's own shape is kept when the i-th 32-bit Philox word is >= p 2^32, so P(keep) = 1 - p up to
/// 2^-32. `active` false (evaluation, or p = 0) passes the child through without drawing.
template <class C, class T>
struct DropoutPlan {
  using value_type = T;
  static constexpr int rank = C::rank;
  C c;
  PhiloxStream stream;
  Array<index_t, rank> strides;  // contiguous strides of the node's own shape (0 on broadcast axes)
  std::uint64_t threshold;       // in [0, 2^32]: 2^32 drops everything
  T scale;
  bool active;
  bool flat_ok;

  METAGRAD_HD METAGRAD_INLINE bool kept(std::uint64_t i) const { return rand_u32(stream, i) >= threshold; }
  template <class I>
  METAGRAD_HD METAGRAD_INLINE T at(const Array<I, rank>& idx) const {
    const T v = static_cast<T>(c.at(idx));
    if (!active) return v;
    // A select, not a product with the mask: p = 1 has scale 0 and no inf, and a dropped NaN or inf is 0.
    return kept(static_cast<std::uint64_t>(detail::dot_index(idx, strides))) ? v * scale : T(0);
  }
  template <class I>
  METAGRAD_HD METAGRAD_INLINE T flat(I i) const {
    const T v = static_cast<T>(c.flat(i));
    if (!active) return v;
    return kept(static_cast<std::uint64_t>(i)) ? v * scale : T(0);
  }
  bool is_flat() const { return flat_ok && c.is_flat(); }
  template <class F>
  void visit_leaves(F&& f, bool remapped, const Array<index_t, rank>& shape) const {
    c.visit_leaves(f, remapped, shape);
  }
};

/// dropout(a): a's elements, each kept with probability 1 - p and scaled by 1 / (1 - p), else 0. The mask
/// depends on the key's (seed, stream, current step) and on each element's row-major position in a's shape,
/// which is read when the node is evaluated (a may be an Input bound to any batch size).
template <class A>
class DropoutExpr : public ExprBase<DropoutExpr<A>> {
  using AE = std::remove_cvref_t<A>;

 public:
  using value_type = typename AE::value_type;
  static constexpr int rank = AE::rank;
  using self_differentiating_tag = void;
  static_assert(floating_dtype<value_type>, "metagrad: dropout needs a float or double expression");

  /// @pre 0 <= p <= 1 (checked by dropout()).
  DropoutExpr(A a, double p, DropoutKey key, bool training)
      : a_(std::forward<A>(a)), p_(p), key_(std::move(key)), training_(training) {}

  Shape<rank> shape() const { return a_.shape(); }
  const AE& operand() const { return a_; }
  double p() const { return p_; }
  const DropoutKey& key() const { return key_; }
  bool training() const { return training_; }
  auto children() const { return detail::refs(a_); }
  bool same_params(const DropoutExpr& o) const {
    return p_ == o.p_ && training_ == o.training_ && key_.same_site(o.key_);
  }

  template <int RT>
  auto lower(const Shape<RT>& target) const {
    const auto own = a_.shape();
    bool same = false;
    const auto st = detail::broadcast_strides(own, contiguous_strides(own), target, same);
    const bool active = training_ && p_ > 0.0;
    // p 2^32 rounded down: exact at p = 0 (keep all) and p = 1 (2^32, drop all).
    const auto threshold = static_cast<std::uint64_t>(p_ * 4294967296.0);
    const value_type scale = p_ < 1.0 ? static_cast<value_type>(1.0 / (1.0 - p_)) : value_type(0);
    using CP = plan_t<AE, RT>;
    return DropoutPlan<CP, value_type>{lower_expr(a_, target), key_.philox(), st, threshold, scale, active, same};
  }

  /// The adjoint: the same mask and scale applied to g (g has a's shape, so positions match).
  template <class G>
  auto backward(std::integral_constant<int, 0>, const G& g) const {
    return DropoutExpr<G>(g, p_, key_, training_);
  }

 private:
  A a_;
  double p_;
  DropoutKey key_;
  bool training_;
};

/// Dropout with probability p: in training, each element of x is zeroed with probability p and the others
/// are scaled by 1 / (1 - p); otherwise (training = false), or with p = 0, it is x unchanged. p = 1 gives
/// zeros. The mask is a function of the key's current step: call key.advance() once per training step.
/// @throws metagrad::error for p outside [0, 1].
template <expression A>
auto dropout(A&& x, double p, const DropoutKey& key, bool training = true) {
  if (!(p >= 0.0 && p <= 1.0))
    throw error("dropout: the drop probability p must lie in [0, 1], got " + std::to_string(p));
  return DropoutExpr<closure_t<A&&>>(std::forward<A>(x), p, key, training);
}

METAGRAD_NAMESPACE_END
