// metagrad/nn/norm.hpp — normalisation and regularisation layers: BatchNorm (1d/2d: per-channel statistics
// over every axis but 1, running statistics kept as buffers and updated inside the compiled training step),
// LayerNorm, Dropout (mask recomputed in the backward pass from a counter-based key) and Embedding. State
// dict keys and initial values as PyTorch's (weight, bias, running_mean, running_var, num_batches_tracked).
// Include <metagrad/nn.hpp> instead.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "../autodiff/nodes.hpp"
#include "../core/creation.hpp"
#include "../expr/dropout.hpp"
#include "../expr/gather.hpp"
#include "../expr/norm.hpp"
#include "init.hpp"
#include "layer_base.hpp"
#include "module.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace nn {

template <class Tag, class T>
class BatchNorm;

struct BatchNormOptions {
  double eps = 1e-5;
  double momentum = 0.1;
};

template <class T = float>
struct BatchNormSpec {
  index_t num_features;
  BatchNormOptions options;
  template <class Tag>
  using layer = BatchNorm<Tag, T>;
};

/// Batch normalisation over [N, C] or [N, C, ...] input (torch.nn.BatchNorm1d/2d with affine = true and
/// track_running_stats = true). Train mode normalises with the batch statistics and the training step
/// updates running = (1 - momentum) running + momentum batch_stat (unbiased variance); eval mode uses the
/// running statistics.
template <class T = float>
BatchNormSpec<T> batch_norm2d(index_t num_features, BatchNormOptions o = {}) {
  return {num_features, o};
}
template <class T = float>
BatchNormSpec<T> batch_norm1d(index_t num_features, BatchNormOptions o = {}) {
  return {num_features, o};
}

template <class Tag, class T = float>
class BatchNorm : public LayerBase {
 public:
  using weight_type = Param<RoleTag<Tag, role::weight>, T, 1>;
  using bias_type = Param<RoleTag<Tag, role::bias>, T, 1>;

  explicit BatchNorm(const BatchNormSpec<T>& s)
      : spec_(s),
        weight_("weight", ones<T>(Shape<1>{{s.num_features}})),
        bias_("bias", zeros<T>(Shape<1>{{s.num_features}})),
        mean_(zeros<T>(Shape<1>{{s.num_features}})),
        var_(ones<T>(Shape<1>{{s.num_features}})),
        count_(Shape<0>{}) {
    if (s.num_features <= 0) throw error("batch_norm layer: num_features must be positive");
    if (s.options.momentum < 0 || s.options.momentum > 1) throw error("batch_norm layer: momentum must be in [0, 1]");
    count_.data()[0] = 0;
  }

  /// Train mode: batch statistics; eval mode: running statistics. The mode is read when the expression is
  /// built and becomes a run-time choice between the two forms (only the chosen one is evaluated). A
  /// gradient through it carries both forms' adjoints: build training graphs with forward(x, train_mode)
  /// (nn::forward_in), as the Trainer does.
  template <class X>
  auto operator()(const X& x) const {
    auto train = forward(x, train_mode);
    auto eval = forward(x, eval_mode);
    return SelectExpr<decltype(train), decltype(eval)>(std::move(train), std::move(eval), training_);
  }
  /// The training form alone: normalised with the batch statistics (one batch-norm node).
  template <class X>
  auto forward(const X& x, TrainMode) const {
    return batch_norm(x, weight_, bias_, spec_.options.eps);
  }
  /// The evaluation form alone: normalised with the running statistics (one fused elementwise pass).
  template <class X>
  auto forward(const X& x, EvalMode) const {
    return batch_norm_eval(x, Const<T, 1>(mean_), Const<T, 1>(var_), weight_, bias_, spec_.options.eps);
  }

  /// In train mode: the running statistics' new values, compiled into the training step.
  template <class X>
  auto updates(const X& x) const {
    const T m = static_cast<T>(spec_.options.momentum);
    if (!training_) throw error("batch_norm layer: updates() is for train mode");
    // The statistics of the very node operator() normalises with: a compiled step computes them once.
    auto [mean, var] = batch_norm_stats(x, weight_, bias_, spec_.options.eps);
    return std::make_tuple(state_update(mean_, Const<T, 1>(mean_) * (T(1) - m) + std::move(mean) * m),
                           state_update(var_, Const<T, 1>(var_) * (T(1) - m) + std::move(var) * m),
                           state_update(count_, Const<std::int64_t, 0>(count_) + std::int64_t{1}));
  }

