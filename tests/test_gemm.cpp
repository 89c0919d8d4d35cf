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
#include "engine/registry.h"
#include "kernels/common/gemm.h"

using namespace edl;

namespace {

std::vector<float> random_vector(int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = static_cast<float>(rng.normal());
  return v;
}

Tensor random_tensor(const Shape& shape, uint64_t seed) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<float> v = random_vector(n, seed);
  return Tensor::from(shape, std::vector<double>(v.begin(), v.end()));
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

TEST_CASE("gemm: several blocks of A, B and K are right, and bitwise identical for 1, 2 and 3 threads",
          "[gemm][threads]") {
  // M spans two row blocks (MC = 360 with AVX2, 480 with AVX-512), N two column blocks
  // (NC = 4096), K two depth blocks (KC = 256, then 44): every loop of the driver runs more than
  // once, each thread on its own columns. With N = 200 (13 panels of 16 with AVX2, 7 of 32 with
  // AVX-512) the threads share each block of B instead.
  const int64_t N = GENERATE(4100, 200);
  const int64_t M = 500, K = 300;
  INFO("N = " << N);
  std::vector<float> a = random_vector(M * K, 6), b = random_vector(K * N, 7);
  const MatrixView A{a.data(), K, 1}, B{b.data(), N, 1};
  const int saved = omp_get_max_threads();
  std::vector<std::vector<float>> results;
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    std::vector<float> c(static_cast<size_t>(M * N));
    gemm_f32(M, N, K, A, B, c.data(), N);
    results.push_back(std::move(c));
  }
  omp_set_num_threads(saved);
  const std::vector<double> want = expected(M, N, K, A, B, {}, {});
  for (size_t i = 0; i < want.size(); ++i) REQUIRE(std::abs(results[0][i] - want[i]) <= 1e-4 * (1 + std::abs(want[i])));
  CHECK(results[0] == results[1]);
  CHECK(results[0] == results[2]);
}

TEST_CASE("conv2d: every variant's forward and gradients are bitwise identical for 1, 2 and 3 threads",
          "[gemm][threads]") {
  struct Case {
    const char* variant;
    Shape x, w;
    int64_t stride, padding, groups;
  };
  // implicit with rows read in place (stride 1, 35-pixel rows; 32-pixel rows, whose weight
  // gradient reads dy in place and runs by chunks of images — with 10 images, beside dx's
  // product (fused_dw), 5 chunks of 2; with 4 groups, the direct weight gradient's ranges of blocks
  // spanning groups), implicit with packed panels (stride 2 on 9×9), implicit on phase planes
  // (stride 2 on 16×62: dx as four products by phases, dw through im2col; with 2 groups of 8
  // output channels on 16×32, dw runs down the phase planes; with one group on 16×16, threads
  // take input channels for dw: 5 channels split 2 + 3 and 1 + 2 + 2, and 1 channel, which
  // leaves threads without any),
  // implicit with panels spanning images (3×3
  // maps), implicit with rows of 15 read in place, implicit with the weight gradient as one
  // GEMM (128 channels, 3 images of 10×10: two blocks of depth), im2col (with several
  // weight-gradient chunks: 48 images of 8×8 are 4 of 12), depthwise, winograd (with AVX2:
  // 1000 tiles of 9×9 maps in forward chunks of 256 tiles, the last one short, and the weight
  // gradient's 3 slabs over 4 chunks; 128 channels: chunks of 32 tiles; 20 → 7 channels: slabs
  // and partial panels of both operands), winograd4 (360 tiles of 4×4 outputs, 20 → 7).
  for (const Case& k : {Case{"implicit", {3, 8, 7, 35}, {6, 8, 3, 3}, 1, 1, 1},
                        Case{"implicit", {3, 8, 4, 32}, {16, 8, 3, 3}, 1, 1, 1},
                        Case{"implicit", {10, 4, 4, 32}, {16, 4, 3, 3}, 1, 1, 1},
                        Case{"implicit", {2, 8, 15, 15}, {6, 8, 3, 3}, 1, 1, 1},
                        Case{"implicit", {2, 8, 6, 20}, {12, 2, 3, 3}, 1, 1, 4},
                        Case{"implicit", {3, 128, 10, 10}, {128, 128, 3, 3}, 1, 1, 1},
                        Case{"implicit", {4, 8, 9, 9}, {6, 8, 3, 3}, 2, 1, 1},
                        Case{"implicit", {3, 4, 16, 62}, {5, 4, 3, 3}, 2, 1, 1},
                        Case{"implicit", {2, 8, 16, 32}, {16, 4, 3, 3}, 2, 1, 2},
                        Case{"implicit", {3, 5, 16, 16}, {8, 5, 3, 3}, 2, 1, 1},
                        Case{"implicit", {2, 1, 16, 16}, {8, 1, 3, 3}, 2, 1, 1},
                        Case{"implicit", {35, 8, 3, 3}, {6, 8, 3, 3}, 1, 1, 1},
                        Case{"im2col", {4, 8, 9, 9}, {6, 4, 3, 3}, 1, 1, 2},
                        Case{"im2col", {48, 8, 8, 8}, {6, 4, 3, 3}, 1, 1, 2},
                        Case{"depthwise", {3, 5, 9, 20}, {5, 1, 3, 3}, 1, 1, 5},
                        Case{"winograd", {40, 8, 9, 9}, {6, 8, 3, 3}, 1, 1, 1},
                        Case{"winograd", {3, 128, 10, 10}, {128, 128, 3, 3}, 1, 1, 1},
                        Case{"winograd", {40, 20, 9, 9}, {7, 20, 3, 3}, 1, 1, 1},
                        Case{"winograd4", {40, 20, 9, 9}, {7, 20, 3, 3}, 1, 1, 1}}) {
    DYNAMIC_SECTION(k.variant << " x" << shape_str(k.x) << " stride " << k.stride) {
      auto run = [&](int threads) {
        omp_set_num_threads(threads);
        force_variant("conv2d", k.variant);
        Tensor x = random_tensor(k.x, 8), w = random_tensor(k.w, 9);
        x.set_requires_grad();
        w.set_requires_grad();
        Tensor y = conv2d(x, w, Tensor(), k.stride, k.padding, k.groups);
        sum(y * y).backward();
        std::vector<double> out;
        for (const Tensor& t : {y.detach(), x.grad(), w.grad()})
          for (double v : t.to_vector()) out.push_back(v);
        return out;
      };
      const int saved = omp_get_max_threads();
      std::vector<double> one = run(1), two = run(2), three = run(3);
      omp_set_num_threads(saved);
      force_variant("conv2d", "");
      CHECK(one == two);
      CHECK(one == three);
    }
  }
}

