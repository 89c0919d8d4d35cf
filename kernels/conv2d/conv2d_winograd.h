// conv2d_winograd.h — 3×3 convolutions (stride 1, padding 1, no groups) by Winograd's minimal
// filtering: F(2×2, 3×3), 2.25 times fewer multiplications than the direct sum (variant
// `winograd`), and F(4×4, 3×3), 4 times fewer (variant `winograd4`). Explained below for
// F(2×2, 3×3); F(4×4, 3×3) is the same with 4×4 output tiles, 6×6 patches and 36 positions ξ
// (its matrices are in conv2d_winograd.cpp).
//
// Shapes as in conv2d_reference.h, the specification these kernels are tested against.
//
// The idea (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016). A 2×2
// block of outputs of a 3×3 filter g reads a 4×4 patch d of the input: 2·2·9 = 36 multiplies.
// Winograd's algorithm computes the same four outputs with 16:
//
//   Y (2×2) = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A          ⊙: elementwise, 16 products
//
//        | 1  0 -1  0 |         | 1    0    0   |        Aᵀ = | 1  1  1  0 |
//   Bᵀ = | 0  1  1  0 |     G = | 1/2  1/2  1/2 |             | 0  1 -1 -1 |
//        | 0 -1  1  0 |         | 1/2 -1/2  1/2 |
//        | 0  1  0 -1 |         | 0    0    1   |
//
// (the transforms are additions and halvings only). In a layer, each output sums this over the
// input channels, and the sum commutes with Aᵀ·A, so a convolution becomes 16 independent
// matrix products, one per position ξ of the 4×4 transformed tile:
//
//   U[ξ] (OC × C)     = (G g Gᵀ)[ξ]  of every filter g = w[oc][c]           once per call
//   V[ξ] (C × tiles)  = (Bᵀ d B)[ξ]  of every 4×4 input patch d (tiles overlap by 2 pixels)
//   M[ξ] (OC × tiles) = U[ξ] · V[ξ]                                          the GEMM's micro-kernel
//   y tile (2×2)      = Aᵀ M A  for every output channel and tile
//
// The products do 16·OC·C multiply-adds per tile of 4 outputs where the direct convolution does
// 36·OC·C: the saving is 2.25× on whole tiles, less where an odd map leaves tiles half used
// (a 15×15 map takes 8×8 tiles of 2×2, 1.14 times its pixels). The transforms cost a few tens
// of additions per tile and channel, small next to the products once there are tens of channels,
// and move data: V is 4 times the input and M 4 times the output. So the kernel works on chunks
// of tiles that stay in the cache (transform in, 16 products, transform out), one thread per
// chunk, and never writes V or M for the whole batch.
//
// Backward: the data gradient of this convolution is the same kind of convolution of dy (the
// weights flipped and in ↔ out channels swapped), so it reuses the forward kernel. The weight
// gradient goes through the transforms backwards:
//   dU[ξ] (OC × C) = Σ_tiles Z[ξ] · V[ξ]ᵀ,   Z = A dy Aᵀ (4×4, from each 2×2 tile of dy)
//   dw = Gᵀ dU G
// the same 2.25× fewer multiply-adds.
//
// Accuracy: F(2×2, 3×3)'s transforms add and halve, so results differ from the direct sum by
// float rounding only; F(4×4, 3×3)'s scale by up to 8 and 1/24, which makes that rounding
// larger (both checked to the variant tests' tolerance, like every fast variant). Every
// output element is summed by one thread in a fixed order (the weight gradient in fixed slabs
// of tiles added in order): results are bitwise identical for any number of threads.
//
// Tested by: ctest -R 'op\.conv2d\.variants'    Benchmarked by: edl_bench --benchmark_filter='conv2d.winograd'
#pragma once

#include "kernels/common/plane_stats.h"
#include "kernels/conv2d/conv2d_reference.h"

namespace edl {

// Whether the kernels below compute this convolution: 3×3, stride 1, padding 1, groups 1.
bool conv2d_winograd_applies(const Conv2dShape& s);

// y = conv(x, w) + b. b may be null.
void conv2d_forward_winograd(const float* x, const float* w, const float* b, float* y, const Conv2dShape& s);

// Writes dx (=) and accumulates (+=) into dw and db; null outputs are skipped.
void conv2d_backward_winograd(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                              const Conv2dShape& s);

// The same with F(4×4, 3×3): tiles of 4×4 outputs from 6×6 patches, 36 products for 16 outputs
// (4× fewer multiply-adds than the direct sum, against 2.25×), 36 matrix products per call.
// Its transforms have larger constants (up to 8 and 1/24), so its rounding errors are larger.
void conv2d_forward_winograd4(const float* x, const float* w, const float* b, float* y, const Conv2dShape& s);
void conv2d_backward_winograd4(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                               const Conv2dShape& s);

// The forward passes writing the PlaneStats of y into stats too, where each chunk of tiles
// holds whole images (each channel's planes summed right after their outputs are written);
// stats->done says whether they did.
void conv2d_forward_winograd_stats(const float* x, const float* w, const float* b, float* y, const Conv2dShape& s,
                                   PlaneStatsOut* stats);
void conv2d_forward_winograd4_stats(const float* x, const float* w, const float* b, float* y, const Conv2dShape& s,
                                    PlaneStatsOut* stats);

// The backward passes with dx added into (dx +=, a gradient already held) instead of written:
// dx is a convolution of dy, whose output transform adds into what is there.
void conv2d_backward_winograd_add_dx(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                                     const Conv2dShape& s);
void conv2d_backward_winograd4_add_dx(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                                      const Conv2dShape& s);

}  // namespace edl
