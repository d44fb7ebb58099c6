// metagrad/backend/cuda/runtime.hpp — the CUDA runtime services every other CUDA header uses: status checks
// that throw cuda_error, the device count, a device guard, one stream per device, a stream-ordered caching
// allocator (no cudaMalloc in steady state; current / peak / reserved statistics; private pools for recorded
// CUDA graphs), pinned staging for host copies, and the hooks through which core/ Storage, Tensor and
// graph/ Program reach device memory and CUDA-graph recording. Needs nvcc;
// include <metagrad/metagrad.hpp> (or <metagrad/cuda.hpp>) instead.
#pragma once

#if defined(__CUDACC__)

#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "../../core/config.hpp"
#include "../../core/device.hpp"
#include "../../core/error.hpp"
#include "../../core/storage.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace cuda {

/// Throws cuda_error naming `what` (the call), the error's name, code and text when `status` is not
/// cudaSuccess. The sticky error state of the runtime is cleared first where it can be.
inline void check(cudaError_t status, const char* what) {
  if (status == cudaSuccess) return;
  (void)cudaGetLastError();
  throw cuda_error(std::string(what) + " failed: " + cudaGetErrorName(status) + " (" +
                   std::to_string(static_cast<int>(status)) + "): " + cudaGetErrorString(status));
}

/// Number of CUDA devices visible (0 when there is no driver or no GPU; never throws).
inline int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the "no device" / "insufficient driver" error
    return 0;
  }
  return n;
}

/// True when at least one CUDA device can be used.
inline bool is_available() { return device_count() > 0; }

/// @throws device_error when `device` is not a CUDA device of this machine.
inline void check_device(Device device, const char* what) {
  if (!device.is_cuda()) throw device_error(std::string(what) + ": " + device.str() + " is not a CUDA device");
  static const int n = device_count();  // fixed for the process: not queried on every allocation
  if (device.index() < 0 || device.index() >= n)
    throw device_error(std::string(what) + ": " + device.str() + " does not exist (this machine has " +
                       std::to_string(n) + " CUDA device" + (n == 1 ? "" : "s") + ")");
}

/// Makes `device` current for its lifetime and restores the previous one after (only when they differ).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    check(cudaGetDevice(&prev_), "cudaGetDevice");
    if (prev_ != device) check(cudaSetDevice(device), "cudaSetDevice");
    changed_ = prev_ != device;
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;
  ~DeviceGuard() {
    if (changed_) (void)cudaSetDevice(prev_);
  }

 private:
  int prev_ = 0;
  bool changed_ = false;
};

namespace detail {
inline std::mutex& runtime_mutex() {
  static std::mutex m;
  return m;
}
inline std::unordered_map<int, cudaStream_t>& streams() {
  static auto* s = new std::unordered_map<int, cudaStream_t>();  // never destroyed: outlives static teardown
  return *s;
}
}  // namespace detail

