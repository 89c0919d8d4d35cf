// conv2d_reference.h — 2-d convolution (cross-correlation, as in PyTorch) as plain loops.
//
// x is (N,C,H,W), w is (OC,C/groups,KH,KW), b is (OC) or null, y is (N,OC,OH,OW) with
//   OH = (H + 2*padding - KH) / stride + 1   (and OW likewise).
// Channels are split into `groups` independent groups: output channel oc reads input
// channels g*CG .. g*CG+CG-1, where g = oc / (OC/groups) and CG = C/groups. groups == C == OC
// is a depthwise convolution.
//   y[n][oc][oh][ow] = b[oc] + sum_{c,kh,kw} w[oc][c][kh][kw] * x[n][g*CG+c][oh*s-p+kh][ow*s-p+kw]
// (x outside the image reads as 0: zero padding.)
// Backward: every term of the sum links one x, one w and one y, so
//   dx[n][g*CG+c][ih][iw] += w[oc][c][kh][kw] * dy[n][oc][oh][ow]
//   dw[oc][c][kh][kw]     += x[n][g*CG+c][ih][iw] * dy[n][oc][oh][ow]
//   db[oc]                += dy[n][oc][oh][ow]
// over the same index set. The backward kernel accumulates (+=); null outputs are skipped.
//
// The innermost loop runs along a row of the output (ow), which keeps memory access regular;
// it is still a reference, not a fast kernel.
//
// Tested by: ctest -R 'op\.conv2d'     Benchmarked by: build/bench/edl_bench --benchmark_filter='^conv2d/'
#pragma once

#include <cstdint>

namespace edl {

struct Conv2dShape {
  int64_t N, C, H, W;     // input
  int64_t OC, KH, KW;     // weight: (OC, C/groups, KH, KW)
  int64_t stride, padding, groups;
  int64_t OH, OW;         // output
};

// Calls f(oh, ow_begin, ow_end, iw_of_ow0) for the output positions of row oh whose input
// column (ow*stride - padding + kw) lies inside the image, for one (kh, kw) tap: the
// bounds of the zero padding worked out once instead of tested per element.
template <typename F>
inline void conv2d_for_each_valid_row(const Conv2dShape& s, int64_t kh, int64_t kw, F&& f) {
  // ow is valid when 0 <= ow*stride - padding + kw < W.
  int64_t lo = 0;
  while (lo < s.OW && lo * s.stride - s.padding + kw < 0) ++lo;
  int64_t hi = s.OW;
  while (hi > lo && (hi - 1) * s.stride - s.padding + kw >= s.W) --hi;
  for (int64_t oh = 0; oh < s.OH; ++oh) {
    int64_t ih = oh * s.stride - s.padding + kh;
    if (ih < 0 || ih >= s.H) continue;
    f(oh, ih, lo, hi);
  }
}

template <typename T>
void conv2d_forward_reference(const T* x, const T* w, const T* b, T* y, const Conv2dShape& s) {
  const int64_t CG = s.C / s.groups, OCG = s.OC / s.groups;
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t oc = 0; oc < s.OC; ++oc) {
      T* yp = y + (n * s.OC + oc) * s.OH * s.OW;
      for (int64_t i = 0; i < s.OH * s.OW; ++i) yp[i] = b ? b[oc] : T(0);
      const int64_t g = oc / OCG;
      for (int64_t c = 0; c < CG; ++c) {
        const T* xp = x + (n * s.C + g * CG + c) * s.H * s.W;
        for (int64_t kh = 0; kh < s.KH; ++kh)
          for (int64_t kw = 0; kw < s.KW; ++kw) {
            const T wv = w[((oc * CG + c) * s.KH + kh) * s.KW + kw];
            conv2d_for_each_valid_row(s, kh, kw, [&](int64_t oh, int64_t ih, int64_t lo, int64_t hi) {
              for (int64_t ow = lo; ow < hi; ++ow)
                yp[oh * s.OW + ow] += wv * xp[ih * s.W + ow * s.stride - s.padding + kw];
            });
          }
      }
    }
}

template <typename T>
void conv2d_backward_reference(const T* x, const T* w, const T* dy, T* dx, T* dw, T* db, const Conv2dShape& s) {
  const int64_t CG = s.C / s.groups, OCG = s.OC / s.groups;
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t oc = 0; oc < s.OC; ++oc) {
      const T* dyp = dy + (n * s.OC + oc) * s.OH * s.OW;
      if (db)
        for (int64_t i = 0; i < s.OH * s.OW; ++i) db[oc] += dyp[i];
      const int64_t g = oc / OCG;
      for (int64_t c = 0; c < CG; ++c) {
        const int64_t xoff = (n * s.C + g * CG + c) * s.H * s.W;
        for (int64_t kh = 0; kh < s.KH; ++kh)
          for (int64_t kw = 0; kw < s.KW; ++kw) {
            const int64_t widx = ((oc * CG + c) * s.KH + kh) * s.KW + kw;
            const T wv = w[widx];
            T dw_acc = 0;
            conv2d_for_each_valid_row(s, kh, kw, [&](int64_t oh, int64_t ih, int64_t lo, int64_t hi) {
              for (int64_t ow = lo; ow < hi; ++ow) {
                const int64_t xi = xoff + ih * s.W + ow * s.stride - s.padding + kw;
                const T g_out = dyp[oh * s.OW + ow];
                if (dx) dx[xi] += wv * g_out;
                dw_acc += x[xi] * g_out;
              }
            });
            if (dw) dw[widx] += dw_acc;
          }
      }
    }
}

}  // namespace edl
