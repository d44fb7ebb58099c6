// metagrad/nn/trainer.hpp — the training loop for classifiers: fit(epochs) runs compiled training steps over
// a data loader with a progress bar (batch k/N, images/s, ETA, running loss and accuracy; plain lines when
// the output is not a terminal), evaluates every epoch, writes a metrics CSV, saves checkpoints atomically,
// resumes from one, applies learning-rate schedules and stops early. It is built from TrainStep and
// EvalStep (nn/train_step.hpp), which custom loops use directly. Include <metagrad/nn.hpp> instead.
#pragma once

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../expr/leaf.hpp"
#include "../expr/reduce.hpp"
#include "schedule.hpp"
#include "state_dict.hpp"
#include "train_step.hpp"

#if defined(__CUDACC__)
#include "../backend/cuda/runtime.hpp"
#endif

METAGRAD_NAMESPACE_BEGIN
namespace nn {

/// Peak resident set size of this process in MiB (getrusage).
inline double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // Linux reports KiB
}

/// One epoch's figures.
struct EpochStats {
  int epoch = 0;
  double train_loss = 0, train_accuracy = 0;
  double test_loss = std::numeric_limits<double>::quiet_NaN(), test_accuracy = std::numeric_limits<double>::quiet_NaN();
  double lr = 0, seconds = 0, images_per_second = 0, peak_rss_mib = 0;
  /// Peak device memory held by tensors and workspaces during the epoch, in MiB (0 on the CPU).
  double peak_device_mib = 0;
};

/// Peak bytes metagrad's caching allocator held on `device` since the last reset (0 for the CPU, and in a
/// translation unit without the CUDA backend), and a reset of that peak.
inline double peak_device_mib(Device device) {
#if defined(__CUDACC__)
  if (device.is_cuda()) return static_cast<double>(metagrad::cuda::memory_stats(device.index()).peak_bytes) / (1 << 20);
#endif
  (void)device;
  return 0;
}
inline void reset_peak_device_memory(Device device) {
#if defined(__CUDACC__)
  if (device.is_cuda()) metagrad::cuda::reset_peak_memory_stats(device.index());
#endif
  (void)device;
}

struct TrainerOptions {
  int epochs = 1;
  /// Where to write a checkpoint after every epoch ("" for none); see resume.
  std::string checkpoint;
  /// Start from `checkpoint` when it exists (its epoch count, parameters, optimiser state).
  bool resume = false;
  /// Append one line per epoch (epoch, train loss/accuracy, test loss/accuracy, lr, seconds, images/s).
  std::string metrics_csv;
  /// Stop when the test accuracy has not improved for this many epochs (0: never).
  int early_stopping_patience = 0;
  /// Learning rate as a function of fractional epoch and base lr (empty: constant).
  LrSchedule schedule;
  /// Reduce the learning rate when the test loss plateaus.
  std::optional<PlateauOptions> plateau;
  double clip_grad_norm = 0.0;
  /// Progress output; nullptr for silence. The bar redraws in place only when this is a terminal.
  std::ostream* out = &std::cout;
  /// Called after every epoch with its figures (after evaluation, before the checkpoint).
  std::function<void(const EpochStats&)> on_epoch;
  /// Redraw the bar at most this often.
  double progress_interval_s = 0.25;
  /// On a CUDA device, record the training and evaluation steps as CUDA graphs and replay them
  /// (Program::set_graph_capture); false runs every kernel and library call from the host each step.
  bool cuda_graphs = true;
  /// Read the loss and the count of correct answers back after every step. Unset (the default): yes on the
  /// CPU, where it costs nothing; no on a CUDA device, where each read waits for the GPU to finish the step.
  /// Without it the running sums stay on the device, are read when the progress bar is due (at most every
  /// progress_interval_s) and at the end of the epoch, and the host queues the next step while the GPU runs
  /// this one; a loss that is not finite is then reported at the next read, by the batch it was read at.
  std::optional<bool> read_loss_every_step;
};

