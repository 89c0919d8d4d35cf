// conv2d_im2col.h — convolution as matrix multiplication (im2col + GEMM), forward and backward.
//
// x is (N,C,H,W), w is (OC,C/groups,KH,KW), b is (OC) or null, y is (N,OC,OH,OW); shapes as in
// conv2d_reference.h, which is the specification these kernels are tested against.
//
// im2col unrolls, for one image and one group, every KH×KW window into a column:
//   col[(c*KH + kh)*KW + kw][oh*OW + ow] = x[c][oh*s - p + kh][ow*s - p + kw]   (0 outside)
// so that col is (CG*KH*KW) × (OH*OW) and the convolution of the group is one product
//   y[g] (OCG × OH*OW)  =  w[g] (OCG × CG*KH*KW)  ·  col (CG*KH*KW × OH*OW)       (+ bias)
// Backward is two more products per image and group:
//   dw[g] += dy[g] · colᵀ                     (OCG × CKK) = (OCG × OHOW)(OHOW × CKK)
//   dcol   = w[g]ᵀ · dy[g]                     (CKK × OHOW), then col2im adds dcol back into
//                                              dx at the positions im2col read them from
// In the forward pass a 1×1 convolution with stride 1 and no padding needs no im2col: col is x
// itself.
//
// The backward runs these products for nb images at once: their columns side by side, a
// (CKK × nb·OH·OW) matrix, and dy of those images gathered to (OCG × nb·OH·OW), so that both
// gradients are one product per group of images whatever the map size (one image of a 4×4 map
// would give GEMMs with 16 columns or a depth of 16, far too small to run fast; see
// kBackwardColumns in conv2d_im2col.cpp):
//   dw[g] += dy_nb · col_nbᵀ,   dcol_nb = w[g]ᵀ · dy_nb, then col2im image by image.
//
// Threads: forward runs one image per thread; backward one chunk of images per thread (whole
// products of nb images, at least 8 images; the GEMMs inside run on that thread), both
// gradients of a product from the same gathered dy. The weight gradient is a sum over images:
// each chunk sums into its own partial gradient (the chunks depend only on N and the map
// size), and the partials are added in chunk order — the same order for any number of
// threads, so the result does not depend on the thread count.
//
// Tested by: ctest -R 'op\.conv2d\.variants'     Benchmarked by: edl_bench --benchmark_filter='^conv2d/im2col/'
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/common/gemm.h"
#include "kernels/conv2d/conv2d_reference.h"