/// The stream metagrad's kernels and library calls use on `device`: one per device, created (non-blocking
/// with respect to the legacy default stream) on first use, unless set_stream() chose another.
inline cudaStream_t stream(int device) {
  std::lock_guard<std::mutex> lock(detail::runtime_mutex());
  auto& s = detail::streams();
  auto it = s.find(device);
  if (it != s.end()) return it->second;
  DeviceGuard g(device);
  cudaStream_t st = nullptr;
  check(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  s[device] = st;
  return st;
}

/// Makes metagrad use `s` (the caller's stream, which must outlive its use) on `device`. Memory the
/// caching allocator holds was freed in the order of the previous stream: synchronise it before switching.
inline void set_stream(int device, cudaStream_t s) {
  const cudaStream_t old = stream(device);
  {
    DeviceGuard g(device);
    check(cudaStreamSynchronize(old), "cudaStreamSynchronize");
  }
  std::lock_guard<std::mutex> lock(detail::runtime_mutex());
  detail::streams()[device] = s;
}

/// Waits for all work metagrad queued on `device`. @throws cuda_error with the first asynchronous error.
inline void synchronize(int device = 0) {
  DeviceGuard g(device);
  check(cudaStreamSynchronize(stream(device)), "cudaStreamSynchronize");
}

/// Device memory statistics of the caching allocator, in bytes. `current` is held by live tensors and
/// workspaces, `reserved` is what cudaMalloc gave the cache (current + cached free blocks), `peak` the
/// highest `current` since the last reset; `device_mallocs` counts cudaMalloc calls (flat in steady state).
struct DeviceMemoryStats {
  std::int64_t current_bytes = 0;
  std::int64_t peak_bytes = 0;
  std::int64_t reserved_bytes = 0;
  std::int64_t peak_reserved_bytes = 0;
  std::int64_t device_mallocs = 0;
  std::int64_t requests = 0;
};

/// A stream-ordered caching allocator. Freed blocks go back to a per-device pool and are handed out again
/// to later requests on the same stream: work queued on one stream runs in order, so a block freed there
/// may be reused by the next kernel without synchronising. Small requests are rounded to 512 bytes, large
/// ones to 2 MiB; a cached block is reused for a request when it is at most twice its size (so a large
/// block is not pinned by a small tensor). When cudaMalloc fails the cache is released and the call is
/// retried once before cuda_error (naming the size and the statistics) is thrown.
class CachingAllocator {
 public:
  /// Device memory of at least `bytes` bytes on `device`, ordered on stream(device). Null for 0 bytes.
  void* allocate(std::size_t bytes, int device) {
    if (bytes == 0) return nullptr;
    const std::size_t size = round_size(bytes);
    const cudaStream_t st = stream(device);
    std::lock_guard<std::mutex> lock(mutex_);
    auto& pool = pools_[device];
    auto& stats = pool.stats;
    ++stats.requests;
    // While a step is recorded, blocks the recording freed are reused first (they belong to the graph).
    const auto rec = recording_.find(device);
    const std::uint64_t owner = rec == recording_.end() ? 0 : rec->second;
    for (auto* free : {owner ? &private_[owner] : nullptr, &pool.free}) {
      if (!free) continue;
      auto it = free->lower_bound(Key{st, size});
      if (it != free->end() && it->first.stream == st && it->first.size <= 2 * size) {
        void* p = it->second;
        const std::size_t got = it->first.size;
        free->erase(it);
        live_[p] = Live{device, got, st, owner};
        add_current(stats, static_cast<std::int64_t>(got));
        return p;
      }
    }
    void* p = nullptr;
    {
      DeviceGuard g(device);
      cudaError_t e = cudaMalloc(&p, size);
      // Out of memory: hand the cached blocks back to the driver and try again; not while a step is being
      // recorded, where the device synchronisation that must come first is illegal (the recording then fails
      // with the error below and the step runs without a graph).
      if (e == cudaErrorMemoryAllocation && !recording_.count(device)) {
        (void)cudaGetLastError();
        release_cached(device, pool);
        e = cudaMalloc(&p, size);
      }
      if (e != cudaSuccess) {
        (void)cudaGetLastError();
        throw cuda_error("cudaMalloc of " + std::to_string(size) + " bytes on cuda:" + std::to_string(device) +
                         " failed: " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e) + " (metagrad holds " +
                         std::to_string(stats.current_bytes) + " bytes in tensors, " +
                         std::to_string(stats.reserved_bytes) + " reserved)");
      }
    }
    ++stats.device_mallocs;
    stats.reserved_bytes += static_cast<std::int64_t>(size);
    if (stats.reserved_bytes > stats.peak_reserved_bytes) stats.peak_reserved_bytes = stats.reserved_bytes;
    live_[p] = Live{device, size, st, owner};
    add_current(stats, static_cast<std::int64_t>(size));
    return p;
  }

  /// Returns a block to its pool (no device call). Unknown pointers are ignored.
  void deallocate(void* p) {
    if (!p) return;
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = live_.find(p);
    if (it == live_.end()) return;
    const Live l = it->second;
    live_.erase(it);
    auto& pool = pools_[l.device];
    pool.stats.current_bytes -= static_cast<std::int64_t>(l.size);
    // A block freed while a step is recorded, or made by a recording that is still replayed, is read and
    // written by every replay: it stays the recording's until the graph is destroyed.
    // A block made by a recording whose graph lives stays that recording's even when freed while another
    // one records (a train and an eval step recording in turn): its replays still write it.
    const auto rec = recording_.find(l.device);
    std::uint64_t owner = l.owner && private_.count(l.owner) ? l.owner : 0;
    if (!owner && rec != recording_.end()) owner = rec->second;
    (owner ? private_[owner] : pool.free).emplace(Key{l.stream, l.size}, p);
  }

  /// Starts a private pool for a recording on `device` (see deallocate). @return its id.
  std::uint64_t begin_recording(int device) {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::uint64_t id = ++next_owner_;
    recording_[device] = id;
    private_[id];
    return id;
  }
  /// Ends the recording on `device`; its blocks stay private until release_recording(id).
  void end_recording(int device) {
    std::lock_guard<std::mutex> lock(mutex_);
    recording_.erase(device);
  }
  /// The graph of recording `id` is gone: its blocks return to the cache. They were last used by work
  /// queued on their stream, so stream order keeps later users behind the last replay.
  void release_recording(int device, std::uint64_t id) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = private_.find(id);
    if (it == private_.end()) return;
    auto& free = pools_[device].free;
    for (auto& [key, p] : it->second) free.emplace(key, p);
    private_.erase(it);
  }

  /// Gives every cached (free) block of every device back to CUDA; live tensors keep theirs.
  void empty_cache() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [device, pool] : pools_) release_cached(device, pool);
  }

  DeviceMemoryStats stats(int device) {
    std::lock_guard<std::mutex> lock(mutex_);
    return pools_[device].stats;
  }
  void reset_peak(int device) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto& s = pools_[device].stats;
    s.peak_bytes = s.current_bytes;
    s.peak_reserved_bytes = s.reserved_bytes;
  }

  /// Requests are served in these units (exposed for tests of the size classes).
  static std::size_t round_size(std::size_t bytes) {
    constexpr std::size_t small_unit = 512, large_unit = std::size_t(2) << 20, small_limit = std::size_t(1) << 20;
    const std::size_t unit = bytes <= small_limit ? small_unit : large_unit;
    return (bytes + unit - 1) / unit * unit;
  }

 private:
  struct Key {
    cudaStream_t stream;
    std::size_t size;
    bool operator<(const Key& o) const {
      const auto a = reinterpret_cast<std::uintptr_t>(stream), b = reinterpret_cast<std::uintptr_t>(o.stream);
      return a != b ? a < b : size < o.size;
    }
  };
  struct Live {
    int device;
    std::size_t size;
    cudaStream_t stream;
    std::uint64_t owner;  // the recording that made it (0: none)
  };
  struct Pool {
    std::multimap<Key, void*> free;
    DeviceMemoryStats stats;
  };

  static void add_current(DeviceMemoryStats& s, std::int64_t n) {
    s.current_bytes += n;
    if (s.current_bytes > s.peak_bytes) s.peak_bytes = s.current_bytes;
  }
  static void release_cached(int device, Pool& pool) {
    if (pool.free.empty()) return;
    DeviceGuard g(device);
    // Blocks freed on a stream may still be read by queued work: let it finish first.
    (void)cudaDeviceSynchronize();
    for (auto& [key, p] : pool.free) {
      (void)cudaFree(p);
      pool.stats.reserved_bytes -= static_cast<std::int64_t>(key.size);
    }
    pool.free.clear();
  }

  std::mutex mutex_;
  std::unordered_map<void*, Live> live_;
  std::unordered_map<int, Pool> pools_;
  std::unordered_map<int, std::uint64_t> recording_;                      // device -> recording id
  std::unordered_map<std::uint64_t, std::multimap<Key, void*>> private_;  // recording id -> its free blocks
  std::uint64_t next_owner_ = 0;
};

