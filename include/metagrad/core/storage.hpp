// metagrad/core/storage.hpp — reference-counted, 64-byte aligned memory blocks shared by a tensor and
// its views, with allocation statistics. Include <metagrad/core.hpp> instead.
#pragma once

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <string>

#include "config.hpp"
#include "device.hpp"
#include "error.hpp"

METAGRAD_NAMESPACE_BEGIN

/// Process-wide counters of storage allocations (host memory; device memory has cuda::memory_stats). `allocations`
/// counts every block made; tests use it to prove a steady-state run allocates nothing.
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

/// How Storage and Tensor reach device memory: function pointers the CUDA backend
/// (backend/cuda/runtime.hpp) installs when a translation unit compiled by nvcc includes it. In a file
/// compiled by a plain C++ compiler they stay null, and asking for device memory throws device_error.
struct DeviceMemoryHooks {
  void* (*allocate)(std::size_t bytes, Device device) = nullptr;
  void (*deallocate)(void* ptr, Device device) = nullptr;
  /// Copies `bytes` between any two devices; returns when the destination holds them (host side).
  void (*copy)(void* dst, Device dst_device, const void* src, Device src_device, std::size_t bytes) = nullptr;
  void (*fill_zero)(void* ptr, std::size_t bytes, Device device) = nullptr;
  void (*synchronize)(Device device) = nullptr;

  // Stream capture of a compiled step (graph/program.hpp). graph_begin starts recording the work queued on
  // the device's stream and returns a token; graph_end stops it and returns a replayable graph, or null
  // with `why` set when the recorded work cannot be replayed (the run queued nothing: it only recorded);
  // graph_abort stops it and discards what was recorded; graph_launch replays a graph on the device's
  // stream; graph_destroy frees it and the memory its recording kept.
  void* (*graph_begin)(Device device) = nullptr;
  void* (*graph_end)(Device device, void* token, std::string& why) = nullptr;
  void (*graph_abort)(Device device, void* token) = nullptr;
  void (*graph_launch)(void* graph) = nullptr;
  void (*graph_destroy)(void* graph) = nullptr;
};
inline DeviceMemoryHooks& device_memory_hooks() {
  static DeviceMemoryHooks h;
  return h;
}
/// The hooks, or device_error naming `what` and the device when this build has no CUDA backend.
inline const DeviceMemoryHooks& device_hooks_for(Device device, const char* what) {
  const auto& h = device_memory_hooks();
  if (!h.allocate)
    throw device_error(std::string(what) + " on " + device.str() +
                       ": this translation unit was not compiled by nvcc, so it has no CUDA backend; compile the "
                       "file that uses CUDA tensors with nvcc (CMake: link metagrad::cuda and make it a .cu source)");
  return h;
}
/// Copies `bytes` from src (on src_device) to dst (on dst_device): memcpy between host buffers, the CUDA
/// backend otherwise.
inline void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, std::size_t bytes) {
  if (bytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, bytes);
    return;
  }
  device_hooks_for(dst_device.is_cpu() ? src_device : dst_device, "copy").copy(dst, dst_device, src, src_device, bytes);
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

  /// `bytes` of memory on `device` (device memory comes from the CUDA backend's caching allocator).
  /// @throws device_error for a CUDA device in a file not compiled by nvcc.
  Storage(std::size_t bytes, Device device) : bytes_(bytes), device_(device) {
    if (!device.is_cpu()) {
      const auto& h = detail::device_hooks_for(device, "allocate storage");
      data_ = h.allocate(bytes, device);
      deleter_ = [h = h.deallocate, device](void* p) { h(p, device); };
      counted_ = false;
      return;
    }
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