namespace detail {
inline bool is_terminal(const std::ostream* os) {
  if (os == &std::cout) return ::isatty(STDOUT_FILENO) != 0;
  if (os == &std::cerr || os == &std::clog) return ::isatty(STDERR_FILENO) != 0;
  return false;
}
inline std::string clock_text(double s) {
  if (!std::isfinite(s) || s < 0) s = 0;
  const long t = static_cast<long>(s + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
  return buf;
}
}  // namespace detail

/// A progress line: "epoch 2/5 [=========>          ] 412/938  5120 img/s  ETA 0:03  loss 0.4210  acc 84.9%".
class ProgressBar {
 public:
  ProgressBar(std::ostream* out, double interval_s)
      : out_(out), tty_(detail::is_terminal(out)), interval_(interval_s) {}
  void start(std::string label, std::int64_t total) {
    label_ = std::move(label);
    total_ = total;
    t0_ = last_ = std::chrono::steady_clock::now();
    next_plain_ = 0.1;
  }
  void update(std::int64_t done, std::int64_t samples, double loss, double acc, bool last = false) {
    if (!out_) return;
    const auto now = std::chrono::steady_clock::now();
    const double el = std::chrono::duration<double>(now - t0_).count();
    if (!last) {
      if (tty_ && std::chrono::duration<double>(now - last_).count() < interval_) return;
      // Not a terminal: a plain line at every tenth of the epoch, so logs stay short.
      if (!tty_ && static_cast<double>(done) < next_plain_ * static_cast<double>(total_)) return;
    }
    last_ = now;
    while (next_plain_ * static_cast<double>(total_) <= static_cast<double>(done)) next_plain_ += 0.1;
    const double ips = el > 0 ? static_cast<double>(samples) / el : 0;
    const double eta = done > 0 ? el * static_cast<double>(total_ - done) / static_cast<double>(done) : 0;
    constexpr int width = 24;
    const int fill = total_ > 0 ? static_cast<int>(width * done / total_) : width;
    std::string bar(static_cast<std::size_t>(fill), '=');
    if (fill < width) bar += '>' + std::string(static_cast<std::size_t>(width - fill - 1), ' ');
    char buf[256];
    std::snprintf(buf, sizeof buf, "%s [%s] %lld/%lld  %.0f img/s  %s %s  loss %.4f  acc %.1f%%", label_.c_str(),
                  bar.c_str(), static_cast<long long>(done), static_cast<long long>(total_), ips, last ? "took" : "ETA",
                  detail::clock_text(last ? el : eta).c_str(), loss, 100 * acc);
    if (tty_)
      *out_ << '\r' << buf << "\033[K" << (last ? "\n" : "") << std::flush;
    else
      *out_ << buf << '\n' << std::flush;
  }

 private:
  std::ostream* out_;
  bool tty_;
  double interval_;
  std::string label_;
  std::int64_t total_ = 0;
  std::chrono::steady_clock::time_point t0_, last_;
  double next_plain_ = 0.1;
};

/// Trains a classifier `model` (logits [N, classes] from input [N, ...] of rank R) with `opt` and
/// `loss_fn(logits, labels)` (e.g. cross_entropy) on loaders yielding batches {x: Tensor<float, R>,
/// y: Tensor<int64_t, 1>}. The training and evaluation steps are compiled once, at construction.
/// The Trainer runs on the device of the optimiser's (first) parameter: move the model there before
/// building the optimiser and the Trainer. Host batches are copied into device tensors that are reused from
/// step to step, so the compiled step keeps reading the same memory and is replayed as a CUDA graph.
/// @code
///   nn::Trainer<decltype(model), decltype(opt), decltype(loss), 4> trainer(model, opt, loss, options);
///   trainer.fit(train_loader, &test_loader);
/// @endcode
template <class Model, class Opt, class LossFn, int R, class T = float>
class Trainer {
  struct x_tag {};
  struct y_tag {};
  using XIn = Input<x_tag, T, R>;
  using YIn = Input<y_tag, std::int64_t, 1>;

  static auto build_train(Model& m, Opt& opt, LossFn& loss_fn, const XIn& x, const YIn& y, const TrainerOptions& o) {
    m.train(true);
    auto logits = forward_in(m, x, train_mode);  // no run-time mode choice in the graph (see forward_in)
    auto correct = sum(argmax(logits, 1) == y);
    auto loss = loss_fn(logits, y);
    return TrainStep(opt, loss, updates_of(m, x), std::make_tuple(correct), TrainStepOptions{o.clip_grad_norm});
  }
  static auto build_eval(Model& m, LossFn& loss_fn, const XIn& x, const YIn& y) {
    m.train(false);
    auto logits = forward_in(m, x, eval_mode);
    auto correct = sum(argmax(logits, 1) == y);
    auto loss = loss_fn(logits, y);
    auto step = EvalStep<decltype(loss), decltype(correct)>(loss, correct);
    m.train(true);
    return step;
  }

