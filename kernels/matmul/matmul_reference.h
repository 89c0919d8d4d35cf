// matmul_reference.h — C = A·B as three plain loops, and its backward.
//
// a is (M,K), b is (K,N), y is (M,N), all row-major.
//   y[i][j] = sum_k a[i][k] * b[k][j]
// Backward, from dL/dy[i][j] = dy[i][j]:
//   dL/da[i][k] = sum_j dy[i][j] * b[k][j]      (da = dy · bᵀ)
//   dL/db[k][j] = sum_i a[i][k] * dy[i][j]      (db = aᵀ · dy)
// The backward kernel accumulates (+=) into da and db (either may be null: not needed).
//
// The loop order i-k-j keeps the innermost loop on contiguous rows of b and y, which is also
// the order a compiler can vectorize; it is still a reference, not a fast kernel.
//
// Tested by: ctest -R 'op\.matmul'     Benchmarked by: build/bench/edl_bench --benchmark_filter='^matmul/'
#pragma once

#include <cstdint>

namespace edl {

template <typename T>
void matmul_forward_reference(const T* a, const T* b, T* y, int64_t M, int64_t N, int64_t K) {
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) y[i * N + j] = 0;
    for (int64_t k = 0; k < K; ++k) {
      T aik = a[i * K + k];
      for (int64_t j = 0; j < N; ++j) y[i * N + j] += aik * b[k * N + j];
    }
  }
}

template <typename T>
void matmul_backward_reference(const T* a, const T* b, const T* dy, T* da, T* db, int64_t M, int64_t N, int64_t K) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t k = 0; k < K; ++k) {
      if (da) {
        T acc = 0;
        for (int64_t j = 0; j < N; ++j) acc += dy[i * N + j] * b[k * N + j];
        da[i * K + k] += acc;
      }
      if (db) {
        T aik = a[i * K + k];
        for (int64_t j = 0; j < N; ++j) db[k * N + j] += aik * dy[i * N + j];
      }
    }
}

}  // namespace edl
