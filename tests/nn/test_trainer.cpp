// The training loop and state dicts: a small classifier must learn a synthetic problem; reading the running loss
// every step or once gives the same figures, and a loss that stops being finite stops training; checkpoints
// resume where they stopped; state dicts round-trip, report mismatches and refuse them in strict mode.
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <metagrad/nn.hpp>
#include <sstream>
#include <string>
#include <vector>

using namespace metagrad;

namespace {

struct Batch {
  Tensor<float, 2> x;
  Tensor<std::int64_t, 1> y;
};

// Two Gaussian blobs in 2-D, class = which blob; a fixed list of batches.
struct BlobLoader {
  std::vector<Batch> batches;
  BlobLoader(int n_batches, int batch, std::uint64_t seed) {
    Generator gen(seed);
    for (int b = 0; b < n_batches; ++b) {
      Tensor<float, 2> x = eval(normal<float>({batch, 2}, 0.0, 1.0, gen));
      Tensor<std::int64_t, 1> y(Shape<1>{{batch}});
      for (int i = 0; i < batch; ++i) {
        y.data()[i] = i % 2;
        const float shift = i % 2 ? 2.0f : -2.0f;
        x.data()[2 * i] += shift;
        x.data()[2 * i + 1] -= shift;
      }
      batches.push_back({x, y});
    }
  }
  std::size_t num_batches() const { return batches.size(); }
  auto begin() const { return batches.begin(); }
  auto end() const { return batches.end(); }
};

auto make_model() { return nn::sequential<struct blob_mlp>(nn::linear(2, 16), nn::relu(), nn::linear(16, 2)); }

auto ce = [](const auto& logits, const auto& y) { return cross_entropy(logits, y); };

// Trainer options: `epochs`, silent, then whatever `f` sets.
template <class F>
nn::TrainerOptions options(int epochs, F f) {
  nn::TrainerOptions o;
  o.epochs = epochs;
  o.out = nullptr;
  f(o);
  return o;
}

nn::LoadOptions non_strict() {
  nn::LoadOptions o;
  o.strict = false;
  return o;
}

std::filesystem::path tmp_path(const std::string& name) {
  return std::filesystem::temp_directory_path() / ("metagrad_test_trainer_" + name);
}

template <class M>
std::vector<float> flat_state(const M& m) {
  std::vector<float> v;
  for (const auto& e : nn::state_of(m)) {
    const float* d = static_cast<const float*>(e.data);
    v.insert(v.end(), d, d + e.numel());
  }
  return v;
}

}  // namespace

TEST_CASE("trainer: a small classifier learns two blobs; progress, metrics CSV and early stopping") {
  manual_seed(7);
  auto model = make_model();
  nn::SGD opt(model.params(), {.lr = 0.1, .momentum = 0.9});
  BlobLoader train(20, 32, 1), test(5, 32, 2);
  const auto csv = tmp_path("metrics.csv");
  std::filesystem::remove(csv);
  std::ostringstream log;
  nn::Trainer<decltype(model), decltype(opt), decltype(ce), 2> trainer(model, opt, ce,
                                                                       options(3, [&](nn::TrainerOptions& o) {
                                                                         o.metrics_csv = csv.string();
                                                                         o.out = &log;
                                                                       }));
  const auto stats = trainer.fit(train, &test);
  REQUIRE(stats.size() == 3);
  CHECK(stats.back().train_loss < 0.1);
  CHECK(stats.back().train_loss < stats.front().train_loss);
  CHECK(stats.back().test_accuracy > 0.95);
  // Not a terminal: plain progress lines, and one summary per epoch.
  CHECK(log.str().find("epoch 1/3 [") != std::string::npos);
  CHECK(log.str().find("epoch 3: train loss") != std::string::npos);
  std::ifstream f(csv);
  std::string line;
  int lines = 0;
  while (std::getline(f, line)) ++lines;
  CHECK(lines == 4);  // header + 3 epochs
  std::filesystem::remove(csv);

  SUBCASE("evaluate agrees with eval_step over the batches") {
    const auto [loss, acc] = trainer.evaluate(test);
    double l = 0, c = 0;
    for (const auto& b : test) {
      const auto [bl, bc] = trainer.eval_step(b.x, b.y);
      l += bl;
      c += static_cast<double>(bc);
    }
    CHECK(loss == doctest::Approx(l / 5));
    CHECK(acc == doctest::Approx(c / 160));
  }
  SUBCASE("a batch whose labels do not match its inputs is refused") {
    Tensor<std::int64_t, 1> y3(Shape<1>{{3}});
    CHECK_THROWS_AS(trainer.train_step(train.batches[0].x, y3), shape_error);
  }
}

