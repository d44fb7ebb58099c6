// 03_lenet_mnist.cpp — LeNet-5 trained on MNIST or Fashion-MNIST: the classic benchmark of deep-learning
// frameworks, as a complete metagrad program. The model is a C++ type; its forward pass, gradients,
// optimiser update and metrics are compiled into one training step; the data stays as bytes in memory and
// is normalised while each batch is assembled, on a background thread.
//
//   03_lenet_mnist [--data DIR] [--epochs 5] [--batch-size 64] [--lr 0.01] [--optimizer sgd|adam]
//                  [--threads N] [--device cpu|cuda] [--no-cuda-graphs] [--checkpoint PATH] [--resume]
//                  [--seed S] [--max-batches N]
//   03_lenet_mnist --bench-step N [--threads N] [--batch-size 64] [--device cpu|cuda]
//
// DIR holds the four standard IDX files (train-images-idx3-ubyte[.gz], ...); the default is Fashion-MNIST
// from Debian's dataset-fashion-mnist package. Each epoch prints train loss, test accuracy, epoch time,
// images/s and peak memory. --bench-step N times N training steps on random data after 20 warm-up steps
// (the per-step comparison with bench/lenet_torch.cpp, which prints the same line).
//
// The same file is built twice: by the C++ compiler as 03_lenet_mnist (CPU only), and by nvcc as
// 03_lenet_mnist_cuda (examples/03_lenet_mnist_cuda.cu includes it), which runs on the GPU by default when
// there is one (--device cuda:N picks another; --device cpu stays on the host). On the GPU the training
// step is recorded as a CUDA graph after its first runs and replayed (--no-cuda-graphs turns that off).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <metagrad/io.hpp>
#include <metagrad/nn.hpp>
#include <string>
#include <vector>

#if defined(METAGRAD_WITH_BLAS) && __has_include(<openblas_config.h>)
#include <cblas.h>
#define METAGRAD_EXAMPLE_OPENBLAS 1
#endif

namespace mg = metagrad;
namespace nn = metagrad::nn;

namespace {

struct Options {
  std::string data = "/usr/share/datasets/fashion-mnist";
  int epochs = 5;
  mg::index_t batch_size = 64;
  double lr = -1;  // default per optimiser: sgd 0.01, adam 1e-3
  std::string optimizer = "sgd";
  int threads = 0;
  std::string device;  // "" = cuda when this build has the CUDA backend and a GPU, else cpu
  bool cuda_graphs = true;
  std::string checkpoint;
  bool resume = false;
  std::uint64_t seed = 0;
  mg::index_t max_batches = 0;
  int bench_step = 0;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "03_lenet_mnist: %s\nusage: 03_lenet_mnist [--data DIR] [--epochs N] [--batch-size B] [--lr X] "
               "[--optimizer sgd|adam] [--threads N] [--device cpu|cuda[:N]] [--no-cuda-graphs] [--checkpoint PATH] "
               "[--resume] [--seed S] [--max-batches N] [--bench-step N]\n",
               why.c_str());
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage("missing value after " + a);
      return argv[++i];
    };
    try {
      if (a == "--data")
        o.data = value();
      else if (a == "--epochs")
        o.epochs = std::stoi(value());
      else if (a == "--batch-size")
        o.batch_size = std::stol(value());
      else if (a == "--lr")
        o.lr = std::stod(value());
      else if (a == "--optimizer")
        o.optimizer = value();
      else if (a == "--threads")
        o.threads = std::stoi(value());
      else if (a == "--device")
        o.device = value();
      else if (a == "--no-cuda-graphs")
        o.cuda_graphs = false;
      else if (a == "--checkpoint")
        o.checkpoint = value();
      else if (a == "--resume")
        o.resume = true;
      else if (a == "--seed")
        o.seed = std::stoull(value());
      else if (a == "--max-batches")
        o.max_batches = std::stol(value());
      else if (a == "--bench-step")
        o.bench_step = std::stoi(value());
      else if (a == "--help" || a == "-h")
        usage("train LeNet-5 on an MNIST-format data set");
      else
        usage("unknown argument " + a);
    } catch (const std::logic_error&) {
      usage("bad value for " + a);
    }
  }
  if (o.optimizer != "sgd" && o.optimizer != "adam") usage("--optimizer must be sgd or adam");
#if defined(__CUDACC__)
  if (o.device.empty()) o.device = mg::cuda::is_available() ? "cuda" : "cpu";
#else
  if (o.device.empty()) o.device = "cpu";
  if (o.device != "cpu")
    usage("--device " + o.device + ": this program was built without the CUDA backend; run 03_lenet_mnist_cuda");
#endif
  if (o.epochs < 1 || o.batch_size < 1) usage("--epochs and --batch-size must be positive");
  if (o.resume && o.checkpoint.empty()) usage("--resume needs --checkpoint PATH");
  if (o.lr < 0) o.lr = o.optimizer == "sgd" ? 0.01 : 1e-3;
  return o;
}

// LeNet-5 as the benchmark defines it; parameter names match the equivalent torch.nn.Sequential.
auto lenet() {
  return nn::sequential<struct lenet5>(nn::conv2d(1, 6, 5, {.padding = 2}), nn::relu(), nn::max_pool2d(2),  //
                                       nn::conv2d(6, 16, 5), nn::relu(), nn::max_pool2d(2),                 //
                                       nn::flatten(),                                                       //
                                       nn::linear(16 * 5 * 5, 120), nn::relu(),                             //
                                       nn::linear(120, 84), nn::relu(),                                     //
                                       nn::linear(84, 10));
}