  const weight_type& weight() const { return weight_; }
  const bias_type& bias() const { return bias_; }
  const Tensor<T, 1>& running_mean() const { return mean_; }
  const Tensor<T, 1>& running_var() const { return var_; }
  std::int64_t num_batches_tracked() const { return count_.item(); }

  /// Moves the parameters and the running statistics to `device`, in place (see nn::to_device).
  /// Expressions and training steps built before the move still read the old running statistics.
  void to(Device device) {
    move_params(params(), device);
    mean_ = mean_.to(device);
    var_ = var_.to(device);
    count_ = count_.to(device);
  }

  auto params() const { return std::make_tuple(weight_, bias_); }
  void collect_state(std::vector<StateEntry>& out) const {
    out.push_back(state_entry(weight_.name(), weight_.value(), true));
    out.push_back(state_entry(bias_.name(), bias_.value(), true));
    out.push_back(state_entry(prefix_ + "running_mean", mean_, false));
    out.push_back(state_entry(prefix_ + "running_var", var_, false));
    out.push_back(state_entry(prefix_ + "num_batches_tracked", count_, false));
  }
  void set_prefix(const std::string& p) {
    prefix_ = p;
    prefix_params(params(), p);
  }
  std::string describe() const {
    return "BatchNorm(" + std::to_string(spec_.num_features) + ", eps=" + std::to_string(spec_.options.eps) +
           ", momentum=" + std::to_string(spec_.options.momentum) + ")";
  }

 private:
  BatchNormSpec<T> spec_;
  weight_type weight_;
  bias_type bias_;
  Tensor<T, 1> mean_;
  Tensor<T, 1> var_;
  Tensor<std::int64_t, 0> count_;
  std::string prefix_;
};

/// Layer normalisation over the trailing axes of `shape` (torch.nn.LayerNorm with elementwise affine):
/// weight (ones) and bias (zeros) shaped like the normalised axes.
template <class Tag, class T, int K>
class LayerNorm;

template <class T = float, int K = 1>
struct LayerNormSpec {
  Shape<K> normalized_shape;
  double eps = 1e-5;
  template <class Tag>
  using layer = LayerNorm<Tag, T, K>;
};
/// layer_norm(D): normalise the last axis of size D; layer_norm<float, 2>({H, W}) the last two.
template <class T = float, int K = 1>
LayerNormSpec<T, K> layer_norm(const Shape<K>& normalized_shape, double eps = 1e-5) {
  return {normalized_shape, eps};
}
template <class T = float>
LayerNormSpec<T, 1> layer_norm(index_t features, double eps = 1e-5) {
  return {Shape<1>{{features}}, eps};
}

template <class Tag, class T = float, int K = 1>
class LayerNorm : public LayerBase {
 public:
  using weight_type = Param<RoleTag<Tag, role::weight>, T, K>;
  using bias_type = Param<RoleTag<Tag, role::bias>, T, K>;
  explicit LayerNorm(const LayerNormSpec<T, K>& s)
      : spec_(s), weight_("weight", ones<T>(s.normalized_shape)), bias_("bias", zeros<T>(s.normalized_shape)) {}
  template <class X>
  auto operator()(X&& x) const {
    return metagrad::layer_norm(std::forward<X>(x), weight_, bias_, spec_.eps);
  }
  auto params() const { return std::make_tuple(weight_, bias_); }
  void collect_state(std::vector<StateEntry>& out) const {
    out.push_back(state_entry(weight_.name(), weight_.value(), true));
    out.push_back(state_entry(bias_.name(), bias_.value(), true));
  }
  void set_prefix(const std::string& p) { prefix_params(params(), p); }
  std::string describe() const { return "LayerNorm(" + to_string(spec_.normalized_shape) + ")"; }

 private:
  LayerNormSpec<T, K> spec_;
  weight_type weight_;
  bias_type bias_;
};

