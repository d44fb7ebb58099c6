// Tests of TensorDataset and DataLoader: every sample exactly once per epoch, shuffling that is a
// permutation, differs between epochs and is reproducible, normalised values against a naive double
// computation, drop_last, prefetching with an early break and with an exception, buffer reuse that never
// overwrites a batch the caller kept, and option errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <metagrad/io.hpp>
#include <numeric>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace metagrad;

namespace {

// N images [N, 2, 3] of bytes whose values encode the sample (so a row identifies where it came from);
// label of sample i is 1000 + i.
TensorDataset<std::uint8_t, 3> byte_dataset(index_t n) {
  Tensor<std::uint8_t, 3> x(Shape<3>{n, 2, 3});
  for (index_t i = 0; i < n; ++i)
    for (index_t k = 0; k < 6; ++k) x.data()[i * 6 + k] = static_cast<std::uint8_t>((i * 7 + k * 31) % 256);
  Tensor<std::int64_t, 1> y(Shape<1>{n});
  for (index_t i = 0; i < n; ++i) y.data()[i] = 1000 + i;
  return TensorDataset(x, y);
}

// Checks that `b` holds samples `ids` of the byte dataset, normalised as (v * scale - mean) / stddev.
void check_batch(const Batch<3>& b, const std::vector<index_t>& ids, double scale, double mean, double stddev) {
  REQUIRE(b.x.shape() == Shape<3>{static_cast<index_t>(ids.size()), 2, 3});
  REQUIRE(b.y.shape()[0] == static_cast<index_t>(ids.size()));
  for (std::size_t r = 0; r < ids.size(); ++r) {
    CHECK(b.y(static_cast<index_t>(r)) == 1000 + ids[r]);
    for (index_t k = 0; k < 6; ++k) {
      const double v = static_cast<double>((ids[r] * 7 + k * 31) % 256);
      const double want = (v * scale - mean) / stddev;
      CHECK(b.x.data()[static_cast<index_t>(r) * 6 + k] == doctest::Approx(want).epsilon(1e-6));
    }
  }
}

// All samples of one epoch, in batch order, checking each batch's values along the way.
template <class Range>
std::vector<index_t> collect(Range&& range, index_t batch_size, double scale = 1.0 / 255, double mean = 0,
                             double stddev = 1) {
  std::vector<index_t> seen;
  index_t expected_index = 0;
  for (const auto& b : range) {
    CHECK(b.index == expected_index++);
    std::vector<index_t> ids;
    for (index_t i = 0; i < b.y.shape()[0]; ++i) ids.push_back(b.y(i) - 1000);
    CHECK(static_cast<index_t>(ids.size()) <= batch_size);
    check_batch(b, ids, scale, mean, stddev);
    seen.insert(seen.end(), ids.begin(), ids.end());
  }
  return seen;
}

std::vector<index_t> iota(index_t n) {
  std::vector<index_t> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

}  // namespace

TEST_CASE("dataset: batches cover every sample once per epoch, in order without shuffle") {
  for (int prefetch : {0, 1, 3}) {
    CAPTURE(prefetch);
    DataLoader loader(byte_dataset(10), {.batch_size = 3, .prefetch = prefetch});
    CHECK(loader.size() == 10);
    CHECK(loader.num_batches() == 4);
    std::vector<index_t> sizes;
    for (const auto& b : loader) sizes.push_back(b.x.shape()[0]);
    CHECK(sizes == std::vector<index_t>{3, 3, 3, 1});
    CHECK(collect(loader, 3) == iota(10));
    CHECK(loader.next_epoch() == 2);
  }
}

TEST_CASE("dataset: shuffling is a permutation per epoch, differs between epochs, and is reproducible") {
  const auto ds = byte_dataset(23);
  DataLoader a(ds, {.batch_size = 5, .shuffle = true, .seed = 42});
  DataLoader b(ds, {.batch_size = 5, .shuffle = true, .seed = 42, .prefetch = 0});
  DataLoader c(ds, {.batch_size = 5, .shuffle = true, .seed = 43});

  const auto e0 = collect(a, 5), e1 = collect(a, 5);
  auto sorted0 = e0, sorted1 = e1;
  std::sort(sorted0.begin(), sorted0.end());
  std::sort(sorted1.begin(), sorted1.end());
  CHECK(sorted0 == iota(23));
  CHECK(sorted1 == iota(23));
  CHECK(e0 != e1);
  CHECK(e0 != iota(23));
  CHECK(e0 == a.order(0));
  CHECK(e1 == a.order(1));

  // Same seed and epoch, another loader (and no prefetch thread): the same order. Another seed: not.
  CHECK(collect(b, 5) == e0);
  CHECK(collect(b.epoch(1), 5) == e1);
  CHECK(collect(c, 5) != e0);
  // Replaying an epoch, or resuming at one.
  CHECK(collect(a.epoch(0), 5) == e0);
  a.set_epoch(1);
  CHECK(collect(a, 5) == e1);
  // Many epochs give many different permutations.
  std::vector<std::vector<index_t>> orders;
  for (std::uint64_t e = 0; e < 20; ++e) orders.push_back(a.order(e));
  std::sort(orders.begin(), orders.end());
  CHECK(std::unique(orders.begin(), orders.end()) == orders.end());
}

TEST_CASE("dataset: normalisation while converting") {
  SUBCASE("bytes: automatic 1/255 scale, mean and stddev") {
    DataLoader loader(byte_dataset(7), {.batch_size = 4, .mean = 0.25, .stddev = 0.5});
    CHECK(collect(loader, 4, 1.0 / 255, 0.25, 0.5) == iota(7));
  }
  SUBCASE("bytes: explicit scale") {
    DataLoader loader(byte_dataset(7), {.batch_size = 7, .scale = 2.0, .mean = 10, .stddev = 4});
    CHECK(collect(loader, 7, 2.0, 10, 4) == iota(7));
  }
  SUBCASE("float inputs, rank 1 samples, strided view") {
    // A [2, 5] float matrix viewed transposed as 5 samples of 2 features.
    Tensor<float, 2> m(Shape<2>{2, 5});
    for (index_t i = 0; i < 10; ++i) m.data()[i] = static_cast<float>(i) * 0.5f - 1.0f;
    const auto xt = Tensor<float, 2>::from_storage(m.storage(), 0, Shape<2>{5, 2}, Strides<2>{{1, 5}});
    Tensor<std::int64_t, 1> y(Shape<1>{5});
    for (index_t i = 0; i < 5; ++i) y.data()[i] = i;
    DataLoader loader(TensorDataset(xt, y), {.batch_size = 2, .shuffle = true, .seed = 3, .mean = 1, .stddev = 2});
    index_t count = 0;
    for (const auto& b : loader)
      for (index_t r = 0; r < b.y.shape()[0]; ++r, ++count)
        for (index_t f = 0; f < 2; ++f) CHECK(b.x(r, f) == doctest::Approx((m(f, b.y(r)) - 1.0) / 2.0).epsilon(1e-6));
    CHECK(count == 5);
  }
  SUBCASE("scalar samples (rank-1 inputs)") {
    Tensor<std::uint8_t, 1> x = {10, 20, 30, 40, 50};
    Tensor<std::int64_t, 1> y = {0, 1, 2, 3, 4};
    DataLoader loader(TensorDataset(x, y), {.batch_size = 2, .shuffle = true, .scale = 1});
    for (const auto& b : loader)
      for (index_t r = 0; r < b.y.shape()[0]; ++r) CHECK(b.x(r) == static_cast<float>(10 * (b.y(r) + 1)));
  }
}

TEST_CASE("dataset: drop_last") {
  DataLoader loader(byte_dataset(10), {.batch_size = 3, .shuffle = true, .drop_last = true});
  CHECK(loader.num_batches() == 3);
  index_t batches = 0;
  for (const auto& b : loader) {
    CHECK(b.x.shape()[0] == 3);
    ++batches;
  }
  CHECK(batches == 3);
  const auto seen = collect(loader, 3);
  CHECK(seen.size() == 9);
  auto order = loader.order(1);
  order.resize(9);
  CHECK(seen == order);
  CHECK(DataLoader(byte_dataset(9), {.batch_size = 3, .drop_last = true}).num_batches() == 3);
  CHECK(DataLoader(byte_dataset(2), {.batch_size = 3, .drop_last = true}).num_batches() == 0);
}

TEST_CASE("dataset: prefetch stops cleanly when the loop is left early") {
  std::atomic<int> produced{0};
  DataLoader loader(byte_dataset(400), {.batch_size = 4, .prefetch = 2});
  loader.set_transform([&](Batch<3>&) { ++produced; });
  for (const auto& b : loader) {
    CHECK(b.index == 0);
    break;
  }
  // The worker was joined when the loop's iterator died: nothing more is produced, and far fewer than the
  // epoch's 100 batches were (the current one, the bounded queue, and one in flight).
  const int after_break = produced.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(produced.load() == after_break);
  CHECK(after_break <= 4);
  // The next loop is a fresh, complete epoch.
  produced = 0;
  index_t n = 0;
  for (const auto& b : loader) n += b.x.shape()[0];
  CHECK(n == 400);
  CHECK(produced.load() == 100);
  // An iterator abandoned mid-epoch without a loop, and the loader destroyed before it: no hang, no crash.
  {
    auto it = loader.begin();
    ++it;
    CHECK(it->index == 1);
  }
}

TEST_CASE("dataset: an exception while preparing a batch reaches the caller") {
  for (int prefetch : {0, 2}) {
    CAPTURE(prefetch);
    DataLoader loader(byte_dataset(20), {.batch_size = 2, .prefetch = prefetch});
    loader.set_transform([](Batch<3>& b) {
      if (b.index == 3) throw std::runtime_error("augmentation failed on batch 3");
    });
    std::vector<index_t> got;
    bool thrown = false;
    try {
      for (const auto& b : loader) got.push_back(b.index);
    } catch (const std::runtime_error& e) {
      thrown = std::string(e.what()) == "augmentation failed on batch 3";
    }
    CHECK(thrown);
    CHECK(got == std::vector<index_t>{0, 1, 2});  // the batches prepared before the failure still arrive
  }
}

TEST_CASE("dataset: batch buffers are reused only when the caller let go of them") {
  DataLoader loader(byte_dataset(64), {.batch_size = 4, .shuffle = true, .prefetch = 2});
  for (const auto& b : loader) (void)b;  // warm up
  const auto before = memory_stats().allocations;
  for (int e = 0; e < 3; ++e)
    for (const auto& b : loader) (void)b;
  // 48 batches of two tensors each; recycled through the loader's pool, all but a few (when the worker
  // runs further ahead than in the warm-up epoch) reuse memory.
  CHECK(memory_stats().allocations - before <= 8);

  // A batch the caller keeps is never overwritten.
  std::vector<Batch<3>> kept;
  std::vector<std::vector<float>> values;
  for (const auto& b : loader) {
    kept.push_back(b);
    values.push_back(b.x.to_vector());
  }
  for (std::size_t i = 0; i < kept.size(); ++i) CHECK(kept[i].x.to_vector() == values[i]);
  std::vector<index_t> ids;
  for (const auto& b : kept)
    for (index_t i = 0; i < 4; ++i) ids.push_back(b.y(i) - 1000);
  CHECK(ids == loader.order(loader.next_epoch() - 1));
}

TEST_CASE("dataset: invalid datasets and options") {
  Tensor<std::uint8_t, 2> x(Shape<2>{5, 3});
  Tensor<std::int64_t, 1> y(Shape<1>{4});
  CHECK_THROWS_AS(TensorDataset(x, y), shape_error);
  CHECK_THROWS_AS(TensorDataset(x, Tensor<std::int64_t, 1>()), error);
  const auto ds = byte_dataset(4);
  CHECK_THROWS_AS(DataLoader(ds, {.batch_size = 0}), error);
  CHECK_THROWS_AS(DataLoader(ds, {.stddev = 0}), error);
  CHECK_THROWS_AS(DataLoader(ds, {.prefetch = -1}), error);
}
