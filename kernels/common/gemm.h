// gemm.h — edl's matrix multiplication: C = A·B (+ C) with an epilogue, BLIS-style.
//
// One driver (gemm.cpp) does the blocking, the packing and the threading; the arithmetic is in
// one small micro-kernel (gemm_ukernel.h) that computes an MR×NR tile of C in registers. Int8,
// binary and sparse products reuse the driver's structure with micro-kernels of their own.
// docs/gemm.md explains the loops with a diagram.
//
// Operands are strided views, so the three products of training need no transposed copies:
//   forward      Y  = X·Wᵀ    A = X  {K, 1}      B = Wᵀ {1, K}     (W is (N,K) row-major)
//   data grad    dX = dY·W    A = dY {N, 1}      B = W  {K, 1}
//   weight grad  dW = dYᵀ·X   A = dYᵀ {1, M}     B = X  {K, 1}
// (the packing routines read through the strides; only they care).
//
// Tested by: ctest -R 'op\.(matmul|linear|conv2d)\.variants' and -R gemm
// Benchmarked by: build/bench/edl_bench --benchmark_filter='^matmul/gemm/'
#pragma once

#include <cstdint>

namespace edl {

// Element (i, j) of the matrix is data[i * rs + j * cs].
struct MatrixView {
  const float* data;
  int64_t rs, cs;
  float at(int64_t i, int64_t j) const { return data[i * rs + j * cs]; }
};

// What happens to C after the product, applied once per tile while it is still in cache:
//   C = (accumulate ? C : 0) + A·B + bias_row[i] + bias_col[j], then max(C, 0) if relu.
struct GemmEpilogue {
  bool accumulate = false;
  const float* bias_row = nullptr;  // length M: a conv bias (one per output channel = row)
  const float* bias_col = nullptr;  // length N: a linear bias (one per output feature = column)
  bool relu = false;
};

// C is (M,N) row-major with leading dimension ldc (>= N). Threads (OpenMP) split each block's
// work by rows of A and columns of B (gemm.cpp); results are bitwise identical for any thread
// count, because every element of C is summed by one thread in the same order.
void gemm_f32(int64_t M, int64_t N, int64_t K, MatrixView A, MatrixView B, float* C, int64_t ldc,
              const GemmEpilogue& epilogue = {});

// For drivers of other kernels (conv2d_implicit.cpp): packs the mc×kc block of A at (i0, k0)
// as micro-panels of MR rows; panel p holds, for each k, the MR values A[i0 + p*MR + r][k0 + k]
// (zeros past the last row), which is what gemm_ukernel_f32 reads. One thread.
void gemm_pack_a(MatrixView A, int64_t i0, int64_t k0, int64_t mc, int64_t kc, float* ap);

// The tile of the micro-kernel compiled into this build, e.g. "6x16 avx2" (for benchmarks).
const char* gemm_ukernel_name();

}  // namespace edl
