// metagrad/io/dataset.hpp — TensorDataset (inputs and integer labels held in memory, first axis = sample)
// and DataLoader, which cuts it into float batches for training: optional shuffling that is reproducible
// per (seed, epoch), drop_last, and a normalisation fused into the byte-to-float conversion, prepared by a
// background thread while the caller trains. Include <metagrad/io.hpp> instead.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "../backend/cpu.hpp"
#include "../core/error.hpp"
#include "../core/philox.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"
#include "../expr/functions.hpp"

METAGRAD_NAMESPACE_BEGIN

/// Input dtypes a TensorDataset holds: raw bytes (images) or float features.
template <class T>
concept dataset_dtype = std::is_same_v<T, std::uint8_t> || std::is_same_v<T, float>;

/// Samples in memory: inputs [N, ...] (uint8 or float; any layout, views included) and labels [N] (int64).
/// Holding the tensors shares their storage; nothing is copied.
template <dataset_dtype T, int R>
class TensorDataset {
  static_assert(R >= 1, "metagrad: TensorDataset inputs need a sample axis (rank >= 1)");

 public:
  /// @throws shape_error when inputs and labels hold different numbers of samples; error when either is
  /// empty (default-constructed).
  TensorDataset(Tensor<T, R> inputs, Tensor<std::int64_t, 1> labels)
      : inputs_(std::move(inputs)), labels_(std::move(labels)) {
    if (!inputs_.defined() || !labels_.defined())
      throw error("TensorDataset: inputs and labels must be defined tensors");
    if (inputs_.shape()[0] != labels_.shape()[0])
      throw shape_error("TensorDataset: inputs " + to_string(inputs_.shape()) + " and labels " +
                        to_string(labels_.shape()) + " hold different numbers of samples");
  }

  index_t size() const { return inputs_.shape()[0]; }
  const Tensor<T, R>& inputs() const { return inputs_; }
  const Tensor<std::int64_t, 1>& labels() const { return labels_; }

 private:
  Tensor<T, R> inputs_;
  Tensor<std::int64_t, 1> labels_;
};

/// How a DataLoader batches. The normalisation maps an input value v to (scale * v - mean) / stddev,
/// computed as one fused multiply-add per element while converting to float.
struct LoaderOptions {
  index_t batch_size = 64;
  bool shuffle = false;    ///< a fresh permutation each epoch, a pure function of (seed, epoch)
  std::uint64_t seed = 0;  ///< shuffling seed
  bool drop_last = false;  ///< skip the final batch when it would be smaller than batch_size
  double scale = 0;        ///< 0 = automatic: 1/255 for uint8 inputs (pixels to [0, 1]), 1 for float inputs
  double mean = 0;
  double stddev = 1;
  int prefetch = 2;  ///< batches a background thread prepares ahead; 0 prepares them in the caller's thread
};

/// One batch: x = normalised inputs [B, ...], y = labels [B], index = position of the batch in its epoch.
template <int R>
struct Batch {
  Tensor<float, R> x;
  Tensor<std::int64_t, 1> y;
  index_t index = 0;
};

namespace detail {

// Batch buffers shared by a loader and its epochs, so later epochs reuse the memory of earlier ones.
//
// Reuse is never visible: a buffer is handed out again only when its storage is held by nothing but the
// pool (use_count() == 1), i.e. the caller kept no handle to it. A Batch (or a copy of batch.x) the caller
// holds on to keeps its values, at the price of an allocation for a later batch.
template <int R>
class BatchPool {
 public:
  explicit BatchPool(std::size_t cap) : cap_(cap) {}

  void put(Batch<R>&& b) {
    if (!b.x.defined()) return;
    std::lock_guard<std::mutex> lock(m_);
    free_.push_back(std::move(b));
    // Buffers the caller still holds stay listed for a while (it may let go soon, e.g. when it rebinds an
    // Input); beyond a few, the oldest are forgotten and live on only in the caller's handles.
    while (free_.size() > cap_) free_.erase(free_.begin());
  }

