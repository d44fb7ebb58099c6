// metagrad/graph/capture.hpp — what a Program needs to replay a recorded step (a CUDA graph) instead of
// running it: the capture key of its outputs, which changes whenever a recorded step would no longer compute
// what a fresh run computes, and the recorded graph's owner. A recording bakes in every device address,
// shape and scalar of the step's kernels and library calls; the addresses and shapes come from the tensors
// the expressions read, and the only value that changes between runs of the same expression objects is a
// dropout site's step. The key is those, gathered by one walk of the outputs (a run-time choice between two
// branches contributes its choice and walks only the branch it takes).
// The walk and the policy are device-independent and tested on the CPU; the recording itself is the CUDA
// backend's (backend/cuda/graph.hpp), reached through the device hooks of core/storage.hpp.
// Include <metagrad/graph.hpp> instead.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "../core/device.hpp"
#include "../core/storage.hpp"
#include "../core/tensor.hpp"
#include "../expr/node.hpp"

METAGRAD_NAMESPACE_BEGIN

namespace graph::detail {

template <class T, int R>
void append_tensor_key(const Tensor<T, R>& t, std::vector<std::uint64_t>& key) {
  if (!t.defined()) {
    key.push_back(0);
    return;
  }
  key.push_back(reinterpret_cast<std::uintptr_t>(t.data()));
  key.push_back(static_cast<std::uint64_t>(t.device().index()) + (t.device().is_cuda() ? (1ull << 32) : 0));
  for (int d = 0; d < R; ++d) {
    key.push_back(static_cast<std::uint64_t>(t.shape()[d]));
    key.push_back(static_cast<std::uint64_t>(t.strides()[d]));
  }
}

/// Appends to `key` what a recording of e depends on beyond e's type: the address, device, shape and strides
/// of every tensor it reads (bound Inputs included), the step of every dropout site and the branch of every
/// choice between two branches (whose other branch is not walked, as it is not run).
/// @throws unbound_error when an Input is not bound.
template <class E>
void append_capture_key(const E& e, std::vector<std::uint64_t>& key) {
  if constexpr (is_tensor_v<E>) {
    append_tensor_key(e, key);
  } else if constexpr (requires { e.value().device(); }) {
    append_tensor_key(e.value(), key);
  } else {
    if constexpr (requires { e.key().step(); }) key.push_back(e.key().step());
    if constexpr (requires {
                    e.takes_first();
                    e.first_branch();
                    e.second_branch();
                  }) {
      const bool first = e.takes_first();
      key.push_back(first ? 1 : 2);
      if (first)
        append_capture_key(e.first_branch(), key);
      else
        append_capture_key(e.second_branch(), key);
    } else if constexpr (requires { e.children(); }) {
      metagrad::detail::unpack([&](const auto&... c) { (append_capture_key(c, key), ...); }, e.children());
    }
  }
}

/// The capture key of a tuple of outputs.
template <class Tuple>
std::vector<std::uint64_t> capture_key(const Tuple& outs) {
  std::vector<std::uint64_t> key;
  metagrad::detail::unpack([&](const auto&... o) { (append_capture_key(o, key), ...); }, outs);
  return key;
}

/// A recorded step, freed (with the memory its recording kept) when destroyed or replaced.
class RecordedGraph {
 public:
  RecordedGraph() = default;
  RecordedGraph(const RecordedGraph&) = delete;
  RecordedGraph& operator=(const RecordedGraph&) = delete;
  RecordedGraph(RecordedGraph&& o) noexcept : g_(std::exchange(o.g_, nullptr)), key_(std::move(o.key_)) {}
  RecordedGraph& operator=(RecordedGraph&& o) noexcept {
    if (this != &o) {
      reset();
      g_ = std::exchange(o.g_, nullptr);
      key_ = std::move(o.key_);
    }
    return *this;
  }
  ~RecordedGraph() { reset(); }

  void reset() noexcept {
    if (g_) metagrad::detail::device_memory_hooks().graph_destroy(g_);
    g_ = nullptr;
    key_.clear();
  }
  void set(void* g, std::vector<std::uint64_t> key) {
    reset();
    g_ = g;
    key_ = std::move(key);
  }
  bool holds() const { return g_ != nullptr; }
  bool matches(const std::vector<std::uint64_t>& key) const { return g_ && key == key_; }
  void launch() const { metagrad::detail::device_memory_hooks().graph_launch(g_); }

 private:
  void* g_ = nullptr;
  std::vector<std::uint64_t> key_;
};

/// When a Program records and replays (Program::run). A step is recorded on the second of two consecutive
/// runs with the same key (the first run of a key finds library algorithms and sizes buffers, which a
/// recording must not do), and replayed while the key stays the same.
struct CapturePolicy {
  enum class Action { run, record, replay };
  static Action decide(bool enabled, bool on_cuda, bool same_key_as_last_run, bool holds_matching_graph) {
    if (!enabled || !on_cuda) return Action::run;
    if (holds_matching_graph) return Action::replay;
    return same_key_as_last_run ? Action::record : Action::run;
  }
};

}  // namespace graph::detail

METAGRAD_NAMESPACE_END
