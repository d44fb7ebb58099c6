// lenet_torch — the LibTorch baseline of the LeNet-5 benchmark: the model, data handling and hyperparameters
// of examples/03_lenet_mnist.cpp (and of bench/lenet_pytorch.py), written the way a LibTorch user would.
// Not part of metagrad: it includes no metagrad header. bench/compare_lenet.sh builds, runs and compares it.
//
//   lenet_torch [--data DIR] [--epochs 5] [--batch-size 64] [--optimizer sgd|adam] [--lr X] [--threads N]
//               [--seed S] [--max-batches N] [--mean 0.2860] [--std 0.3530] [--test-batch-size 1000]
//   lenet_torch --bench-step N [--threads N] [--batch-size 64] [--optimizer sgd|adam]
//
// Model: conv 6@5x5 pad 2, relu, max-pool 2, conv 16@5x5, relu, max-pool 2, flatten, fc 120, relu, fc 84,
// relu, fc 10; softmax cross-entropy. SGD uses momentum 0.9 (lr 0.01 by default), Adam lr 1e-3 by default.
// Images stay uint8 in memory and each batch is gathered, scaled by 1/255 and normalised with (x - mean) / std.
// The training set is reshuffled every epoch by torch::randperm on a generator seeded with --seed.
//
// Each epoch prints one line:
//   epoch E train_loss L test_acc A epoch_s S images_per_s I peak_rss_mib R
// train_loss is the mean batch loss of the epoch, test_acc the test-set accuracy in percent, epoch_s the
// training pass alone (the test pass is timed apart and not counted), images_per_s = trained images / epoch_s
// and peak_rss_mib the process's peak resident set so far (getrusage ru_maxrss).
//
// --bench-step N times N training steps (forward, backward, optimizer step) on random data after 20 warm-up
// steps and prints `bench_step steps N batch B threads T median_ms M mean_ms A`.
#include <sys/resource.h>
#include <torch/torch.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct Options {
  std::string data = "/usr/share/datasets/fashion-mnist";
  int epochs = 5;
  int batch_size = 64;
  int test_batch_size = 1000;
  double lr = -1;  // negative: the optimizer's default
  std::string optimizer = "sgd";
  int threads = 1;
  std::uint64_t seed = 0;
  long max_batches = -1;  // negative: the whole epoch
  double mean = 0.2860;
  double std = 0.3530;
  int bench_step = 0;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "lenet_torch: %s\nusage: lenet_torch [--data DIR] [--epochs N] [--batch-size N] [--lr X] "
               "[--optimizer sgd|adam] [--threads N] [--seed S] [--max-batches N] [--mean X] [--std X] "
               "[--test-batch-size N] [--bench-step N]\n",
               why.c_str());
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") usage("help");
    if (i + 1 >= argc) usage("missing value after " + a);
    const std::string v = argv[++i];
    try {
      if (a == "--data")
        o.data = v;
      else if (a == "--epochs")
        o.epochs = std::stoi(v);
      else if (a == "--batch-size")
        o.batch_size = std::stoi(v);
      else if (a == "--test-batch-size")
        o.test_batch_size = std::stoi(v);
      else if (a == "--lr")
        o.lr = std::stod(v);
      else if (a == "--optimizer")
        o.optimizer = v;
      else if (a == "--threads")
        o.threads = std::stoi(v);
      else if (a == "--seed")
        o.seed = std::stoull(v);
      else if (a == "--max-batches")
        o.max_batches = std::stol(v);
      else if (a == "--mean")
        o.mean = std::stod(v);
      else if (a == "--std")
        o.std = std::stod(v);
      else if (a == "--bench-step")
        o.bench_step = std::stoi(v);
      else
        usage("unknown flag " + a);
    } catch (const std::logic_error&) {
      usage("bad value '" + v + "' for " + a);
    }
  }
  if (o.optimizer != "sgd" && o.optimizer != "adam") usage("--optimizer must be sgd or adam");
  if (o.epochs < 0 || o.batch_size < 1 || o.test_batch_size < 1 || o.threads < 1 || o.std <= 0)
    usage("epochs, batch sizes, threads and std must be positive");
  if (o.lr < 0) o.lr = o.optimizer == "sgd" ? 0.01 : 1e-3;
  return o;
}

