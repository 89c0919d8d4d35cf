// matmul_eigen.h — the same products through Eigen: a second oracle and a speed baseline.
//
// Eigen is not one of edl's own kernels; it is here so that every benchmark shows how a
// well-tuned library does on the same shapes, and so the reference has an independent check.
// Maps wrap our row-major buffers without copying.
#pragma once

#include <Eigen/Core>
#include <cstdint>

namespace edl {

using EigenRowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using EigenMap = Eigen::Map<EigenRowMajor>;
using EigenConstMap = Eigen::Map<const EigenRowMajor>;

// a is (M,K), b is (K,N), y is (M,N)
inline void matmul_forward_eigen(const float* a, const float* b, float* y, int64_t M, int64_t N, int64_t K) {
  EigenMap(y, M, N).noalias() = EigenConstMap(a, M, K) * EigenConstMap(b, K, N);
}

// da += dy · bᵀ, db += aᵀ · dy (null pointers skipped)
inline void matmul_backward_eigen(const float* a, const float* b, const float* dy, float* da, float* db, int64_t M,
                                  int64_t N, int64_t K) {
  if (da) EigenMap(da, M, K).noalias() += EigenConstMap(dy, M, N) * EigenConstMap(b, K, N).transpose();
  if (db) EigenMap(db, K, N).noalias() += EigenConstMap(a, M, K).transpose() * EigenConstMap(dy, M, N);
}

}  // namespace edl
