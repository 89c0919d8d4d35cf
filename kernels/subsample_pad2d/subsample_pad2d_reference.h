// subsample_pad2d_reference.h — every stride-th pixel of each plane, with zero channels added on
// both sides: the option-A shortcut of the CIFAR ResNets (He et al. 2016; akamaster's
// `F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))`), as plain loops.
//
// x is (N,C,H,W), y is (N,C + 2*pad,OH,OW) with OH = ceil(H / stride), OW = ceil(W / stride):
//   y[n][pad + c][oh][ow] = x[n][c][oh*stride][ow*stride],  the other channels of y zero.
// Backward routes dy's middle channels back to the pixels they came from: dx[n][c][oh*stride]
// [ow*stride] += dy[n][pad + c][oh][ow] (accumulates, +=, as every reference backward).
//
// Tested by: ctest -R 'op\.subsample_pad2d'
// Benchmarked by: build/bench/edl_bench --benchmark_filter='^subsample_pad2d/'
#pragma once

#include <cstdint>

namespace edl {

struct SubsamplePad2dShape {
  int64_t N, C, H, W, stride, pad, OH, OW;
  int64_t out_channels() const { return C + 2 * pad; }
};

template <typename T>
void subsample_pad2d_forward_reference(const T* x, T* y, const SubsamplePad2dShape& s) {
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t oc = 0; oc < s.out_channels(); ++oc)
      for (int64_t oh = 0; oh < s.OH; ++oh)
        for (int64_t ow = 0; ow < s.OW; ++ow) {
          const int64_t c = oc - s.pad;
          y[((n * s.out_channels() + oc) * s.OH + oh) * s.OW + ow] =
              c < 0 || c >= s.C ? T(0) : x[((n * s.C + c) * s.H + oh * s.stride) * s.W + ow * s.stride];
        }
}

template <typename T>
void subsample_pad2d_backward_reference(const T* dy, T* dx, const SubsamplePad2dShape& s) {
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t c = 0; c < s.C; ++c)
      for (int64_t oh = 0; oh < s.OH; ++oh)
        for (int64_t ow = 0; ow < s.OW; ++ow)
          dx[((n * s.C + c) * s.H + oh * s.stride) * s.W + ow * s.stride] +=
              dy[((n * s.out_channels() + s.pad + c) * s.OH + oh) * s.OW + ow];
}

}  // namespace edl