// Keeps only the first n samples (for quick runs).
mg::MnistData head(const mg::MnistData& d, mg::index_t n) {
  if (n <= 0 || n >= d.labels.shape()[0]) return d;
  return {mg::eval(mg::slice(d.images, 0, 0, n)), mg::eval(mg::slice(d.labels, 0, 0, n))};
}

// Times training steps on random data: the step alone, without data loading or evaluation.
template <class Opt>
int bench_step(const Options& o, Opt& opt, decltype(lenet())& model) {
  auto loss = [](const auto& logits, const auto& y) { return mg::cross_entropy(logits, y); };
  nn::TrainerOptions to;
  to.out = nullptr;
  to.cuda_graphs = o.cuda_graphs;
  nn::Trainer<std::remove_cvref_t<decltype(model)>, Opt, decltype(loss), 4> trainer(model, opt, loss, to);
  // The batch is placed on the device once: this times the step, not the host-to-device copy.
  const mg::Tensor<float, 4> x = mg::eval(mg::normal<float>({o.batch_size, 1, 28, 28})).to(trainer.device());
  const mg::Tensor<std::int64_t, 1> y = mg::randint<std::int64_t>(0, 10, {o.batch_size}).to(trainer.device());
  for (int i = 0; i < 20; ++i) trainer.train_step(x, y);
  nn::reset_peak_device_memory(trainer.device());
  std::vector<double> ms;
  for (int i = 0; i < o.bench_step; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    trainer.train_step(x, y);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  double mean = 0;
  for (double v : ms) mean += v / static_cast<double>(ms.size());
  std::sort(ms.begin(), ms.end());
  const double median = ms.size() % 2 ? ms[ms.size() / 2] : 0.5 * (ms[ms.size() / 2 - 1] + ms[ms.size() / 2]);
  std::printf(
      "bench_step device %s steps %d batch %ld threads %d median_ms %.4f mean_ms %.4f peak_rss_mib %.1f "
      "peak_device_mib %.2f cuda_graph_replays %zu\n",
      trainer.device().str().c_str(), o.bench_step, static_cast<long>(o.batch_size), o.threads, median, mean,
      nn::peak_rss_mib(), nn::peak_device_mib(trainer.device()), trainer.train_program().graph_replays());
  return 0;
}

template <class Opt>
int train(const Options& o, Opt& opt, decltype(lenet())& model) {
  const auto train_set = head(mg::load_mnist(o.data, mg::MnistSplit::train), o.max_batches * o.batch_size);
  const auto test_set = mg::load_mnist(o.data, mg::MnistSplit::test);
  std::cout << model.summary(mg::Shape<4>{{o.batch_size, 1, 28, 28}});
  // Fashion-MNIST's pixel mean and standard deviation (after / 255); MNIST's are close enough for training.
  mg::LoaderOptions lo;
  lo.batch_size = o.batch_size;
  lo.shuffle = true;
  lo.seed = o.seed;
  lo.mean = 0.2860;
  lo.stddev = 0.3530;
  mg::DataLoader train_loader(mg::TensorDataset(train_set.images, train_set.labels), lo);
  lo.shuffle = false;
  lo.batch_size = 1000;
  mg::DataLoader test_loader(mg::TensorDataset(test_set.images, test_set.labels), lo);

  auto loss = [](const auto& logits, const auto& y) { return mg::cross_entropy(logits, y); };
  nn::TrainerOptions to;
  to.epochs = o.epochs;
  to.cuda_graphs = o.cuda_graphs;
  to.checkpoint = o.checkpoint;
  to.resume = o.resume;
  // One machine-readable line per epoch as well (bench/compare_lenet.sh reads it).
  to.on_epoch = [](const nn::EpochStats& s) {
    std::printf(
        "epoch %d train_loss %.4f test_acc %.2f epoch_s %.3f images_per_s %.0f peak_rss_mib %.0f peak_device_mib "
        "%.2f\n",
        s.epoch, s.train_loss, 100 * s.test_accuracy, s.seconds, s.images_per_second, s.peak_rss_mib,
        s.peak_device_mib);
    std::fflush(stdout);
  };
  nn::Trainer<std::remove_cvref_t<decltype(model)>, Opt, decltype(loss), 4> trainer(model, opt, loss, to);
  const auto stats = trainer.fit(train_loader, &test_loader);
  if (!stats.empty())
    std::printf("final test accuracy %.2f%% after %d epochs (peak RSS %.0f MiB)\n", 100 * stats.back().test_accuracy,
                trainer.epoch(), stats.back().peak_rss_mib);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  if (o.threads > 0) {
    mg::set_num_threads(o.threads);
#if defined(METAGRAD_EXAMPLE_OPENBLAS)
    openblas_set_num_threads(o.threads);
#endif
  }
  mg::manual_seed(o.seed);
  try {
    const mg::Device device = mg::Device::parse(o.device);
    auto model = lenet();
    // Parameters are initialised on the host (the same values on every device for a seed), then moved; the
    // optimiser is built after, so its state lives beside them.
    nn::to_device(model, device);
    if (o.optimizer == "sgd") {
      nn::SGD opt(model.params(), {.lr = o.lr, .momentum = 0.9});
      return o.bench_step > 0 ? bench_step(o, opt, model) : train(o, opt, model);
    }
    nn::Adam opt(model.params(), {.lr = o.lr});
    return o.bench_step > 0 ? bench_step(o, opt, model) : train(o, opt, model);
  } catch (const mg::error& e) {
    std::fprintf(stderr, "03_lenet_mnist: %s\n", e.what());
    return 1;
  }
}