double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // Linux reports KiB
}

// --- IDX files (the MNIST container): big-endian magic 0x000008<ndim>, ndim big-endian uint32 sizes, bytes.

std::string find_idx(const std::string& dir, const std::string& name) {
  for (const std::string& p : {dir + "/" + name, dir + "/" + name + ".gz"})
    if (std::ifstream(p).good()) return p;
  throw std::runtime_error("lenet_torch: no " + name + "[.gz] in " + dir);
}

// gzread reads plain files transparently, so one path serves both spellings.
torch::Tensor read_idx(const std::string& path, int expect_ndim) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error("lenet_torch: cannot open " + path);
  long offset = 0;
  auto read = [&](void* dst, long n) {
    const int got = gzread(f, dst, static_cast<unsigned>(n));
    if (got != n) {
      gzclose(f);
      throw std::runtime_error("lenet_torch: " + path + " truncated at offset " +
                               std::to_string(offset + std::max(got, 0)) + " (wanted " + std::to_string(n) + " bytes)");
    }
    offset += n;
  };
  auto be32 = [](const unsigned char* b) {
    return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) | b[3];
  };
  unsigned char head[4];
  read(head, 4);
  if (head[0] != 0 || head[1] != 0 || head[2] != 0x08 || head[3] != expect_ndim) {
    gzclose(f);
    throw std::runtime_error("lenet_torch: " + path + " is not a uint8 IDX file of rank " +
                             std::to_string(expect_ndim) + " (bad magic at offset 0)");
  }
  std::vector<std::int64_t> dims(expect_ndim);
  std::int64_t n = 1;
  for (auto& d : dims) {
    read(head, 4);
    d = be32(head);
    n *= d;
  }
  auto t = torch::empty(dims, torch::kUInt8);
  read(t.data_ptr<std::uint8_t>(), n);
  gzclose(f);
  return t;
}

struct Split {
  torch::Tensor images;  // [N, 1, 28, 28] uint8
  torch::Tensor labels;  // [N] int64
};

Split load_split(const std::string& dir, const std::string& prefix) {
  auto images = read_idx(find_idx(dir, prefix + "-images-idx3-ubyte"), 3);
  auto labels = read_idx(find_idx(dir, prefix + "-labels-idx1-ubyte"), 1);
  if (images.size(0) != labels.size(0) || images.size(1) != 28 || images.size(2) != 28)
    throw std::runtime_error("lenet_torch: " + dir + "/" + prefix + ": " + std::to_string(images.size(0)) +
                             " images of " + std::to_string(images.size(1)) + "x" + std::to_string(images.size(2)) +
                             " but " + std::to_string(labels.size(0)) + " labels (want Nx28x28 and N)");
  return {images.unsqueeze(1), labels.to(torch::kInt64)};
}

// --- model

struct LeNetImpl : torch::nn::Module {
  LeNetImpl()
      : conv1(register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 6, 5).padding(2)))),
        conv2(register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(6, 16, 5)))),
        fc1(register_module("fc1", torch::nn::Linear(16 * 5 * 5, 120))),
        fc2(register_module("fc2", torch::nn::Linear(120, 84))),
        fc3(register_module("fc3", torch::nn::Linear(84, 10))) {}

  torch::Tensor forward(torch::Tensor x) {
    x = torch::max_pool2d(torch::relu(conv1->forward(x)), 2);
    x = torch::max_pool2d(torch::relu(conv2->forward(x)), 2);
    x = x.flatten(1);
    x = torch::relu(fc1->forward(x));
    x = torch::relu(fc2->forward(x));
    return fc3->forward(x);
  }

  torch::nn::Conv2d conv1, conv2;
  torch::nn::Linear fc1, fc2, fc3;
};
TORCH_MODULE(LeNet);

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const Options& o, LeNet& net) {
  if (o.optimizer == "sgd")
    return std::make_unique<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(o.lr).momentum(0.9));
  return std::make_unique<torch::optim::Adam>(net->parameters(), torch::optim::AdamOptions(o.lr));
}