 public:
  Trainer(const Trainer&) = delete;  // its training step calls back into it
  Trainer& operator=(const Trainer&) = delete;
  Trainer(Model& model, Opt& opt, LossFn loss_fn, TrainerOptions o = {})
      : model_(model),
        opt_(opt),
        loss_fn_(std::move(loss_fn)),
        options_(std::move(o)),
        device_(std::get<0>(opt.params()).value().device()),
        x_("x"),
        y_("y"),
        train_(build_train(model_, opt_, loss_fn_, x_, y_, options_)),
        eval_(build_eval(model_, loss_fn_, x_, y_)),
        bar_(options_.out, options_.progress_interval_s) {
    train_.on_step = [this] { advance_of(model_); };
    train_.program().set_graph_capture(options_.cuda_graphs);
    eval_.program().set_graph_capture(options_.cuda_graphs);
    if (options_.plateau) plateau_.emplace(*options_.plateau);
  }

  /// One training step on a batch (on the host or on the Trainer's device). @return the loss and the number
  /// of correct predictions. @throws shape_error when the batch's inputs and labels disagree; error for a
  /// negative label of a batch on the host that goes to a device (the device step does not check them).
  std::pair<double, std::int64_t> train_step(const Tensor<T, R>& x, const Tensor<std::int64_t, 1>& y) {
    const auto& r = launch_train(x, y);
    return {static_cast<double>(train_t::loss_of(r).item()),
            static_cast<std::int64_t>(train_t::template extra_of<0>(r).item())};
  }
  /// Loss and correct predictions on a batch in eval mode (nothing is updated).
  std::pair<double, std::int64_t> eval_step(const Tensor<T, R>& x, const Tensor<std::int64_t, 1>& y) {
    const auto& r = run_eval(x, y);
    return {static_cast<double>(std::get<0>(r).item()), static_cast<std::int64_t>(std::get<1>(r).item())};
  }

  /// The device the Trainer runs on (its optimiser's first parameter's).
  Device device() const { return device_; }

  /// Mean loss and accuracy over a loader, in eval mode.
  template <class Loader>
  std::pair<double, double> evaluate(Loader& loader) {
    std::int64_t n = 0;
    reset_sums();
    for (auto&& b : loader) {
      const auto& r = run_eval(b.x, b.y);
      const index_t bs = b.y.shape()[0];
      accumulate(std::get<0>(r), std::get<1>(r), bs);
      n += bs;
    }
    if (n == 0) throw error("Trainer::evaluate: the loader yielded no samples");
    const Sums sums = read_sums();  // the only wait for the GPU in an evaluation
    return {sums.loss / static_cast<double>(n), static_cast<double>(sums.correct) / static_cast<double>(n)};
  }

