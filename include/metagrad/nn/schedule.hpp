// metagrad/nn/schedule.hpp — learning-rate schedules as PyTorch's lr_scheduler defines them: step decay,
// cosine annealing, linear warm-up (wrapping another schedule) and reduce-on-plateau. A schedule maps the
// training progress in epochs (fractional: epoch + batch / batches, so warm-up can be per step) and the base
// learning rate to a learning rate; `LrSchedule` holds any of them. ReduceLROnPlateau instead reacts to a
// metric after each epoch. Include <metagrad/nn.hpp> instead.
#pragma once

#include <cmath>
#include <functional>
#include <limits>
#include <numbers>
#include <string>
#include <utility>

#include "../core/error.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace nn {

/// lr(progress in epochs, base lr).
using LrSchedule = std::function<double(double epoch, double base_lr)>;

/// The base learning rate throughout.
inline LrSchedule constant_lr() {
  return [](double, double base) { return base; };
}

/// base * gamma^floor(epoch / step_size) (torch StepLR).
inline LrSchedule step_lr(int step_size, double gamma = 0.1) {
  if (step_size <= 0) throw error("step_lr: step_size must be positive; got " + std::to_string(step_size));
  return [=](double epoch, double base) { return base * std::pow(gamma, std::floor(epoch / step_size)); };
}

/// eta_min + (base - eta_min) (1 + cos(pi min(epoch, t_max) / t_max)) / 2 (torch CosineAnnealingLR's
/// closed form, without restarts).
inline LrSchedule cosine_lr(double t_max, double eta_min = 0.0) {
  if (t_max <= 0) throw error("cosine_lr: t_max must be positive; got " + std::to_string(t_max));
  return [=](double epoch, double base) {
    const double e = epoch < t_max ? epoch : t_max;
    return eta_min + (base - eta_min) * (1 + std::cos(std::numbers::pi * e / t_max)) / 2;
  };
}

/// Linear warm-up from start_factor * lr to lr over `warmup_epochs` (fractional: 0.5 is half an epoch of
/// steps), then `after` (shifted so it starts at epoch 0 when the warm-up ends).
inline LrSchedule linear_warmup(double warmup_epochs, LrSchedule after = constant_lr(), double start_factor = 0.1) {
  if (warmup_epochs < 0) throw error("linear_warmup: warmup_epochs must be >= 0");
  return [=](double epoch, double base) {
    if (epoch < warmup_epochs) return base * (start_factor + (1 - start_factor) * epoch / warmup_epochs);
    return after(epoch - warmup_epochs, base);
  };
}

/// Whether a lower (min) or a higher (max) metric is better.
enum class PlateauMode { min, max };
struct PlateauOptions {
  PlateauMode mode = PlateauMode::min;
  double factor = 0.1;
  int patience = 10;
  double threshold = 1e-4;
  int cooldown = 0;
  double min_lr = 0.0;
};

/// Multiplies the learning rate by `factor` when a metric has not improved for `patience` epochs
/// (torch ReduceLROnPlateau, relative threshold mode, with cooldown and a floor).
class ReduceLROnPlateau {
 public:
  using Mode = PlateauMode;
  using Options = PlateauOptions;
  explicit ReduceLROnPlateau(Options o = {}) : o_(o) {
    if (o.factor <= 0 || o.factor >= 1) throw error("ReduceLROnPlateau: factor must be in (0, 1)");
    best_ = o.mode == Mode::min ? std::numeric_limits<double>::infinity() : -std::numeric_limits<double>::infinity();
  }
  /// Feeds the epoch's metric; returns the learning rate to use from now on.
  double step(double metric, double lr) {
    const bool better = o_.mode == Mode::min ? metric < best_ * (1 - o_.threshold * (best_ > 0 ? 1 : -1))
                                             : metric > best_ * (1 + o_.threshold * (best_ > 0 ? 1 : -1));
    if (better || std::isinf(best_)) {
      best_ = metric;
      bad_ = 0;
    } else {
      ++bad_;
    }
    if (cooldown_ > 0) {
      --cooldown_;
      bad_ = 0;
    }
    if (bad_ > o_.patience) {
      lr = std::max(lr * o_.factor, o_.min_lr);
      cooldown_ = o_.cooldown;
      bad_ = 0;
    }
    return lr;
  }
  double best() const { return best_; }

 private:
  Options o_;
  double best_;
  int bad_ = 0;
  int cooldown_ = 0;
};

}  // namespace nn
METAGRAD_NAMESPACE_END