/// The process's caching allocator (never destroyed: tensors may be freed during static destruction).
inline CachingAllocator& allocator() {
  static auto* a = new CachingAllocator();
  return *a;
}

/// Statistics of the caching allocator on `device`.
inline DeviceMemoryStats memory_stats(int device = 0) { return allocator().stats(device); }
/// Starts peak_bytes afresh from current_bytes.
inline void reset_peak_memory_stats(int device = 0) { allocator().reset_peak(device); }
/// Releases cached free blocks to the driver (tensors keep theirs).
inline void empty_cache() { allocator().empty_cache(); }

/// Device memory from the caching allocator held for a scope (library workspaces, temporaries).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(std::size_t bytes, int device) : ptr_(allocator().allocate(bytes, device)), bytes_(bytes) {}
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) { o.ptr_ = nullptr; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  ~DeviceBuffer() { allocator().deallocate(ptr_); }
  void* get() const { return ptr_; }
  std::size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

namespace detail {
// Two pinned buffers: host memory is copied into one while the other is on its way to the device, so a
// large transfer runs at the speed of pinned copies without pinning the caller's memory.
struct PinnedStaging {
  static constexpr std::size_t chunk = std::size_t(4) << 20;
  void* buf[2] = {nullptr, nullptr};
  cudaEvent_t done[2] = {nullptr, nullptr};
  std::mutex mutex;
  // On first use (under the mutex): the two pinned buffers and their events.
  void make_buffers() {
    for (int i = 0; i < 2; ++i)
      if (!buf[i]) {
        check(cudaHostAlloc(&buf[i], chunk, cudaHostAllocDefault), "cudaHostAlloc (staging)");
        check(cudaEventCreateWithFlags(&done[i], cudaEventDisableTiming), "cudaEventCreate");
      }
  }
};
// One per device: an event may only be recorded on a stream of the device it was made on.
inline PinnedStaging& staging(int device) {
  static auto* all = new std::map<int, PinnedStaging>();
  static std::mutex m;
  std::lock_guard<std::mutex> lock(m);
  return (*all)[device];  // std::map never moves its elements
}

/// @throws cuda_error naming `what` when stream(device) is recording a CUDA graph: a host copy there would be
///         recorded once and replayed with whatever the host buffer then holds (or, synchronising, break the
///         recording).
inline void refuse_during_capture(int device, const char* what) {
  cudaStreamCaptureStatus c = cudaStreamCaptureStatusNone;
  check(cudaStreamIsCapturing(stream(device), &c), "cudaStreamIsCapturing");
  if (c != cudaStreamCaptureStatusNone)
    throw cuda_error(std::string(what) + " on cuda:" + std::to_string(device) +
                     " while a CUDA graph is being recorded: copies between host and device belong outside a "
                     "recorded step");
}

// Below this size a plain cudaMemcpy (the driver stages it) is as fast as the pipeline.
inline constexpr std::size_t staging_threshold = std::size_t(1) << 20;

inline void copy_host_to_device(void* dst, const void* src, std::size_t bytes, int device) {
  DeviceGuard g(device);
  refuse_during_capture(device, "copy from host");
  const cudaStream_t st = stream(device);
  if (bytes < staging_threshold) {
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, st), "cudaMemcpyAsync (host to device)");
    check(cudaStreamSynchronize(st), "cudaStreamSynchronize");
    return;
  }
  auto& s = staging(device);
  std::lock_guard<std::mutex> lock(s.mutex);
  s.make_buffers();
  std::size_t off = 0;
  for (int k = 0; off < bytes; k ^= 1) {
    const std::size_t n = bytes - off < PinnedStaging::chunk ? bytes - off : PinnedStaging::chunk;
    check(cudaEventSynchronize(s.done[k]), "cudaEventSynchronize (staging)");
    std::memcpy(s.buf[k], static_cast<const char*>(src) + off, n);
    check(cudaMemcpyAsync(static_cast<char*>(dst) + off, s.buf[k], n, cudaMemcpyHostToDevice, st),
          "cudaMemcpyAsync (host to device)");
    check(cudaEventRecord(s.done[k], st), "cudaEventRecord");
    off += n;
  }
  check(cudaStreamSynchronize(st), "cudaStreamSynchronize");
}