  /// Trains for options.epochs epochs (from the checkpoint's epoch when resuming), evaluating on `test`
  /// when given. @return the stats of every epoch run now.
  template <class Loader>
  std::vector<EpochStats> fit(Loader& train, Loader* test = nullptr) {
    if (options_.resume && !options_.checkpoint.empty() && std::filesystem::exists(options_.checkpoint)) {
      const auto meta = load_checkpoint(options_.checkpoint, model_, opt_);
      epoch_ = std::stoi(meta.at("epoch"));
      if (auto it = meta.find("lr"); it != meta.end()) opt_.set_lr(std::stod(it->second));
      if (auto it = meta.find("best_accuracy"); it != meta.end()) best_acc_ = std::stod(it->second);
      if (options_.out) *options_.out << "resumed from " << options_.checkpoint << " at epoch " << epoch_ << "\n";
    }
    std::vector<EpochStats> all;
    const std::int64_t nb = static_cast<std::int64_t>(train.num_batches());
    while (epoch_ < options_.epochs) {
      EpochStats st;
      st.epoch = epoch_ + 1;
      if constexpr (requires { train.set_epoch(epoch_); }) train.set_epoch(epoch_);
      bar_.start("epoch " + std::to_string(epoch_ + 1) + "/" + std::to_string(options_.epochs), nb);
      reset_peak_device_memory(device_);
      const auto t0 = std::chrono::steady_clock::now();
      std::int64_t samples = 0, k = 0;
      const bool every_step = options_.read_loss_every_step.value_or(device_.is_cpu());
      auto last_read = std::chrono::steady_clock::now();
      Sums sums = reset_sums();
      for (auto&& b : train) {
        if (options_.schedule)
          opt_.set_lr(options_.schedule(epoch_ + static_cast<double>(k) / static_cast<double>(nb), opt_.base_lr()));
        const auto& r = launch_train(b.x, b.y);
        const index_t bs = b.y.shape()[0];
        accumulate(train_t::loss_of(r), train_t::template extra_of<0>(r), bs);
        samples += bs;
        ++k;
        const auto now = std::chrono::steady_clock::now();
        if (every_step || k == nb ||
            std::chrono::duration<double>(now - last_read).count() >= options_.progress_interval_s) {
          last_read = now;
          sums = read_sums();  // waits for the steps queued so far
          if (!std::isfinite(sums.loss))
            throw error("Trainer: the loss became " + std::to_string(sums.loss) + " at epoch " +
                        std::to_string(epoch_ + 1) + (every_step ? ", batch " : ", by batch ") + std::to_string(k) +
                        "; lower the learning rate or clip gradients");
          bar_.update(k, samples, sums.loss / static_cast<double>(samples),
                      static_cast<double>(sums.correct) / static_cast<double>(samples), k == nb);
        }
      }
      if (k != nb) sums = read_sums();  // a loader that yielded another count than it announced
      const double loss_sum = sums.loss;
      const std::int64_t correct = sums.correct;
      st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      st.train_loss = samples ? loss_sum / static_cast<double>(samples) : 0;
      st.train_accuracy = samples ? static_cast<double>(correct) / static_cast<double>(samples) : 0;
      st.images_per_second = st.seconds > 0 ? static_cast<double>(samples) / st.seconds : 0;
      st.lr = opt_.lr();
      if (test) std::tie(st.test_loss, st.test_accuracy) = evaluate(*test);
      st.peak_rss_mib = peak_rss_mib();
      st.peak_device_mib = peak_device_mib(device_);
      ++epoch_;
      if (plateau_ && test) opt_.set_lr(plateau_->step(st.test_loss, opt_.lr()));
      const bool improved = test && st.test_accuracy > best_acc_;
      if (improved) {
        best_acc_ = st.test_accuracy;
        stale_ = 0;
      } else {
        ++stale_;
      }
      report(st);
      if (options_.on_epoch) options_.on_epoch(st);
      if (!options_.checkpoint.empty())
        save_checkpoint(options_.checkpoint, model_, opt_,
                        {{"epoch", std::to_string(epoch_)},
                         {"lr", std::to_string(opt_.lr())},
                         {"best_accuracy", std::to_string(best_acc_)},
                         {"test_accuracy", std::to_string(st.test_accuracy)}});
      all.push_back(st);
      if (options_.early_stopping_patience > 0 && test && stale_ >= options_.early_stopping_patience) {
        if (options_.out)
          *options_.out << "early stopping: no improvement in test accuracy for " << stale_ << " epochs\n";
        break;
      }
    }
    return all;
  }

  int epoch() const { return epoch_; }
  double best_accuracy() const { return best_acc_; }
  const auto& train_program() const { return train_.program(); }

 private:
  void check_batch(const Tensor<T, R>& x, const Tensor<std::int64_t, 1>& y, const char* op) const {
    if (x.shape()[0] != y.shape()[0])
      throw shape_error(std::string("Trainer::") + op + ": the batch has " + std::to_string(x.shape()[0]) + " inputs " +
                        to_string(x.shape()) + " but " + std::to_string(y.shape()[0]) + " labels");
  }

  // One training step on a batch, nothing read back (train_step and fit read what they need), and one
  // evaluation step; the Program's outputs, valid until the next step.
  const auto& launch_train(const Tensor<T, R>& x, const Tensor<std::int64_t, 1>& y) {
    check_batch(x, y, "train_step");
    return train_.launch(x_.bind(staged(x, train_x_)), y_.bind(staged(y, train_y_)));
  }
  const auto& run_eval(const Tensor<T, R>& x, const Tensor<std::int64_t, 1>& y) {
    check_batch(x, y, "eval_step");
    return eval_.run(x_.bind(staged(x, eval_x_)), y_.bind(staged(y, eval_y_)));
  }

