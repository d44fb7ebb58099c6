// metagrad/core/device.hpp — where a tensor lives: the CPU, or CUDA device n. Include <metagrad/core.hpp>.
#pragma once

#include <string>

#include "config.hpp"

METAGRAD_NAMESPACE_BEGIN

/// A memory space and the processor that computes on it. Only the CPU is served by this release's
/// backends; `Device::cuda(n)` is reserved for the CUDA backend and asking a CPU-only build for it throws
/// `device_error`.
class Device {
 public:
  enum class Kind : unsigned char { cpu, cuda };

  constexpr Device() = default;
  static constexpr Device cpu() { return Device(Kind::cpu, 0); }
  static constexpr Device cuda(int index = 0) { return Device(Kind::cuda, index); }

  constexpr Kind kind() const { return kind_; }
  constexpr int index() const { return index_; }
  constexpr bool is_cpu() const { return kind_ == Kind::cpu; }
  constexpr bool is_cuda() const { return kind_ == Kind::cuda; }
  constexpr bool operator==(const Device&) const = default;

  std::string str() const { return is_cpu() ? std::string("cpu") : "cuda:" + std::to_string(index_); }

 private:
  constexpr Device(Kind k, int i) : kind_(k), index_(i) {}
  Kind kind_ = Kind::cpu;
  int index_ = 0;
};

METAGRAD_NAMESPACE_END