// Pinned slots for uploads that return before the copy is done (copy_host_to_device_async). Four slots, used in
// turn: a training step uploads its inputs and its labels, so the host may queue two steps ahead of the GPU
// before it waits for a slot's last copy to finish.
struct UploadRing {
  static constexpr int slots = 4;
  void* buf[slots] = {};
  std::size_t bytes[slots] = {};
  cudaEvent_t done[slots] = {};
  int next = 0;
  std::mutex mutex;
};
// One per device (events belong to a device); never destroyed: the CUDA context may be gone before static
// destructors run.
inline UploadRing& upload_ring(int device) {
  static auto* all = new std::map<int, UploadRing>();
  static std::mutex m;
  std::lock_guard<std::mutex> lock(m);
  return (*all)[device];
}

/// Copies `bytes` of host memory at src to device memory at dst, queued on stream(device), and returns
/// without waiting for the copy: src is first copied into a pinned buffer of metagrad's, so the caller may
/// reuse it at once. Later work on stream(device) sees dst filled (stream order); work on other streams or
/// the host must synchronise first. What the Trainer uses to upload batches, so the host prepares the next
/// step while the GPU runs this one (copy_host_to_device waits for the copy, as Tensor::to promises).
/// @throws cuda_error when an allocation, the copy or an event fails.
inline void copy_host_to_device_async(void* dst, const void* src, std::size_t bytes, int device) {
  if (bytes == 0) return;
  DeviceGuard g(device);
  refuse_during_capture(device, "upload from host");
  auto& r = upload_ring(device);
  std::lock_guard<std::mutex> lock(r.mutex);
  const int k = r.next;
  r.next = (r.next + 1) % UploadRing::slots;
  if (r.done[k]) check(cudaEventSynchronize(r.done[k]), "cudaEventSynchronize (upload slot)");
  if (r.bytes[k] < bytes) {
    if (r.buf[k]) check(cudaFreeHost(r.buf[k]), "cudaFreeHost (upload slot)");
    r.buf[k] = nullptr;
    r.bytes[k] = 0;
    check(cudaHostAlloc(&r.buf[k], bytes, cudaHostAllocDefault), "cudaHostAlloc (upload slot)");
    r.bytes[k] = bytes;
  }
  if (!r.done[k]) check(cudaEventCreateWithFlags(&r.done[k], cudaEventDisableTiming), "cudaEventCreate");
  std::memcpy(r.buf[k], src, bytes);
  const cudaStream_t st = stream(device);
  check(cudaMemcpyAsync(dst, r.buf[k], bytes, cudaMemcpyHostToDevice, st), "cudaMemcpyAsync (upload)");
  check(cudaEventRecord(r.done[k], st), "cudaEventRecord (upload slot)");
}