torch::Tensor normalise(const torch::Tensor& u8, const Options& o) {
  return (u8.to(torch::kFloat32).div_(255.0).sub_(o.mean)).div_(o.std);
}

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

int bench_step(const Options& o) {
  LeNet net;
  auto opt = make_optimizer(o, net);
  auto x = torch::randn({o.batch_size, 1, 28, 28});
  auto y = torch::randint(0, 10, {o.batch_size}, torch::kInt64);
  auto step = [&] {
    opt->zero_grad();
    auto loss = torch::nn::functional::cross_entropy(net->forward(x), y);
    loss.backward();
    opt->step();
  };
  for (int i = 0; i < 20; ++i) step();
  std::vector<double> ms(o.bench_step);
  for (auto& m : ms) {
    const auto t0 = Clock::now();
    step();
    m = seconds_since(t0) * 1e3;
  }
  const double mean = std::accumulate(ms.begin(), ms.end(), 0.0) / ms.size();
  std::sort(ms.begin(), ms.end());
  const double median = ms.size() % 2 ? ms[ms.size() / 2] : 0.5 * (ms[ms.size() / 2 - 1] + ms[ms.size() / 2]);
  std::printf("bench_step steps %d batch %d threads %d median_ms %.4f mean_ms %.4f peak_rss_mib %.1f\n", o.bench_step,
              o.batch_size, o.threads, median, mean, peak_rss_mib());
  return 0;
}

double test_accuracy(LeNet& net, const Split& test, const Options& o) {
  torch::NoGradGuard no_grad;
  net->eval();
  std::int64_t correct = 0;
  const std::int64_t n = test.images.size(0);
  for (std::int64_t b = 0; b < n; b += o.test_batch_size) {
    const std::int64_t e = std::min(n, b + o.test_batch_size);
    auto logits = net->forward(normalise(test.images.slice(0, b, e), o));
    correct += logits.argmax(1).eq(test.labels.slice(0, b, e)).sum().item<std::int64_t>();
  }
  net->train();
  return 100.0 * static_cast<double>(correct) / static_cast<double>(n);
}

int train(const Options& o) {
  const Split train_set = load_split(o.data, "train");
  const Split test_set = load_split(o.data, "t10k");
  LeNet net;
  auto opt = make_optimizer(o, net);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  const std::int64_t n = train_set.images.size(0);
  std::printf("lenet_torch data %s train %lld test %lld optimizer %s lr %g batch %d threads %d seed %llu\n",
              o.data.c_str(), static_cast<long long>(n), static_cast<long long>(test_set.images.size(0)),
              o.optimizer.c_str(), o.lr, o.batch_size, o.threads, static_cast<unsigned long long>(o.seed));
  std::fflush(stdout);
  for (int epoch = 1; epoch <= o.epochs; ++epoch) {
    const auto t0 = Clock::now();
    auto order = torch::randperm(n, gen, torch::kInt64);
    double loss_sum = 0;
    long batches = 0;
    std::int64_t images = 0;
    for (std::int64_t b = 0; b < n && (o.max_batches < 0 || batches < o.max_batches); b += o.batch_size) {
      auto idx = order.slice(0, b, std::min(n, b + o.batch_size));
      auto x = normalise(train_set.images.index_select(0, idx), o);
      auto y = train_set.labels.index_select(0, idx);
      opt->zero_grad();
      auto loss = torch::nn::functional::cross_entropy(net->forward(x), y);
      loss.backward();
      opt->step();
      loss_sum += loss.item<double>();
      ++batches;
      images += idx.size(0);
    }
    const double epoch_s = seconds_since(t0);
    const double acc = test_accuracy(net, test_set, o);
    std::printf("epoch %d train_loss %.4f test_acc %.2f epoch_s %.3f images_per_s %.1f peak_rss_mib %.1f\n", epoch,
                batches ? loss_sum / batches : 0.0, acc, epoch_s, images / epoch_s, peak_rss_mib());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  // Inter-op threads first: LibTorch refuses to change their number once any parallel work has started.
  at::set_num_interop_threads(1);
  torch::set_num_threads(o.threads);
  torch::manual_seed(o.seed);
  try {
    return o.bench_step > 0 ? bench_step(o) : train(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