TEST_CASE("gemm: few rows and many columns (threads split the columns) are right, bitwise identical for 1, 2, 3 threads",
          "[gemm][threads]") {
  // One block of A (7 rows: a partial last micro-panel) and 8300 columns: each thread packs
  // its own panels of B, several blocks of columns per thread (a product with one block of A
  // takes them 1024 wide: 9, 5 and 3 blocks on 1, 2 and 3 threads), a partial last panel;
  // K = 300 is two depth blocks, so each block's C is summed over both; the epilogue (bias,
  // ReLU, accumulate) runs once each element's sum is complete. B row-major and transposed; C with a leading
  // dimension wider than N.
  const int64_t M = 7, N = 8300, K = 300, ldc = N + 5;
  std::vector<float> a = random_vector(M * K, 8), b = random_vector(K * N, 9), c0 = random_vector(M * ldc, 10);
  std::vector<float> bias = random_vector(M, 11);
  GemmEpilogue ep;
  ep.bias_row = bias.data();
  ep.relu = true;
  ep.accumulate = true;
  const int saved = omp_get_max_threads();
  for (bool trans_b : {false, true}) {
    DYNAMIC_SECTION("B transposed: " << trans_b) {
      const MatrixView A{a.data(), K, 1}, B = trans_b ? MatrixView{b.data(), 1, K} : MatrixView{b.data(), N, 1};
      std::vector<std::vector<float>> results;
      for (int threads : {1, 2, 3}) {
        omp_set_num_threads(threads);
        std::vector<float> c = c0;
        gemm_f32(M, N, K, A, B, c.data(), ldc, ep);
        results.push_back(std::move(c));
      }
      omp_set_num_threads(saved);
      std::vector<float> c0_dense(static_cast<size_t>(M * N));
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) c0_dense[static_cast<size_t>(i * N + j)] = c0[static_cast<size_t>(i * ldc + j)];
      const std::vector<double> want = expected(M, N, K, A, B, c0_dense, ep);
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < ldc; ++j) {
          const float got = results[0][static_cast<size_t>(i * ldc + j)];
          if (j >= N) {  // the padding of each row is left alone
            REQUIRE(got == c0[static_cast<size_t>(i * ldc + j)]);
            continue;
          }
          const double w = want[static_cast<size_t>(i * N + j)];
          REQUIRE(std::abs(got - w) <= 1e-4 * (1 + std::abs(w)));
        }
      CHECK(results[0] == results[1]);
      CHECK(results[0] == results[2]);
    }
  }
}

TEST_CASE("gemm: called inside a parallel region, each product runs on its thread alone", "[gemm][threads]") {
  // As im2col's per-image products are: the nested region has one thread, the results are
  // those of a call outside it.
  const int64_t M = 16, N = 2000, K = 144;
  std::vector<float> a = random_vector(M * K, 12), b = random_vector(K * N, 13);
  const MatrixView A{a.data(), K, 1}, B{b.data(), N, 1};
  std::vector<float> outside(static_cast<size_t>(M * N));
  gemm_f32(M, N, K, A, B, outside.data(), N);
  std::vector<std::vector<float>> inside(4, std::vector<float>(static_cast<size_t>(M * N)));
#pragma omp parallel for num_threads(2)
  for (int r = 0; r < 4; ++r) gemm_f32(M, N, K, A, B, inside[static_cast<size_t>(r)].data(), N);
  for (const std::vector<float>& c : inside) CHECK(c == outside);
}

TEST_CASE("conv2d: an empty batch gives an empty output and a zero weight gradient with every variant",
          "[gemm]") {
  const OpDef& conv = op("conv2d");
  Tensor x = Tensor::zeros({0, 4, 4, 32}), w = random_tensor({16, 4, 3, 3}, 3);
  const Attrs attrs{{"stride", int64_t{1}}, {"padding", int64_t{1}}, {"groups", int64_t{1}}};
  for (const Variant& v : conv.variants) {
    if (v.supports && !v.supports({x, w}, attrs)) continue;
    DYNAMIC_SECTION(v.name) {
      force_variant("conv2d", v.name);
      Tensor xg = x.detach().set_requires_grad(), wg = w.detach().set_requires_grad();
      Tensor y = conv2d(xg, wg, Tensor(), 1, 1, 1);
      CHECK(y.shape() == Shape{0, 16, 4, 32});
      sum(y * y).backward();
      REQUIRE(wg.grad().defined());
      for (double g : wg.grad().to_vector()) CHECK(g == 0.0);
      force_variant("conv2d", "");
    }
  }
}
