// metagrad/expr/random.hpp — random tensors as elementwise expressions: uniform, normal and integer
// draws from the counter-based Philox generator. Element i is a pure function of (seed, stream, i), so a
// draw is the same for any thread count, on CPU and GPU, and fuses into the expression that uses it.
// Include <metagrad/expr.hpp> instead.
#pragma once

#include <atomic>
#include <cstdint>

#include "../core/creation.hpp"
#include "../core/philox.hpp"
#include "node.hpp"
#include "plan.hpp"

METAGRAD_NAMESPACE_BEGIN

/// A source of independent random streams: a seed and a counter of streams handed out. Each random
/// expression takes the next stream, so successive draws differ and a fixed seed replays them all.
class Generator {
 public:
  explicit Generator(std::uint64_t seed = 0x5eed) : seed_(seed) {}
  /// Restarts the sequence of streams at `seed`.
  void manual_seed(std::uint64_t seed) {
    seed_ = seed;
    next_ = 0;
  }
  std::uint64_t seed() const { return seed_; }
  /// A fresh stream of this generator's seed.
  PhiloxStream next_stream() { return PhiloxStream{seed_, next_.fetch_add(1, std::memory_order_relaxed)}; }

 private:
  std::uint64_t seed_;
  std::atomic<std::uint64_t> next_{0};
};

/// The process-wide generator used when none is passed.
inline Generator& default_generator() {
  static Generator g;
  return g;
}
/// Seeds the default generator (torch.manual_seed).
inline void manual_seed(std::uint64_t seed) { default_generator().manual_seed(seed); }

enum class RandomKind : unsigned char { uniform, normal, integer };

/// Plan of a random draw: element = f(stream, row-major index of the element in the draw's own shape).
template <class T, int R>
struct RandomPlan {
  using value_type = T;
  static constexpr int rank = R;
  PhiloxStream stream;
  Array<index_t, R> strides;  // contiguous strides of the draw's shape (0 on broadcast axes)
  RandomKind kind;
  bool flat_ok;
  double a, b;          // uniform: [a, b); normal: mean a, standard deviation b
  std::int64_t lo, hi;  // integer: [lo, hi), kept exact beyond 2^53

  METAGRAD_HD METAGRAD_INLINE T draw(std::uint64_t i) const {
    if constexpr (std::is_floating_point_v<T>) {
      if (kind == RandomKind::normal) return static_cast<T>(a) + static_cast<T>(b) * rand_normal<T>(stream, i);
      return static_cast<T>(a) + static_cast<T>(b - a) * rand_uniform<T>(stream, i);
    } else {
      return static_cast<T>(rand_int(stream, i, lo, hi));
    }
  }
  template <class I>
  METAGRAD_HD METAGRAD_INLINE T at(const Array<I, R>& idx) const {
    return draw(static_cast<std::uint64_t>(detail::dot_index(idx, strides)));
  }
  template <class I>
  METAGRAD_HD METAGRAD_INLINE T flat(I i) const {
    return draw(static_cast<std::uint64_t>(i));
  }
  bool is_flat() const { return flat_ok; }
  template <class F>
  void visit_leaves(F&&, bool, const Array<index_t, R>&) const {}
};

/// A random draw of a fixed shape, as an expression. Evaluating it twice gives the same values.
template <dtype T, int N>
class RandomExpr : public ExprBase<RandomExpr<T, N>> {
 public:
  using value_type = T;
  static constexpr int rank = N;
  RandomExpr(Shape<N> shape, PhiloxStream stream, RandomKind kind, double a, double b, std::int64_t lo = 0,
             std::int64_t hi = 0)
      : shape_(shape), stream_(stream), kind_(kind), a_(a), b_(b), lo_(lo), hi_(hi) {}
  Shape<N> shape() const { return shape_; }
  template <int RT>
  RandomPlan<T, RT> lower(const Shape<RT>& target) const {
    bool same = false;
    const auto st = detail::broadcast_strides(shape_, contiguous_strides(shape_), target, same);
    return {stream_, st, kind_, same, a_, b_, lo_, hi_};
  }

 private:
  Shape<N> shape_;
  PhiloxStream stream_;
  RandomKind kind_;
  double a_, b_;
  std::int64_t lo_, hi_;
};

/// Uniform draws in [low, high), lazily (fuses into the expression that uses them).
template <dtype T = float, int N>
RandomExpr<T, N> uniform(const index_t (&dims)[N], double low = 0.0, double high = 1.0,
                         Generator& gen = default_generator()) {
  static_assert(std::is_floating_point_v<T>, "metagrad: uniform draws need a floating dtype; use randint");
  return {detail::shape_from(dims), gen.next_stream(), RandomKind::uniform, low, high};
}
/// Normal draws with the given mean and standard deviation, lazily.
template <dtype T = float, int N>
RandomExpr<T, N> normal(const index_t (&dims)[N], double mean = 0.0, double stddev = 1.0,
                        Generator& gen = default_generator()) {
  static_assert(std::is_floating_point_v<T>, "metagrad: normal draws need a floating dtype");
  return {detail::shape_from(dims), gen.next_stream(), RandomKind::normal, mean, stddev};
}

/// A tensor of uniform draws in [0, 1) (torch.rand).
template <dtype T = float, int N>
Tensor<T, N> rand(const index_t (&dims)[N], Generator& gen = default_generator()) {
  return Tensor<T, N>(uniform<T>(dims, 0.0, 1.0, gen));
}
/// A tensor of standard normal draws (torch.randn).
template <dtype T = float, int N>
Tensor<T, N> randn(const index_t (&dims)[N], Generator& gen = default_generator()) {
  return Tensor<T, N>(normal<T>(dims, 0.0, 1.0, gen));
}
/// A tensor of integers drawn uniformly from [low, high) (torch.randint). @throws shape_error if high <= low.
template <dtype T = std::int64_t, int N>
Tensor<T, N> randint(std::int64_t low, std::int64_t high, const index_t (&dims)[N],
                     Generator& gen = default_generator()) {
  static_assert(integer_dtype<T>, "metagrad: randint makes int32 or int64 tensors");
  if (high <= low)
    throw shape_error("randint: empty range [" + std::to_string(low) + ", " + std::to_string(high) + ")");
  return Tensor<T, N>(
      RandomExpr<T, N>(detail::shape_from(dims), gen.next_stream(), RandomKind::integer, 0.0, 0.0, low, high));
}

METAGRAD_NAMESPACE_END
