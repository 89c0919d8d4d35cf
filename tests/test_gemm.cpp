// test_gemm.cpp — gemm_f32 beyond what the generated matmul/linear/conv2d tests cover: strided
// (transposed) operands, every epilogue, empty sums, and results that do not depend on the
// number of threads.
#include <catch2/catch.hpp>

#include <omp.h>

#include <cmath>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "kernels/common/gemm.h"

using namespace edl;

namespace {

std::vector<float> random_vector(int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = static_cast<float>(rng.normal());
  return v;
}

// C = (accumulate ? C : 0) + A·B + biases, then ReLU: the specification of gemm_f32, in double.
std::vector<double> expected(int64_t M, int64_t N, int64_t K, MatrixView A, MatrixView B, const std::vector<float>& C0,
                             const GemmEpilogue& ep) {
  std::vector<double> c(static_cast<size_t>(M * N));
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = ep.accumulate ? C0[static_cast<size_t>(i * N + j)] : 0.0;
      for (int64_t k = 0; k < K; ++k) s += static_cast<double>(A.at(i, k)) * B.at(k, j);
      if (ep.bias_row) s += ep.bias_row[i];
      if (ep.bias_col) s += ep.bias_col[j];
      c[static_cast<size_t>(i * N + j)] = ep.relu && s < 0 ? 0.0 : s;
    }
  return c;
}

}  // namespace

TEST_CASE("gemm: transposed views and every epilogue agree with the definition", "[gemm]") {
  // Sizes straddle the tile (MR up to 12, NR up to 32) and the K block (256).
  for (auto [M, N, K] : {std::array<int64_t, 3>{1, 1, 1}, {7, 17, 3}, {13, 33, 257}, {25, 65, 40}}) {
    for (bool trans_a : {false, true})
      for (bool trans_b : {false, true})
        for (int e = 0; e < 4; ++e) {
          DYNAMIC_SECTION("M=" << M << " N=" << N << " K=" << K << " transA=" << trans_a << " transB=" << trans_b
                               << " epilogue=" << e) {
            std::vector<float> a = random_vector(M * K, 1), b = random_vector(K * N, 2);
            std::vector<float> c = random_vector(M * N, 3), bias_r = random_vector(M, 4), bias_c = random_vector(N, 5);
            MatrixView A = trans_a ? MatrixView{a.data(), 1, M} : MatrixView{a.data(), K, 1};
            MatrixView B = trans_b ? MatrixView{b.data(), 1, K} : MatrixView{b.data(), N, 1};
            GemmEpilogue ep;
            ep.accumulate = e == 1 || e == 3;
            ep.bias_row = e == 2 ? bias_r.data() : nullptr;
            ep.bias_col = e == 3 ? bias_c.data() : nullptr;
            ep.relu = e >= 2;
            std::vector<double> want = expected(M, N, K, A, B, c, ep);
            gemm_f32(M, N, K, A, B, c.data(), N, ep);
            for (size_t i = 0; i < want.size(); ++i) REQUIRE(std::abs(c[i] - want[i]) <= 1e-4 * (1 + std::abs(want[i])));
          }
        }
  }
}

TEST_CASE("gemm: K = 0 leaves C = (accumulate ? C : 0) + epilogue; leading dimension > N is respected", "[gemm]") {
  std::vector<float> c{1, 2, 99, 3, 4, 99}, bias{10, 20};
  GemmEpilogue ep;
  ep.bias_col = bias.data();
  gemm_f32(2, 2, 0, {nullptr, 0, 1}, {nullptr, 2, 1}, c.data(), 3, ep);
  CHECK(c == std::vector<float>{10, 20, 99, 10, 20, 99});
  std::vector<float> a{1, 2}, b{3, 4};
  gemm_f32(2, 2, 1, {a.data(), 1, 1}, {b.data(), 2, 1}, c.data(), 3);
  CHECK(c == std::vector<float>{3, 4, 99, 6, 8, 99});  // column 2 (padding) untouched
}

TEST_CASE("gemm: results are bitwise identical for 1 and 2 threads", "[gemm][threads]") {
  const int saved = omp_get_max_threads();
  auto run = [](int threads) {
    omp_set_num_threads(threads);
    const int64_t M = 37, N = 300, K = 300;
    std::vector<float> a = random_vector(M * K, 6), b = random_vector(K * N, 7), c(static_cast<size_t>(M * N));
    gemm_f32(M, N, K, {a.data(), K, 1}, {b.data(), N, 1}, c.data(), N);
    // A convolution's forward and both gradients (im2col variant, chosen by dispatch).
    std::vector<float> xv = random_vector(4 * 8 * 81, 8), wv = random_vector(6 * 72, 9);
    Tensor x = Tensor::from({4, 8, 9, 9}, std::vector<double>(xv.begin(), xv.end()));
    Tensor w = Tensor::from({6, 8, 3, 3}, std::vector<double>(wv.begin(), wv.end()));
    x.set_requires_grad();
    w.set_requires_grad();
    Tensor y = conv2d(x, w, Tensor(), 2, 1);
    sum(y * y).backward();
    std::vector<double> out(c.begin(), c.end());
    for (const Tensor& t : {y.detach(), x.grad(), w.grad()})
      for (double v : t.to_vector()) out.push_back(v);
    return out;
  };
  std::vector<double> one = run(1), two = run(2);
  omp_set_num_threads(saved);
  CHECK(one == two);
}
