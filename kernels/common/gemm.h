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
#include <cstdlib>
#include <new>

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

// Where the driver gets its packed operands. gemm_f32 packs strided matrices (MatrixView); an
// operand that is not one — the column matrix of a convolution, which im2col would have to
// write out first — can be packed straight from where its values live by a packer of its own
// (conv2d_implicit.cpp). Both routines must write exactly the layout the micro-kernel reads:
//   pack_a: the mc×kc block of A at (i0, k0) as micro-panels of MR rows; panel p holds, for each
//           k, the MR values A[i0 + p*MR + r][k0 + k] (zeros past row mc) — gemm_pack_a below;
//   pack_b: micro-panels p0 .. p1-1 of the kc×nc block of B at (k0, j0); panel p, at
//           bp + p*kc*NR, holds for each k the NR values B[k0 + k][j0 + p*NR + c] (zeros past
//           column nc).
// The driver calls them from several threads at once, on disjoint buffers.
class GemmPacker {
 public:
  virtual void pack_a(int64_t i0, int64_t k0, int64_t mc, int64_t kc, float* ap) const = 0;
  virtual void pack_b(int64_t k0, int64_t j0, int64_t kc, int64_t nc, float* bp, int64_t p0, int64_t p1) const = 0;

 protected:
  ~GemmPacker() = default;  // packers live on the caller's stack, never deleted through this type
};

// C (M,N) = (accumulate ? C : 0) + A·B with the epilogue, A and B as the packer supplies them;
// the same loops, threads and determinism as gemm_f32.
void gemm_f32_packed(int64_t M, int64_t N, int64_t K, const GemmPacker& packer, float* C, int64_t ldc,
                     const GemmEpilogue& epilogue = {});

// For drivers of other kernels (conv2d_implicit.cpp): packs the mc×kc block of A at (i0, k0)
// as micro-panels of MR rows; panel p holds, for each k, the MR values A[i0 + p*MR + r][k0 + k]
// (zeros past the last row), which is what gemm_ukernel_f32 reads. One thread.
void gemm_pack_a(MatrixView A, int64_t i0, int64_t k0, int64_t mc, int64_t kc, float* ap);

// A growable 64-byte aligned float buffer (the micro-kernel loads packed panels with aligned
// loads), kept per calling thread and role and reused across calls, so that packing buffers
// are not allocated (and page-faulted) on every call. Contents are not kept when it grows.
class ScratchBuffer {
 public:
  ScratchBuffer() = default;
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  ~ScratchBuffer() { std::free(data_); }
  float* get(int64_t n) {
    if (n > capacity_) {
      std::free(data_);
      capacity_ = (n + 15) / 16 * 16;
      data_ = static_cast<float*>(std::aligned_alloc(64, static_cast<size_t>(capacity_) * sizeof(float)));
      if (!data_) throw std::bad_alloc();
    }
    return data_;
  }

 private:
  float* data_ = nullptr;
  int64_t capacity_ = 0;
};

// The tile of the micro-kernel compiled into this build, e.g. "6x16 avx2" (for benchmarks).
const char* gemm_ukernel_name();

}  // namespace edl