  // The oldest free buffer nobody else holds, else an empty batch (allocated by the caller).
  Batch<R> take() {
    std::lock_guard<std::mutex> lock(m_);
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->x.storage().use_count() == 1 && it->y.storage().use_count() == 1) {
        // Pairs with the release of the caller's last handle: its reads of the old values happen before
        // our writes of new ones.
        std::atomic_thread_fence(std::memory_order_acquire);
        Batch<R> b = std::move(*it);
        free_.erase(it);
        return b;
      }
    }
    return {};
  }

 private:
  std::mutex m_;
  std::vector<Batch<R>> free_;
  std::size_t cap_;
};

// The batches of one epoch, produced in the caller's thread or by a worker thread into a bounded queue,
// in buffers from (and back to) the loader's pool.
template <dataset_dtype T, int R>
class EpochRun {
 public:
  using BatchT = Batch<R>;

  EpochRun(TensorDataset<T, R> ds, const LoaderOptions& opt, std::vector<index_t> order, index_t num_batches,
           std::function<void(BatchT&)> transform, std::shared_ptr<BatchPool<R>> pool)
      : ds_(std::move(ds)),
        opt_(opt),
        order_(std::move(order)),
        num_batches_(num_batches),
        transform_(std::move(transform)),
        pool_(std::move(pool)) {
    const double scale = opt.scale != 0 ? opt.scale : (std::is_same_v<T, std::uint8_t> ? 1.0 / 255.0 : 1.0);
    mul_ = static_cast<float>(scale / opt.stddev);
    add_ = static_cast<float>(-opt.mean / opt.stddev);
    if (opt_.prefetch > 0 && num_batches_ > 0) worker_ = std::thread([this] { work(); });
  }

  EpochRun(const EpochRun&) = delete;
  EpochRun& operator=(const EpochRun&) = delete;

  ~EpochRun() {
    {
      std::lock_guard<std::mutex> lock(m_);
      stop_ = true;
    }
    cv_.notify_all();
    if (worker_.joinable()) worker_.join();
    pool_->put(std::move(current_));
    for (auto& b : ready_) pool_->put(std::move(b));
  }

  bool done() const { return done_; }
  const BatchT& current() const { return current_; }

  // Makes the next batch current, or marks the epoch done. Rethrows what the worker threw (after the
  // batches it finished before).
  void advance() {
    if (done_) return;
    pool_->put(std::move(current_));
    current_ = BatchT{};
    if (consumed_ == num_batches_) {
      done_ = true;
      return;
    }
    if (!worker_.joinable()) {
      BatchT b = pool_->take();
      try {
        produce(consumed_, b);
      } catch (...) {
        done_ = true;
        throw;
      }
      current_ = std::move(b);
    } else {
      std::unique_lock<std::mutex> lock(m_);
      cv_.wait(lock, [&] { return !ready_.empty() || error_; });
      if (ready_.empty()) {
        done_ = true;
        std::rethrow_exception(error_);
      }
      current_ = std::move(ready_.front());
      ready_.pop_front();
      lock.unlock();
      cv_.notify_all();
    }
    ++consumed_;
  }

 private:
  void work() {
    for (index_t b = 0; b < num_batches_; ++b) {
      BatchT buf;
      {
        std::unique_lock<std::mutex> lock(m_);
        cv_.wait(lock, [&] { return stop_ || static_cast<int>(ready_.size()) < opt_.prefetch; });
        if (stop_) return;
      }
      buf = pool_->take();
      try {
        produce(b, buf);
      } catch (...) {
        {
          std::lock_guard<std::mutex> lock(m_);
          error_ = std::current_exception();
        }
        cv_.notify_all();
        return;
      }
      {
        std::lock_guard<std::mutex> lock(m_);
        ready_.push_back(std::move(buf));
      }
      cv_.notify_all();
    }
  }