  // The batch tensor on the Trainer's device: `b` itself when it is there already, else a copy in `buf`,
  // which keeps its memory while the batch shape stays the same.
  template <class U, int RB>
  const Tensor<U, RB>& staged(const Tensor<U, RB>& b, Tensor<U, RB>& buf) const {
    if (b.device() == device_) return b;
    const auto c = b.is_contiguous() ? b : b.clone();
    if constexpr (std::is_same_v<U, std::int64_t>) {
      if (c.device().is_cpu())
        for (index_t i = 0; i < c.numel(); ++i)
          if (c.data()[i] < 0)
            throw error("Trainer: label " + std::to_string(c.data()[i]) + " at position " + std::to_string(i) +
                        " of the batch is negative");
    }
    if (!buf.defined() || !(buf.shape() == b.shape())) buf.allocate(b.shape(), device_);
    const std::size_t bytes = static_cast<std::size_t>(c.numel()) * sizeof(U);
#if defined(__CUDACC__)
    if (device_.is_cuda() && c.device().is_cpu()) {
      // Queued behind the step that last read buf (stream order), without waiting for it.
      metagrad::cuda::detail::copy_host_to_device_async(buf.data(), c.data(), bytes, device_.index());
      return buf;
    }
#endif
    metagrad::detail::copy_bytes(buf.data(), device_, c.data(), c.device(), bytes);
    return buf;
  }

  // The running sums of a pass (an epoch, an evaluation) live on the Trainer's device: adding a step's loss
  // and count there is a kernel queued behind the step, not a wait for it. Double for the loss, as the host's
  // sum was, so reading every step or once gives the same bits.
  struct Sums {
    double loss = 0;
    std::int64_t correct = 0;
  };
  Sums reset_sums() {
    loss_sum_ = zeros<double>(Shape<0>{}, device_);
    correct_sum_ = zeros<std::int64_t>(Shape<0>{}, device_);
    return {};
  }
  template <class L, class C>
  void accumulate(const L& loss, const C& correct, index_t batch) {
    loss_sum_ = loss_sum_ + cast<double>(loss) * static_cast<double>(batch);
    correct_sum_ = correct_sum_ + cast<std::int64_t>(correct);
  }
  Sums read_sums() const { return {loss_sum_.item(), correct_sum_.item()}; }

  void report(const EpochStats& st) {
    if (options_.out) {
      char buf[256];
      std::snprintf(buf, sizeof buf,
                    "epoch %d: train loss %.4f acc %.2f%% | test loss %.4f acc %.2f%% | lr %.3g | %.2f s, %.0f img/s, "
                    "peak RSS %.0f MiB",
                    st.epoch, st.train_loss, 100 * st.train_accuracy, st.test_loss, 100 * st.test_accuracy, st.lr,
                    st.seconds, st.images_per_second, st.peak_rss_mib);
      *options_.out << buf;
      if (device_.is_cuda()) *options_.out << ", peak " << device_.str() << " " << st.peak_device_mib << " MiB";
      *options_.out << '\n' << std::flush;
    }
    if (!options_.metrics_csv.empty()) {
      const bool fresh = !std::filesystem::exists(options_.metrics_csv);
      std::ofstream f(options_.metrics_csv, std::ios::app);
      if (!f) throw io_error("Trainer: cannot open the metrics file '" + options_.metrics_csv + "' for appending");
      if (fresh)
        f << "epoch,train_loss,train_accuracy,test_loss,test_accuracy,lr,seconds,images_per_second,peak_rss_mib\n";
      f << st.epoch << ',' << st.train_loss << ',' << st.train_accuracy << ',' << st.test_loss << ','
        << st.test_accuracy << ',' << st.lr << ',' << st.seconds << ',' << st.images_per_second << ','
        << st.peak_rss_mib << '\n';
      if (!f) throw io_error("Trainer: writing the metrics file '" + options_.metrics_csv + "' failed");
    }
  }

  using train_t = decltype(build_train(std::declval<Model&>(), std::declval<Opt&>(), std::declval<LossFn&>(),
                                       std::declval<const XIn&>(), std::declval<const YIn&>(),
                                       std::declval<const TrainerOptions&>()));
  using eval_t = decltype(build_eval(std::declval<Model&>(), std::declval<LossFn&>(), std::declval<const XIn&>(),
                                     std::declval<const YIn&>()));

  Model& model_;
  Opt& opt_;
  LossFn loss_fn_;
  TrainerOptions options_;
  Device device_;
  XIn x_;
  YIn y_;
  Tensor<T, R> train_x_, eval_x_;  // batches copied to device_ (see staged)
  Tensor<std::int64_t, 1> train_y_, eval_y_;
  Tensor<double, 0> loss_sum_;  // see Sums
  Tensor<std::int64_t, 0> correct_sum_;
  train_t train_;
  eval_t eval_;
  ProgressBar bar_;
  std::optional<ReduceLROnPlateau> plateau_;
  int epoch_ = 0;
  double best_acc_ = -1;
  int stale_ = 0;
};

}  // namespace nn
METAGRAD_NAMESPACE_END