namespace edl {

// True when col would be x itself (1×1 kernel, stride 1, no padding).
inline bool conv2d_is_pointwise(const Conv2dShape& s) {
  return s.KH == 1 && s.KW == 1 && s.stride == 1 && s.padding == 0;
}

// One channel xc (H,W) of one image: writes its KH*KW rows of col, row (kh*KW + kw) at
// col + (kh*KW + kw)*ld; ld >= OH*OW lets the columns of several images sit side by side.
inline void im2col_channel(const float* xc, float* col, int64_t ld, const Conv2dShape& s) {
  for (int64_t kh = 0; kh < s.KH; ++kh)
    for (int64_t kw = 0; kw < s.KW; ++kw) {
      float* row = col + (kh * s.KW + kw) * ld;
      std::memset(row, 0, sizeof(float) * s.OH * s.OW);
      conv2d_for_each_valid_row(s, kh, kw, [&](int64_t oh, int64_t ih, int64_t lo, int64_t hi) {
        const float* src = xc + ih * s.W - s.padding + kw;  // src[ow * stride] is x at (ih, ow*stride - p + kw)
        float* dst = row + oh * s.OW;
        if (s.stride == 1) std::memcpy(dst + lo, src + lo, sizeof(float) * static_cast<size_t>(hi - lo));
        else
          for (int64_t ow = lo; ow < hi; ++ow) dst[ow] = src[ow * s.stride];
      });
    }
}

// x is one group of one image (CG,H,W); col is (CG*KH*KW, OH*OW).
inline void im2col(const float* x, float* col, int64_t CG, const Conv2dShape& s) {
  const int64_t P = s.OH * s.OW;
  for (int64_t c = 0; c < CG; ++c) im2col_channel(x + c * s.H * s.W, col + c * s.KH * s.KW * P, P, s);
}

// The adjoint of im2col_channel: dxc (H,W) += every entry of the channel's KH*KW rows of dcol
// (row stride ld) at the input position it came from.
inline void col2im_add_channel(const float* dcol, float* dxc, int64_t ld, const Conv2dShape& s) {
  for (int64_t kh = 0; kh < s.KH; ++kh)
    for (int64_t kw = 0; kw < s.KW; ++kw) {
      const float* row = dcol + (kh * s.KW + kw) * ld;
      conv2d_for_each_valid_row(s, kh, kw, [&](int64_t oh, int64_t ih, int64_t lo, int64_t hi) {
        float* dst = dxc + ih * s.W - s.padding + kw;
        const float* src = row + oh * s.OW;
        if (s.stride == 1)  // contiguous on both sides: the compiler vectorizes this loop
          for (int64_t ow = lo; ow < hi; ++ow) dst[ow] += src[ow];
        else
          for (int64_t ow = lo; ow < hi; ++ow) dst[ow * s.stride] += src[ow];
      });
    }
}

// Stride 2: the same sums written (=) into dxc instead of added into a zeroed plane, row by row.
// The taps write every other column of a row (strided stores, one float at a time, and a
// zeroed plane first: 20-25% of the stride-2 layers' backward); instead each input row is
// summed in two halves of contiguous floats, its even columns and its odd ones, and the halves
// are then interleaved into the row. Every value sums the same taps in the same order as
// col2im_add_channel (kh, then kw), from 0: the same result. With add, each value's sum is added
// to what dxc holds (a gradient already held) instead of written.
inline void col2im_write_channel_s2(const float* dcol, float* dxc, int64_t ld, const Conv2dShape& s, float* even,
                                    float* odd, bool add = false) {
  const int64_t half = (s.W + 1) / 2;  // even[j] is column 2j, odd[j] column 2j + 1
  for (int64_t ih = 0; ih < s.H; ++ih) {
    std::fill_n(even, half, 0.0f);
    std::fill_n(odd, half, 0.0f);
    for (int64_t kh = 0; kh < s.KH; ++kh) {
      const int64_t t = ih + s.padding - kh, oh = t / 2;
      if (t < 0 || t % 2 != 0 || oh >= s.OH) continue;
      for (int64_t kw = 0; kw < s.KW; ++kw) {
        // Output column ow feeds input column 2ow - padding + kw = 2(ow + shift) + b.
        const int64_t b = ((kw - s.padding) % 2 + 2) % 2, shift = (kw - s.padding - b) / 2;
        const int64_t cols = (s.W - b + 1) / 2;  // columns of this parity
        const int64_t j0 = std::max<int64_t>(0, shift), j1 = std::min(cols, s.OW + shift);
        const float* src = dcol + (kh * s.KW + kw) * ld + oh * s.OW;  // output row oh of the tap
        float* dst = b ? odd : even;
        for (int64_t j = j0; j < j1; ++j) dst[j] += src[j - shift];
      }
    }
    float* row = dxc + ih * s.W;
    for (int64_t j = 0; j < s.W / 2; ++j) {
      row[2 * j] = (add ? row[2 * j] : 0.0f) + even[j];
      row[2 * j + 1] = (add ? row[2 * j + 1] : 0.0f) + odd[j];
    }
    if (s.W % 2) row[s.W - 1] = (add ? row[s.W - 1] : 0.0f) + even[half - 1];
  }
}

// db[oc] += Σ over images and pixels of dy[n][oc] (dy is (N,OC,OH,OW)): the bias gradient of
// every GEMM-based variant (im2col's backward, and so implicit's, and winograd's). Each output
// channel is summed by one thread, image after image.
void conv2d_bias_backward(const float* dy, float* db, const Conv2dShape& s);

// Defined in conv2d_im2col.cpp, which keeps one column matrix per thread. Backward writes dx
// (=) and accumulates (+=) into dw and db; null outputs are skipped.
void conv2d_forward_im2col(const float* x, const float* w, const float* b, float* y, const Conv2dShape& s);
void conv2d_backward_im2col(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                            const Conv2dShape& s);
// The same with dx added into (+=: a gradient already held) instead of written.
void conv2d_backward_im2col_add_dx(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                                   const Conv2dShape& s);

}  // namespace edl