inline void copy_device_to_host(void* dst, const void* src, std::size_t bytes, int device) {
  DeviceGuard g(device);
  refuse_during_capture(device, "copy to host");
  const cudaStream_t st = stream(device);
  if (bytes < staging_threshold) {
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync (device to host)");
    check(cudaStreamSynchronize(st), "cudaStreamSynchronize");
    return;
  }
  auto& s = staging(device);
  std::lock_guard<std::mutex> lock(s.mutex);
  s.make_buffers();
  // Chunk k is copied out of its pinned buffer while chunk k + 1 is in flight into the other one.
  std::size_t off = 0, pending_off = 0, pending_n = 0;
  int pending = -1;
  for (int k = 0; off < bytes; k ^= 1) {
    const std::size_t n = bytes - off < PinnedStaging::chunk ? bytes - off : PinnedStaging::chunk;
    check(cudaMemcpyAsync(s.buf[k], static_cast<const char*>(src) + off, n, cudaMemcpyDeviceToHost, st),
          "cudaMemcpyAsync (device to host)");
    check(cudaEventRecord(s.done[k], st), "cudaEventRecord");
    if (pending >= 0) {
      check(cudaEventSynchronize(s.done[pending]), "cudaEventSynchronize (staging)");
      std::memcpy(static_cast<char*>(dst) + pending_off, s.buf[pending], pending_n);
    }
    pending = k;
    pending_off = off;
    pending_n = n;
    off += n;
  }
  check(cudaEventSynchronize(s.done[pending]), "cudaEventSynchronize (staging)");
  std::memcpy(static_cast<char*>(dst) + pending_off, s.buf[pending], pending_n);
}

// The core/ memory hooks (core/storage.hpp): how Storage and Tensor reach device memory from here.
inline void* hook_allocate(std::size_t bytes, Device d) {
  check_device(d, "allocate");
  return allocator().allocate(bytes, d.index());
}
inline void hook_deallocate(void* p, Device) { allocator().deallocate(p); }
inline void hook_copy(void* dst, Device dd, const void* src, Device sd, std::size_t bytes) {
  if (bytes == 0) return;
  if (dd.is_cuda() && sd.is_cpu()) return copy_host_to_device(dst, src, bytes, dd.index());
  if (dd.is_cpu() && sd.is_cuda()) return copy_device_to_host(dst, src, bytes, sd.index());
  if (dd.is_cuda() && sd.is_cuda()) {
    DeviceGuard g(dd.index());
    const cudaStream_t st = stream(dd.index());
    if (dd.index() != sd.index()) {
      // The source's producer ran on the source device's stream: finish it before the peer copy.
      {
        DeviceGuard gs(sd.index());
        check(cudaStreamSynchronize(stream(sd.index())), "cudaStreamSynchronize");
      }
      check(cudaMemcpyPeerAsync(dst, dd.index(), src, sd.index(), bytes, st), "cudaMemcpyPeerAsync");
    } else {
      check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, st), "cudaMemcpyAsync (device to device)");
    }
    return;
  }
  std::memcpy(dst, src, bytes);
}
inline void hook_fill_zero(void* p, std::size_t bytes, Device d) {
  DeviceGuard g(d.index());
  check(cudaMemsetAsync(p, 0, bytes, stream(d.index())), "cudaMemsetAsync");
}
inline void hook_synchronize(Device d) { synchronize(d.index()); }

