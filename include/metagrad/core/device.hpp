// metagrad/core/device.hpp — where a tensor lives: the CPU, or CUDA device n. Include <metagrad/core.hpp>.
#pragma once

#include <string>

#include "config.hpp"
#include "error.hpp"

METAGRAD_NAMESPACE_BEGIN

/// A memory space and the processor that computes on it: the host, or CUDA device n. A translation unit
/// compiled without the CUDA backend (a plain C++ compiler rather than nvcc) throws `device_error` when asked
/// to allocate or compute on `Device::cuda(n)`.
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

  /// The device a name stands for: "cpu", "cuda" (device 0) or "cuda:N", as str() writes them.
  /// @throws error naming the text for anything else. Whether the device exists is checked on first use.
  static Device parse(const std::string& name) {
    if (name == "cpu") return cpu();
    if (name == "cuda") return cuda(0);
    if (name.rfind("cuda:", 0) == 0 && name.size() > 5 && name.size() <= 9 &&
        name.find_first_not_of("0123456789", 5) == std::string::npos)
      return cuda(std::stoi(name.substr(5)));
    throw error("device '" + name + "': expected cpu, cuda or cuda:N");
  }

 private:
  constexpr Device(Kind k, int i) : kind_(k), index_(i) {}
  Kind kind_ = Kind::cpu;
  int index_ = 0;
};

METAGRAD_NAMESPACE_END