namespace detail {
// Each dropout layer gets its own Philox stream, so two layers never share a mask.
inline std::uint64_t next_dropout_stream() {
  static std::atomic<std::uint64_t> n{0};
  return n.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace detail

/// Dropout (torch.nn.Dropout): in train mode each element is zeroed with probability p and the others
/// scaled by 1 / (1 - p); eval mode is the identity. The mask is a pure function of (seed, layer, step,
/// element), recomputed by the backward pass; the training step advances the step after each update.
class Dropout : public LayerBase {
 public:
  template <class Tag>
  using layer = Dropout;
  explicit Dropout(double p = 0.5) : p_(p), key_(default_generator().seed(), detail::next_dropout_stream()) {
    if (!(p >= 0 && p <= 1)) throw error("dropout layer: p = " + std::to_string(p) + " must be in [0, 1]");
  }
  template <class X>
  auto operator()(X&& x) const {
    return metagrad::dropout(std::forward<X>(x), p_, key_, training_);
  }
  /// In train_mode: dropout whatever train(bool) says; in eval_mode: the identity.
  template <class X>
  auto forward(X&& x, TrainMode) const {
    return metagrad::dropout(std::forward<X>(x), p_, key_, true);
  }
  template <class X>
  auto forward(X&& x, EvalMode) const {
    return metagrad::dropout(std::forward<X>(x), p_, key_, false);
  }
  /// Moves to the next step's mask (the training step calls it).
  void advance() const { key_.advance(); }
  const DropoutKey& key() const { return key_; }
  std::string describe() const { return "Dropout(p=" + std::to_string(p_).substr(0, 4) + ")"; }

 private:
  double p_;
  DropoutKey key_;
};
inline Dropout dropout(double p = 0.5) { return Dropout(p); }

template <class Tag, class T>
class Embedding;

template <class T = float>
struct EmbeddingSpec {
  index_t num_embeddings, embedding_dim;
  std::optional<index_t> padding_idx;
  template <class Tag>
  using layer = Embedding<Tag, T>;
};
/// A lookup table [num_embeddings, embedding_dim] initialised N(0, 1) (torch.nn.Embedding); the row
/// padding_idx starts at zero and gets no gradient.
template <class T = float>
EmbeddingSpec<T> embedding(index_t num_embeddings, index_t embedding_dim,
                           std::optional<index_t> padding_idx = std::nullopt) {
  return {num_embeddings, embedding_dim, padding_idx};
}

template <class Tag, class T = float>
class Embedding : public LayerBase {
 public:
  using weight_type = Param<RoleTag<Tag, role::weight>, T, 2>;
  explicit Embedding(const EmbeddingSpec<T>& s) : spec_(s), weight_("weight") {
    if (s.num_embeddings <= 0 || s.embedding_dim <= 0) throw error("embedding layer: sizes must be positive");
    if (s.padding_idx && (*s.padding_idx < 0 || *s.padding_idx >= s.num_embeddings))
      throw error("embedding layer: padding_idx " + std::to_string(*s.padding_idx) + " is out of range [0, " +
                  std::to_string(s.num_embeddings) + ")");
    Tensor<T, 2> w({s.num_embeddings, s.embedding_dim});
    normal_(w, 0.0, 1.0);
    if (s.padding_idx)
      for (index_t j = 0; j < s.embedding_dim; ++j) w.data()[*s.padding_idx * s.embedding_dim + j] = T(0);
    weight_.set(w);
  }
  template <class X>
  auto operator()(X&& indices) const {
    return metagrad::embedding(weight_, std::forward<X>(indices), spec_.padding_idx);
  }
  const weight_type& weight() const { return weight_; }
  auto params() const { return std::make_tuple(weight_); }
  void collect_state(std::vector<StateEntry>& out) const {
    out.push_back(state_entry(weight_.name(), weight_.value(), true));
  }
  void set_prefix(const std::string& p) { prefix_params(params(), p); }
  std::string describe() const {
    return "Embedding(" + std::to_string(spec_.num_embeddings) + ", " + std::to_string(spec_.embedding_dim) + ")";
  }

 private:
  EmbeddingSpec<T> spec_;
  weight_type weight_;
};

}  // namespace nn
METAGRAD_NAMESPACE_END