TEST_CASE("trainer: early stopping when the test accuracy stops improving") {
  manual_seed(3);
  auto model = make_model();
  nn::SGD opt(model.params(), {.lr = 0.0});  // lr 0: nothing improves after the first epoch
  BlobLoader train(4, 16, 5), test(2, 16, 6);
  std::ostringstream log;
  nn::Trainer<decltype(model), decltype(opt), decltype(ce), 2> trainer(model, opt, ce,
                                                                       options(10, [&](nn::TrainerOptions& o) {
                                                                         o.early_stopping_patience = 2;
                                                                         o.out = &log;
                                                                       }));
  const auto stats = trainer.fit(train, &test);
  CHECK(stats.size() == 3);
  CHECK(log.str().find("early stopping") != std::string::npos);
}

TEST_CASE("trainer: the running loss read every step or only at the end of the epoch gives the same figures") {
  // The CPU reads every step by default; a CUDA device keeps the sums on the device and reads them when the bar
  // is due. Both paths run here: the sums are the same double additions in the same order, so the same bits.
  BlobLoader train(12, 32, 31), test(3, 32, 32);
  auto run = [&](bool every_step, std::vector<float>& state) {
    manual_seed(5);
    auto model = make_model();
    nn::SGD opt(model.params(), {.lr = 0.05, .momentum = 0.9});
    nn::Trainer<decltype(model), decltype(opt), decltype(ce), 2> trainer(
        model, opt, ce, options(2, [&](nn::TrainerOptions& o) {
          o.read_loss_every_step = every_step;
          o.progress_interval_s = 1e9;  // deferred: one read, at the end of each epoch
        }));
    auto stats = trainer.fit(train, &test);
    state = flat_state(model);
    return stats;
  };
  std::vector<float> state_every, state_once;
  const auto every = run(true, state_every);
  const auto once = run(false, state_once);
  REQUIRE(every.size() == 2);
  REQUIRE(once.size() == 2);
  for (std::size_t e = 0; e < 2; ++e) {
    CAPTURE(e);
    CHECK(every[e].train_loss == once[e].train_loss);
    CHECK(every[e].train_accuracy == once[e].train_accuracy);
    CHECK(every[e].test_loss == once[e].test_loss);
    CHECK(every[e].test_accuracy == once[e].test_accuracy);
  }
  CHECK(every[1].train_loss < every[0].train_loss);
  CHECK(state_every == state_once);
}

TEST_CASE("trainer: a loss that is no longer finite stops training, naming the epoch and the batch") {
  BlobLoader train(8, 32, 41);
  for (const bool every_step : {true, false}) {
    CAPTURE(every_step);
    manual_seed(9);
    auto model = make_model();
    nn::SGD opt(model.params(), {.lr = 1e30});  // diverges within a few steps
    nn::Trainer<decltype(model), decltype(opt), decltype(ce), 2> trainer(model, opt, ce,
                                                                         options(1, [&](nn::TrainerOptions& o) {
                                                                           o.read_loss_every_step = every_step;
                                                                           o.progress_interval_s = 1e9;
                                                                         }));
    std::string what;
    try {
      trainer.fit(train);
    } catch (const error& e) {
      what = e.what();
    }
    CAPTURE(what);
    CHECK(what.find("the loss became") != std::string::npos);
    CHECK(what.find("at epoch 1") != std::string::npos);
    // Read every step: the first batch whose loss is not finite (an early one); read once: the last batch.
    if (every_step)
      CHECK((what.find(", batch ") != std::string::npos && what.find("batch 8") == std::string::npos));
    else
      CHECK(what.find("by batch 8") != std::string::npos);
  }
}