// CUDA-graph recording of a compiled step (graph/program.hpp, graph/capture.hpp). Relaxed capture mode: the
// caching allocator may still call cudaMalloc while a step is recorded (its first runs sized everything, so
// that is rare); any call that cannot be recorded fails the recording and the Program runs uncaptured.
struct Recording {
  int device;
  std::uint64_t pool;
};
struct Recorded {
  cudaGraphExec_t exec;
  int device;
  std::uint64_t pool;
};
inline void* hook_graph_begin(Device d) {
  DeviceGuard g(d.index());
  auto* r = new Recording{d.index(), allocator().begin_recording(d.index())};
  const cudaError_t e = cudaStreamBeginCapture(stream(d.index()), cudaStreamCaptureModeRelaxed);
  if (e != cudaSuccess) {
    allocator().end_recording(r->device);
    allocator().release_recording(r->device, r->pool);
    delete r;
    check(e, "cudaStreamBeginCapture");
  }
  return r;
}
inline void hook_graph_abort(Device d, void* token) {
  auto* r = static_cast<Recording*>(token);
  DeviceGuard g(d.index());
  cudaGraph_t graph = nullptr;
  (void)cudaStreamEndCapture(stream(d.index()), &graph);
  if (graph) (void)cudaGraphDestroy(graph);
  (void)cudaGetLastError();
  // Nothing recorded ever runs: the blocks the recording freed go straight back to the cache.
  allocator().end_recording(r->device);
  allocator().release_recording(r->device, r->pool);
  delete r;
}
inline void* hook_graph_end(Device d, void* token, std::string& why) {
  auto* r = static_cast<Recording*>(token);
  DeviceGuard g(d.index());
  cudaGraph_t graph = nullptr;
  cudaError_t e = cudaStreamEndCapture(stream(d.index()), &graph);
  allocator().end_recording(r->device);
  cudaGraphExec_t exec = nullptr;
  if (e == cudaSuccess) e = cudaGraphInstantiate(&exec, graph, 0);
  if (graph) (void)cudaGraphDestroy(graph);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    why =
        std::string("recording the step as a CUDA graph failed: ") + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
    allocator().release_recording(r->device, r->pool);
    delete r;
    return nullptr;
  }
  auto* out = new Recorded{exec, r->device, r->pool};
  delete r;
  return out;
}
inline void hook_graph_launch(void* graph) {
  const auto* r = static_cast<const Recorded*>(graph);
  DeviceGuard g(r->device);
  check(cudaGraphLaunch(r->exec, stream(r->device)), "cudaGraphLaunch");
}
inline void hook_graph_destroy(void* graph) {
  auto* r = static_cast<Recorded*>(graph);
  {
    DeviceGuard g(r->device);
    // The last replay may still be running; its memory goes back to the cache in stream order, but the
    // executable graph is freed only after it finished.
    (void)cudaStreamSynchronize(stream(r->device));
    (void)cudaGraphExecDestroy(r->exec);
    (void)cudaGetLastError();
  }
  allocator().release_recording(r->device, r->pool);
  delete r;
}

inline bool install_memory_hooks() {
  auto& h = metagrad::detail::device_memory_hooks();
  h.allocate = &hook_allocate;
  h.deallocate = &hook_deallocate;
  h.copy = &hook_copy;
  h.fill_zero = &hook_fill_zero;
  h.synchronize = &hook_synchronize;
  h.graph_begin = &hook_graph_begin;
  h.graph_end = &hook_graph_end;
  h.graph_abort = &hook_graph_abort;
  h.graph_launch = &hook_graph_launch;
  h.graph_destroy = &hook_graph_destroy;
  return true;
}
// Installed during static initialisation of any program with a translation unit that includes this file.
inline const bool memory_hooks_installed = install_memory_hooks();
}  // namespace detail

}  // namespace cuda
METAGRAD_NAMESPACE_END

#endif  // __CUDACC__