  // Fills batch `b` into `buf`, reallocating only when its shape changes (the short last batch).
  void produce(index_t b, BatchT& buf) {
    const index_t n_all = ds_.size(), bs = opt_.batch_size;
    const index_t start = b * bs, n = std::min(bs, n_all - start);
    const auto& in = ds_.inputs();
    Shape<R> shape = in.shape();
    shape[0] = n;
    if (!buf.x.defined() || !(buf.x.shape() == shape)) buf.x.allocate(shape);
    if (!buf.y.defined() || buf.y.shape()[0] != n) buf.y.allocate(Shape<1>{n});
    buf.index = b;

    // Runs of consecutive samples (the whole batch when not shuffling) convert in one fused pass each.
    const index_t base = in.data() - static_cast<const T*>(in.storage()->data());
    const Strides<R> dst_strides = contiguous_strides(shape);
    const index_t sample_numel = n ? shape.numel() / n : 0;
    for (index_t i = 0; i < n;) {
      const index_t s0 = order_[static_cast<std::size_t>(start + i)];
      index_t len = 1;
      while (i + len < n && order_[static_cast<std::size_t>(start + i + len)] == s0 + len) ++len;
      Shape<R> run = shape;
      run[0] = len;
      const auto src = Tensor<T, R>::from_storage(in.storage(), base + s0 * in.strides()[0], run, in.strides());
      auto dst = Tensor<float, R>::from_storage(buf.x.storage(), i * sample_numel, run, dst_strides);
      if constexpr (std::is_same_v<T, float>)
        dst.assign(src * mul_ + add_);
      else
        dst.assign(cast<float>(src) * mul_ + add_);
      i += len;
    }
    const auto& labels = ds_.labels();
    for (index_t i = 0; i < n; ++i)
      buf.y.data()[i] = labels.data()[order_[static_cast<std::size_t>(start + i)] * labels.strides()[0]];
    if (transform_) transform_(buf);
  }

  TensorDataset<T, R> ds_;
  LoaderOptions opt_;
  std::vector<index_t> order_;
  index_t num_batches_;
  std::function<void(BatchT&)> transform_;
  std::shared_ptr<BatchPool<R>> pool_;
  float mul_ = 1, add_ = 0;

  std::mutex m_;
  std::condition_variable cv_;
  std::deque<BatchT> ready_;
  bool stop_ = false;
  std::exception_ptr error_;
  std::thread worker_;

  BatchT current_;
  index_t consumed_ = 0;
  bool done_ = false;
};

}  // namespace detail

/// Batches of a TensorDataset for training, as float tensors normalised on the way.
///
///   auto train = load_mnist(dir, MnistSplit::train);
///   DataLoader loader(TensorDataset(train.images, train.labels),
///                     {.batch_size = 64, .shuffle = true, .seed = 1, .mean = 0.2860, .stddev = 0.3530});
///   for (int e = 0; e < epochs; ++e)
///     for (const auto& batch : loader) {     // each loop over `loader` is the next epoch
///       x.bind(batch.x); y.bind(batch.y);    // [64, 1, 28, 28] float, [64] int64
///       step.run();
///     }
///
/// Each epoch runs on its own iterator: a background thread (prefetch > 0) converts the next batches while
/// the loop body trains, into a bounded queue of `prefetch` batches. Leaving the loop early (break, return,
/// an exception) stops and joins the thread; an exception thrown while preparing a batch reaches the
/// caller from the iterator's ++ (after the batches prepared before it).
///
/// Lifetime: a Batch's tensors are ordinary handles and keep their values as long as the caller holds
/// them. Their memory is recycled for later batches (and epochs) only once nothing but the loader refers
/// to it, so the steady state allocates nothing, and keeping a batch costs an allocation, never a wrong
/// value. (An expression built on batch.x refers to the Batch object itself: evaluate it before ++.)
template <dataset_dtype T, int R>
class DataLoader {
 public:
  using BatchT = Batch<R>;
  struct Sentinel {};

  /// A move-only input iterator over the batches of one epoch; it owns the epoch's worker thread.
  class Iterator {
   public:
    using value_type = BatchT;
    using difference_type = std::ptrdiff_t;

    const BatchT& operator*() const { return run_->current(); }
    const BatchT* operator->() const { return &run_->current(); }
    /// @throws whatever preparing the next batch threw (in the worker or the caller's thread).
    Iterator& operator++() {
      run_->advance();
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(Sentinel) const { return run_->done(); }

   private:
    friend class DataLoader;
    explicit Iterator(std::unique_ptr<detail::EpochRun<T, R>> run) : run_(std::move(run)) { run_->advance(); }
    std::unique_ptr<detail::EpochRun<T, R>> run_;
  };

