// 02_autodiff.cpp — logistic regression trained with grad() and compile().
//
// The model p = sigmoid(x W + b) and its loss (binary cross-entropy, written with softplus so that it is
// stable for large logits) are expressions; grad() derives dL/dW and dL/db at compile time; compile()
// plans the loss and both gradients as one Program (the shared x W product is computed once per step, and
// buffers are reused, so steps after the first allocate nothing). The SGD update is one fused expression
// per parameter, assigned in place.
//
//   cmake --build build --target 02_autodiff && ./build/examples/02_autodiff
#include <cstdio>
#include <metagrad/metagrad.hpp>

using namespace metagrad;

int main() {
  manual_seed(7);
  constexpr index_t n = 512, features = 8;

  // Two Gaussian blobs, labelled by which side of a hidden hyperplane they fall on.
  Tensor<float, 2> data = randn<float>({n, features});
  Tensor<float, 2> true_w = randn<float>({features, 1});
  Tensor<float, 2> labels = cast<float>(matmul(data, true_w) > 0.0f);

  METAGRAD_INPUT(x, float, 2);  // Input<struct ..., float, 2> x{"x"}
  METAGRAD_INPUT(y, float, 2);
  METAGRAD_PARAM(w, float, 2, zeros<float>({features, 1}));
  METAGRAD_PARAM(b, float, 1, zeros<float>({1}));

  // Binary cross-entropy on the logits z: mean(softplus(z) - y z).
  auto z = matmul(x, w) + b;
  auto loss = mean(softplus(z) - y * z);
  auto accuracy = mean(cast<float>((z > 0.0f) == (y > 0.5f)));
  auto [dw, db] = grad(loss, w, b);

  auto step = compile(loss, accuracy, dw, db);
  x.bind(data);
  y.bind(labels);
  std::printf("%s\n", step.describe().c_str());

  const float lr = 0.5f;
  float first = 0, last = 0;
  for (int epoch = 0; epoch <= 200; ++epoch) {
    const auto& [l, acc, gw, gb] = step.run();
    w.value() -= lr * gw;  // one fused pass per parameter, in place
    b.value() -= lr * gb;
    if (epoch == 0) first = l.item();
    last = l.item();
    if (epoch % 25 == 0) std::printf("epoch %3d  loss %.4f  accuracy %.3f\n", epoch, l.item(), acc.item());
  }
  // The run is a smoke test in CI: the loss must fall well below its starting value (log 2).
  if (!(last < 0.5f * first)) {
    std::printf("loss did not fall: %.4f -> %.4f\n", first, last);
    return 1;
  }
  return 0;
}
