// metagrad/backend/multi_tensor_plan.hpp — the device-independent half of multi-tensor updates (apex's and
// PyTorch's multi_tensor_apply design, our own code): a list of tensors, each given as NPtr same-sized
// buffers (an optimiser's parameter, gradient and state), is cut into fixed-size chunks and packed into
// launches. Each launch's table (buffer pointers per tensor, and per chunk the tensor it belongs to and its
// index there) is a trivially copyable kernel argument within the kernel-parameter budget, so one launch
// updates many tensors: block b of a launch runs chunk b. The per-chunk body is plain METAGRAD_HD code with
// 16-byte vector accesses where every buffer is aligned; CPU tests replay it exactly as the kernel runs it.
// Include <metagrad/metagrad.hpp> instead.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "cuda/launch.hpp"

METAGRAD_NAMESPACE_BEGIN
namespace detail {

/// Elements per chunk (one thread block's work): 64Ki, as apex and PyTorch use.
inline constexpr index_t multi_tensor_chunk_size = index_t(1) << 16;

/// Bytes of a launch table: CUDA 12.1+ passes 32764 bytes of kernel parameters (Volta and newer); the rest
/// of 32000 is left to the update functor (options and per-step scalars).
inline constexpr std::size_t multi_tensor_table_budget = 31232;

/// One launch: per tensor slot its NPtr buffers and element count; per chunk (thread block) its tensor
/// slot and its index within that tensor (elements [index * chunk_size, min(numel, (index + 1) chunk_size))).
template <class T, int NPtr>
struct MultiTensorTable {
  static constexpr int max_chunks = 2048;
  static constexpr int max_tensors =
      static_cast<int>((multi_tensor_table_budget - 2 * sizeof(index_t) - 2 * sizeof(std::int32_t) * max_chunks) /
                       (NPtr * sizeof(T*) + sizeof(index_t)));
  static_assert(max_tensors > 0, "metagrad: too many buffers per tensor for one multi-tensor table");

