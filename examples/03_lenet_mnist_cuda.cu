// 03_lenet_mnist_cuda.cu — examples/03_lenet_mnist.cpp compiled by nvcc, so that it has the CUDA backend
// (cuDNN convolutions and pooling, fused kernels, cuBLAS, CUDA-graph replay) and trains on the GPU by
// default. One source for both builds: see that file for the options.
#include "03_lenet_mnist.cpp"