TEST_CASE("trainer: a checkpoint resumes training where it stopped") {
  const auto ckpt = tmp_path("ckpt.safetensors");
  std::filesystem::remove(ckpt);
  BlobLoader train(10, 32, 11), test(2, 32, 12);
  std::vector<float> after_two;
  {
    manual_seed(5);
    auto model = make_model();
    nn::Adam opt(model.params(), {.lr = 0.01});
    nn::Trainer<decltype(model), decltype(opt), decltype(ce), 2> t(
        model, opt, ce, options(2, [&](nn::TrainerOptions& o) { o.checkpoint = ckpt.string(); }));
    t.fit(train, &test);
    after_two = flat_state(model);
    CHECK(opt.steps() == 20);
  }
  manual_seed(99);  // a different initialisation: everything must come from the checkpoint
  auto model = make_model();
  nn::Adam opt(model.params(), {.lr = 0.01});
  nn::Trainer<decltype(model), decltype(opt), decltype(ce), 2> t(model, opt, ce, options(3, [&](nn::TrainerOptions& o) {
                                                                   o.checkpoint = ckpt.string();
                                                                   o.resume = true;
                                                                 }));
  const auto meta = nn::load_checkpoint(ckpt, model, opt);
  CHECK(meta.at("epoch") == "2");
  CHECK(flat_state(model) == after_two);
  CHECK(opt.steps() == 20);
  const auto stats = t.fit(train, &test);
  CHECK(stats.size() == 1);  // only epoch 3 was left
  CHECK(stats[0].epoch == 3);
  CHECK(t.epoch() == 3);
  CHECK(opt.steps() == 30);

  SUBCASE("a checkpoint of another model is refused, naming the keys, and changes nothing") {
    auto other = nn::sequential<struct other_mlp>(nn::linear(2, 8), nn::relu(), nn::linear(8, 2));
    nn::Adam oopt(other.params(), {.lr = 0.01});
    const auto before = flat_state(other);
    try {
      nn::load_checkpoint(ckpt, other, oopt);
      FAIL("expected io_error");
    } catch (const io_error& e) {
      CHECK(std::string(e.what()).find("0.weight") != std::string::npos);
      CHECK(std::string(e.what()).find(ckpt.string()) != std::string::npos);
    }
    CHECK(flat_state(other) == before);
  }
  SUBCASE("a truncated checkpoint raises io_error") {
    const auto bad = tmp_path("truncated.safetensors");
    const auto size = std::filesystem::file_size(ckpt);
    std::filesystem::copy_file(ckpt, bad, std::filesystem::copy_options::overwrite_existing);
    std::filesystem::resize_file(bad, size - 10);
    CHECK_THROWS_AS(nn::load_checkpoint(bad, model, opt), io_error);
    std::filesystem::remove(bad);
  }
  std::filesystem::remove(ckpt);
}

TEST_CASE("state dict: save, strict and non-strict load, mismatch report") {
  const auto path = tmp_path("state.safetensors");
  manual_seed(1);
  auto a = make_model();
  nn::save_state_dict(a, path);
  {
    const SafeTensors f(path);
    CHECK(f.names().size() == 4);
    CHECK(f.contains("0.weight"));
    CHECK(f.shape("0.weight") == std::vector<index_t>{16, 2});
    CHECK(f.shape("2.bias") == std::vector<index_t>{2});
  }
  manual_seed(2);
  auto b = make_model();
  CHECK(flat_state(b) != flat_state(a));
  const auto r = nn::load_state_dict(b, path);
  CHECK(r.complete());
  CHECK(r.loaded.size() == 4);
  CHECK(flat_state(b) == flat_state(a));

  // A model with a different head: strict refuses (and changes nothing), non-strict loads the body.
  auto c =
      nn::sequential<struct new_head>(nn::linear(2, 16), nn::relu(), nn::linear(16, 5), nn::tanh(), nn::linear(5, 1));
  const auto before = flat_state(c);
  try {
    nn::load_state_dict(c, path);
    FAIL("expected io_error");
  } catch (const io_error& e) {
    const std::string m = e.what();
    CHECK(m.find("2.weight model [5, 16] file [2, 16]") != std::string::npos);
    CHECK(m.find("missing keys: 4.weight, 4.bias") != std::string::npos);
  }
  CHECK(flat_state(c) == before);
  const auto r2 = nn::load_state_dict(c, path, non_strict());
  CHECK(r2.loaded == std::vector<std::string>{"0.weight", "0.bias"});
  CHECK(r2.mismatched.size() == 2);
  CHECK(r2.missing.size() == 2);
  const float* w = static_cast<const float*>(nn::state_of(c)[0].data);
  const float* wa = static_cast<const float*>(nn::state_of(a)[0].data);
  CHECK(std::vector<float>(w, w + 32) == std::vector<float>(wa, wa + 32));
  std::filesystem::remove(path);
}

TEST_CASE("state dict: float64 weights load into a float32 model (converted, as torch does)") {
  const auto path = tmp_path("f64.safetensors");
  Tensor<double, 2> w({16, 2});
  for (int i = 0; i < 32; ++i) w.data()[i] = 0.25 * i;
  Tensor<double, 1> bvec(Shape<1>{{16}});
  for (int i = 0; i < 16; ++i) bvec.data()[i] = -i;
  auto m = make_model();
  auto st = nn::state_of(m);
  SafeTensorsEntries entries{{"0.weight", w}, {"0.bias", bvec}};
  write_safetensors(path, entries);
  const auto r = nn::load_state_dict(m, path, non_strict());
  CHECK(r.loaded.size() == 2);
  const float* d = static_cast<const float*>(nn::state_of(m)[0].data);
  CHECK(d[5] == 1.25f);
  std::filesystem::remove(path);
}
