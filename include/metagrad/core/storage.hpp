// metagrad/core/storage.hpp — reference-counted, 64-byte aligned memory blocks shared by a tensor and
// its views, with allocation statistics. Include <metagrad/core.hpp> instead.
#pragma once

#include <atomic>
#include <cstdlib>
#include <functional>
#include <memory>
#include <new>
#include <string>

#include "config.hpp"
#include "device.hpp"
#include "error.hpp"

METAGRAD_NAMESPACE_BEGIN

/// Process-wide counters of storage allocations (host memory). `allocations` counts every block made;
/// tests use it to prove a steady-state run allocates nothing.
struct MemoryStats {
  std::int64_t allocations = 0;
  std::int64_t current_bytes = 0;
  std::int64_t peak_bytes = 0;
};

namespace detail {
struct MemoryCounters {
  std::atomic<std::int64_t> allocations{0}, current{0}, peak{0};
};
inline MemoryCounters& memory_counters() {
  static MemoryCounters c;
  return c;
}
}  // namespace detail

/// A snapshot of the host allocation counters.
inline MemoryStats memory_stats() {
  auto& c = detail::memory_counters();
  return {c.allocations.load(), c.current.load(), c.peak.load()};
}

/// One block of memory on one device. Tensors share it through std::shared_ptr; the block is freed when
/// the last tensor or view that uses it goes away.
class Storage {
 public:
  static constexpr std::size_t alignment = 64;  // a cache line and an AVX-512 register

  Storage(std::size_t bytes, Device device) : bytes_(bytes), device_(device) {
    if (!device.is_cpu())
      throw device_error("metagrad: storage on " + device.str() +
                         " needs the CUDA backend; compile this file with nvcc (METAGRAD_WITH_CUDA)");
    // aligned_alloc requires a size that is a multiple of the alignment.
    const std::size_t padded = (bytes + alignment - 1) / alignment * alignment;
    data_ = padded ? std::aligned_alloc(alignment, padded) : nullptr;
    if (padded && !data_) throw std::bad_alloc();
    auto& c = detail::memory_counters();
    c.allocations.fetch_add(1, std::memory_order_relaxed);
    const auto now = c.current.fetch_add(static_cast<std::int64_t>(bytes), std::memory_order_relaxed) +
                     static_cast<std::int64_t>(bytes);
    auto peak = c.peak.load(std::memory_order_relaxed);
    while (now > peak && !c.peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
  }
  /// Adopts memory the caller allocated (host or device), released through `deleter` (which may do
  /// nothing, for memory the caller keeps owning). Not counted in memory_stats().
  Storage(void* data, std::size_t bytes, Device device, std::function<void(void*)> deleter)
      : data_(data), bytes_(bytes), device_(device), deleter_(std::move(deleter)), counted_(false) {}
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage() {
    if (!counted_) {
      if (deleter_) deleter_(data_);
      return;
    }
    std::free(data_);
    detail::memory_counters().current.fetch_sub(static_cast<std::int64_t>(bytes_), std::memory_order_relaxed);
  }

  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
  Device device_;
  std::function<void(void*)> deleter_;
  bool counted_ = true;
};

METAGRAD_NAMESPACE_END
