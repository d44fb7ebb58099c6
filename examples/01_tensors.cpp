// 01_tensors — a short tour of metagrad's core: create tensors, broadcast, fuse elementwise work into one
// pass, view without copying, reduce, and print.
//
//   cmake -S . -B build && cmake --build build --target 01_tensors && ./build/examples/01_tensors
#include <iostream>
#include <metagrad/metagrad.hpp>

using namespace metagrad;

int main() {
  // --- creating tensors ---------------------------------------------------------------------------
  Tensor<float, 2> a = {{1, 2, 3}, {4, 5, 6}};  // from braces: shape [2, 3], dtype float32
  auto b = arange<float>(3);                    // [0, 1, 2]
  auto noise = randn<float>({2, 3});            // Philox: the same numbers for any thread count
  std::cout << "a =\n" << a << "\nb = " << b << "\nnoise =\n" << noise << "\n\n";

  // --- expressions are types; nothing runs until they are assigned ----------------------------------
  // `e` is a node of type BinaryExpr<Add, BinaryExpr<Mul, ...>, ...>: the whole graph is in its type.
  auto e = tanh(a * 0.5f + b) * 2.0f + noise * noise;  // b broadcasts over the rows of a
  Tensor<float, 2> y = e;                              // one fused loop over memory, no temporaries
  std::cout << "tanh(a * 0.5 + b) * 2 + noise^2 =\n" << y << "\n\n";

  // --- in-place updates and aliasing --------------------------------------------------------------
  y += 1;         // y = y + 1, in place
  y = y * y - y;  // reads and writes y element-for-element: still one pass, in place
  std::cout << "after y += 1; y = y*y - y:\n" << y << "\n\n";

  // --- views cost nothing --------------------------------------------------------------------------
  std::cout << "a.t() =\n" << a.t() << "\n";
  std::cout << "a.slice(1, 0, 3, 2) (columns 0 and 2) =\n" << a.slice(1, 0, 3, 2) << "\n";
  std::cout << "a.reshape({3, -1}) =\n" << a.reshape({3, -1}) << "\n";
  std::cout << "(a + 1).t().flatten() = " << (a + 1).t().flatten() << "\n\n";

  // --- reductions fuse their elementwise input --------------------------------------------------------
  Tensor<float, 2> x = rand<float>({4, 5}), z = rand<float>({4, 5});
  std::cout << "sum(square(x - z)) = " << sum(square(x - z)).item() << "   (no temporary for x - z)\n";
  std::cout << "mean of each row of a = " << mean(a, 1) << "\n";
  std::cout << "max over columns, kept = " << max(a, {0}, keepdims) << "\n";
  std::cout << "argmax of each row = " << argmax(a, 1) << "\n";
  std::cout << "stddev(a) = " << stddev(a).item() << ", logsumexp(a) = " << logsumexp(a).item()
            << ", norm(a) = " << norm(a).item() << "\n\n";

  // --- normalisation in one line: a reduction consumed through a broadcast ---------------------------
  Tensor<float, 2> normalized = (a - mean(a, {1}, keepdims)) / stddev(a, {1}, keepdims);
  std::cout << "rows of a standardised =\n" << normalized << "\n\n";

  // --- comparisons, where, casts ---------------------------------------------------------------------
  std::cout << "a > 2 =\n" << (a > 2) << "\n";
  std::cout << "where(a > 2, a, -a) =\n" << where(a > 2, a, -a) << "\n";
  std::cout << "cast<int>(a * 1.5) =\n" << cast<int>(a * 1.5f) << "\n\n";

  // --- long tensors print elided ------------------------------------------------------------------
  std::cout << "linspace(0, 1, 2001) = " << linspace<double>(0, 1, 2001) << "\n";

  // --- errors are clear ----------------------------------------------------------------------------
  try {
    Tensor<float, 2> bad = a + ones<float>({4});
  } catch (const shape_error& err) {
    std::cout << "\nshape_error: " << err.what() << "\n";
  }
  return 0;
}
