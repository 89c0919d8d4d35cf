// test_plane_stats.cpp — the statistics a convolution leaves for the batch norm after it
// (PlaneStats, engine/tensor.h): their values against the output they describe, batch norm's
// result from them against its own, and when they are dropped.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/registry.h"

using namespace edl;

namespace {

struct ConvCase {
  const char* variant;
  Shape x, w;
  int64_t stride;
};

// conv2d of variant `variant` with padding 1, the weight requiring grad (as in training).
Tensor conv(const ConvCase& cc, const Tensor& x, const Tensor& w) {
  force_variant("conv2d", cc.variant);
  Tensor y = conv2d(x, w, Tensor(), cc.stride, 1);
  force_variant("conv2d", "");
  return y;
}

}  // namespace

TEST_CASE("plane stats: conv2d's fast variants leave the statistics of y's planes in training", "[plane_stats]") {
  // Each path that computes them: implicit with rows read in place (32 pixels a row; 8 images
  // or more: fewer are split into blocks of rows, which leave none) and on
  // stride 2's phase planes; winograd4 and winograd (chunks of whole images).
  const ConvCase cases[] = {{"implicit", {8, 3, 32, 32}, {8, 3, 3, 3}, 1},
                            {"implicit", {3, 4, 16, 16}, {8, 4, 3, 3}, 2},
                            {"winograd4", {2, 4, 16, 16}, {8, 4, 3, 3}, 1},
                            {"winograd", {3, 5, 8, 8}, {6, 5, 3, 3}, 1}};
  for (const ConvCase& cc : cases) {
    INFO(cc.variant << " x " << shape_str(cc.x) << " stride " << cc.stride);
    const Sample sample{"", {{cc.x}, {cc.w}}, {}, false};
    const Tensors in = make_inputs(sample, 3);
    Tensor w = in[1].clone().set_requires_grad();
    Tensor y = conv(cc, in[0], w);
    const PlaneStats* ps = y.plane_stats();
    REQUIRE(ps != nullptr);
    const int64_t N = y.dim(0), C = y.dim(1), HW = y.dim(2) * y.dim(3);
    for (int64_t p = 0; p < N * C; ++p) {
      double sum = 0, m2 = 0;
      for (int64_t i = 0; i < HW; ++i) sum += y.at(p * HW + i);
      const double mean = sum / static_cast<double>(HW);
      for (int64_t i = 0; i < HW; ++i) m2 += (y.at(p * HW + i) - mean) * (y.at(p * HW + i) - mean);
      CHECK(std::abs(ps->mean[static_cast<size_t>(p)] - mean) <= 1e-5 * (1 + std::abs(mean)));
      CHECK(std::abs(ps->m2[static_cast<size_t>(p)] - m2) <= 1e-4 * (1 + m2));
    }

    // Not without the autograd recording (evaluation), nor through a view of other planes or
    // after fill_ (through any view).
    {
      NoGradGuard no_grad;
      CHECK(conv(cc, in[0], w).plane_stats() == nullptr);
    }
    CHECK(y.view({N, C, HW, 1}).plane_stats() != nullptr);  // the same planes
    CHECK(y.view({N * C, 1, HW, 1}).plane_stats() == nullptr);
    Tensor z = conv(cc, in[0], w);
    REQUIRE(z.plane_stats() != nullptr);
    z.view({-1}).fill_(1.0);
    CHECK(z.plane_stats() == nullptr);
  }
}

TEST_CASE("plane stats: batch norm from a convolution's statistics matches batch norm from its output",
          "[plane_stats]") {
  const Sample sample{"", {{{8, 6, 32, 32}}, {{16, 6, 3, 3}}}, {}, false};
  const Tensors in = make_inputs(sample, 5);
  Tensor w = in[1].clone().set_requires_grad();
  const ConvCase cc{"implicit", in[0].shape(), in[1].shape(), 1};
  Tensor y = conv(cc, in[0], w);
  REQUIRE(y.plane_stats() != nullptr);
  Tensor y_plain = y.detach().clone();  // the same values, no statistics
  REQUIRE(y_plain.plane_stats() == nullptr);
  Tensor out[2], running[2][2];
  const Tensor gamma = Tensor::full({16}, 1.5), beta = Tensor::full({16}, -0.25);
  for (int k = 0; k < 2; ++k) {
    running[k][0] = Tensor::full({16}, 0.5), running[k][1] = Tensor::full({16}, 2.0);
    force_variant("batch_norm2d", "simd");
    out[k] = batch_norm2d(k == 0 ? y : y_plain, gamma, beta, running[k][0], running[k][1], /*training=*/true, 0.1,
                          1e-5, /*relu=*/true);
    force_variant("batch_norm2d", "");
  }
  double worst = 0;
  for (int64_t i = 0; i < out[0].numel(); ++i) worst = std::max(worst, std::abs(out[0].at(i) - out[1].at(i)));
  CHECK(worst <= 1e-5);
  for (int r = 0; r < 2; ++r)
    for (int64_t c = 0; c < 16; ++c)
      CHECK(std::abs(running[0][r].at(c) - running[1][r].at(c)) <= 1e-6 * (1 + std::abs(running[1][r].at(c))));
}