  /// The batches of one given epoch, as a range.
  class EpochRange {
   public:
    Iterator begin() const { return loader_->start(epoch_); }
    Sentinel end() const { return {}; }

   private:
    friend class DataLoader;
    EpochRange(const DataLoader* l, std::uint64_t e) : loader_(l), epoch_(e) {}
    const DataLoader* loader_;
    std::uint64_t epoch_;
  };

  /// @throws error when batch_size < 1, stddev is not positive and finite, scale is not finite, or
  /// prefetch < 0.
  DataLoader(TensorDataset<T, R> dataset, LoaderOptions options = {}) : ds_(std::move(dataset)), opt_(options) {
    if (opt_.batch_size < 1)
      throw error("DataLoader: batch_size must be at least 1, got " + std::to_string(opt_.batch_size));
    if (!(opt_.stddev > 0) || !std::isfinite(opt_.stddev) || !std::isfinite(opt_.mean) || !std::isfinite(opt_.scale))
      throw error("DataLoader: normalisation needs a finite mean and scale and a positive finite stddev (got mean " +
                  std::to_string(opt_.mean) + ", stddev " + std::to_string(opt_.stddev) + ", scale " +
                  std::to_string(opt_.scale) + ")");
    if (opt_.prefetch < 0) throw error("DataLoader: prefetch must be >= 0, got " + std::to_string(opt_.prefetch));
  }

  /// Number of samples in the data set.
  index_t size() const { return ds_.size(); }
  /// Batches per epoch: ceil(size / batch_size), or floor with drop_last.
  index_t num_batches() const {
    return opt_.drop_last ? size() / opt_.batch_size : (size() + opt_.batch_size - 1) / opt_.batch_size;
  }
  const LoaderOptions& options() const { return opt_; }
  const TensorDataset<T, R>& dataset() const { return ds_; }

  /// A function run on every batch after conversion, in the thread that prepares it (the worker when
  /// prefetching): data augmentation, say. It must not touch what the training loop uses concurrently.
  void set_transform(std::function<void(BatchT&)> f) { transform_ = std::move(f); }

  /// The sample order of `epoch`: 0, 1, ..., N-1, or with shuffle a permutation that depends only on
  /// (seed, epoch) — Fisher–Yates driven by the Philox stream (seed, epoch), identical on every platform.
  std::vector<index_t> order(std::uint64_t epoch) const {
    std::vector<index_t> o(static_cast<std::size_t>(size()));
    for (index_t i = 0; i < size(); ++i) o[static_cast<std::size_t>(i)] = i;
    if (opt_.shuffle) {
      const PhiloxStream s{opt_.seed, epoch};
      for (index_t i = size() - 1; i > 0; --i) {
        const auto j = uniform_int(rand_u64(s, static_cast<std::uint64_t>(i)), 0, i + 1);
        std::swap(o[static_cast<std::size_t>(i)], o[static_cast<std::size_t>(j)]);
      }
    }
    return o;
  }

  /// The batches of `epoch` (for resuming at a given epoch, or replaying one).
  EpochRange epoch(std::uint64_t e) const { return EpochRange(this, e); }

  /// Starts the next epoch: 0 on the first loop over the loader, then 1, 2, ... (see set_epoch).
  Iterator begin() { return start(next_epoch_++); }
  Sentinel end() const { return {}; }

  /// The epoch the next begin() starts.
  std::uint64_t next_epoch() const { return next_epoch_; }
  void set_epoch(std::uint64_t e) { next_epoch_ = e; }

 private:
  Iterator start(std::uint64_t epoch) const {
    return Iterator(
        std::make_unique<detail::EpochRun<T, R>>(ds_, opt_, order(epoch), num_batches(), transform_, pool_));
  }

  TensorDataset<T, R> ds_;
  LoaderOptions opt_;
  std::function<void(BatchT&)> transform_;
  // Enough for the batch the caller holds, the queue, the one being filled, and one the caller may still
  // have bound somewhere.
  std::shared_ptr<detail::BatchPool<R>> pool_ =
      std::make_shared<detail::BatchPool<R>>(static_cast<std::size_t>(opt_.prefetch) + 3);
  std::uint64_t next_epoch_ = 0;
};

METAGRAD_NAMESPACE_END