  index_t chunk_size;
  std::int32_t num_tensors;
  std::int32_t num_chunks;
  T* ptr[NPtr][max_tensors];
  index_t numel[max_tensors];
  std::int32_t chunk_tensor[max_chunks];
  std::int32_t chunk_index[max_chunks];
};

/// One tensor of a multi-tensor list: NPtr buffers of `numel` contiguous elements each (by convention
/// parameter, gradient, then the state buffers).
template <class T, int NPtr>
struct MultiTensorEntry {
  T* ptr[NPtr];
  index_t numel;
};

/// Packs `list` into launches and calls launch(const MultiTensorTable<T, NPtr>&) for each, in order. Empty
/// tensors are left out. A tensor whose chunks do not fit the current launch continues in the next one (in
/// slot 0). `max_tensors` / `max_chunks` may lower the table's capacities (tests of the packing).
/// @throws error when a tensor has more than 2^31 - 1 chunks or the limits are out of range.
template <class T, int NPtr, class Launch>
void for_each_multi_tensor_launch(const std::vector<MultiTensorEntry<T, NPtr>>& list, index_t chunk_size,
                                  Launch&& launch, int max_tensors = MultiTensorTable<T, NPtr>::max_tensors,
                                  int max_chunks = MultiTensorTable<T, NPtr>::max_chunks) {
  using Table = MultiTensorTable<T, NPtr>;
  if (chunk_size <= 0 || max_tensors <= 0 || max_tensors > Table::max_tensors || max_chunks <= 0 ||
      max_chunks > Table::max_chunks)
    throw error("multi-tensor launch: chunk size " + std::to_string(chunk_size) + ", max_tensors " +
                std::to_string(max_tensors) + " and max_chunks " + std::to_string(max_chunks) +
                " must be positive and within the table's capacity (" + std::to_string(Table::max_tensors) +
                " tensors, " + std::to_string(Table::max_chunks) + " chunks)");
  // ~31 KB: on the heap, not on the caller's stack.
  auto table = std::make_unique<Table>();
  Table& t = *table;
  t.chunk_size = chunk_size;
  t.num_tensors = 0;
  t.num_chunks = 0;
  for (const auto& e : list) {
    if (e.numel <= 0) continue;
    const index_t nchunks = (e.numel + chunk_size - 1) / chunk_size;
    if (nchunks > index_t(INT32_MAX))
      throw error("multi-tensor launch: a tensor of " + std::to_string(e.numel) + " elements has more than 2^31 - 1 " +
                  "chunks of " + std::to_string(chunk_size));
    if (t.num_tensors == max_tensors) {
      launch(static_cast<const Table&>(t));
      t.num_tensors = 0;
      t.num_chunks = 0;
    }
    int slot = t.num_tensors++;
    for (int j = 0; j < NPtr; ++j) t.ptr[j][slot] = e.ptr[j];
    t.numel[slot] = e.numel;
    for (index_t c = 0; c < nchunks; ++c) {
      if (t.num_chunks == max_chunks) {
        launch(static_cast<const Table&>(t));
        // The tensor's remaining chunks go on in the next launch, where it is the only tensor so far.
        for (int j = 0; j < NPtr; ++j) t.ptr[j][0] = e.ptr[j];
        t.numel[0] = e.numel;
        slot = 0;
        t.num_tensors = 1;
        t.num_chunks = 0;
      }
      t.chunk_tensor[t.num_chunks] = slot;
      t.chunk_index[t.num_chunks] = static_cast<std::int32_t>(c);
      ++t.num_chunks;
    }
  }
  if (t.num_chunks > 0) launch(static_cast<const Table&>(t));
}

/// Lanes of one 16-byte vector access of T (1 when T is 16 bytes or more).
template <class T>
inline constexpr int multi_tensor_lanes = sizeof(T) >= 16 ? 1 : static_cast<int>(16 / sizeof(T));

/// Runs chunk `c` of table `t` as thread `lane` of `lanes` threads: for every element i of the chunk it
/// calls op(p[i], g[i], s) with s the element's NS state values (ptr[0] is the parameter, ptr[1] the
/// gradient, ptr[2 .. 2 + NS) the states; s has Op::max_state slots, those past NS zero) and writes p and
/// the states back. Threads take 16-byte vectors of consecutive elements when every buffer of the chunk is
/// 16-byte aligned, then the tail element by element; otherwise elements one by one.
/// @pre NPtr == 2 + NS, NS <= Op::max_state.
template <int NS, class T, int NPtr, class Op>
METAGRAD_HD METAGRAD_INLINE void multi_tensor_chunk(const MultiTensorTable<T, NPtr>& t, int c, index_t lane,
                                                    index_t lanes, const Op& op) {
  static_assert(NPtr == 2 + NS && NS <= Op::max_state, "metagrad: multi-tensor chunk buffers do not match");
  constexpr int N = multi_tensor_lanes<T>;
  constexpr int MS = Op::max_state > 0 ? Op::max_state : 1;
  const int slot = t.chunk_tensor[c];
  const index_t start = static_cast<index_t>(t.chunk_index[c]) * t.chunk_size;
  const index_t rest = t.numel[slot] - start;
  const index_t n = rest < t.chunk_size ? rest : t.chunk_size;
  T* b[NPtr];
  bool aligned = N > 1;
  for (int j = 0; j < NPtr; ++j) {
    b[j] = t.ptr[j][slot] + start;
    aligned = aligned && reinterpret_cast<std::uintptr_t>(b[j]) % 16 == 0;
  }
  index_t done = 0;
  if (aligned) {
    using V = cuda::Lanes<T, N>;
    const index_t nv = n / N;
    for (index_t v = lane; v < nv; v += lanes) {
      V x[NPtr];
      for (int j = 0; j < NPtr; ++j) x[j] = *reinterpret_cast<const V*>(b[j] + v * N);
      METAGRAD_UNROLL_
      for (int k = 0; k < N; ++k) {
        T s[MS] = {};
        for (int j = 0; j < NS; ++j) s[j] = x[2 + j].v[k];
        op(x[0].v[k], x[1].v[k], s);
        for (int j = 0; j < NS; ++j) x[2 + j].v[k] = s[j];
      }
      *reinterpret_cast<V*>(b[0] + v * N) = x[0];
      for (int j = 0; j < NS; ++j) *reinterpret_cast<V*>(b[2 + j] + v * N) = x[2 + j];
    }
    done = nv * N;
  }
  for (index_t i = done + lane; i < n; i += lanes) {
    T s[MS] = {};
    for (int j = 0; j < NS; ++j) s[j] = b[2 + j][i];
    T p = b[0][i];
    op(p, b[1][i], s);
    b[0][i] = p;
    for (int j = 0; j < NS; ++j) b[2 + j][i] = s[j];
  }
}

}  // namespace detail
METAGRAD_NAMESPACE_END
