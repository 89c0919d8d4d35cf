// conv2d_depthwise.cpp — the direct depthwise convolution declared in conv2d_depthwise.h.
#include "kernels/conv2d/conv2d_depthwise.h"

#include <algorithm>
#include <vector>

namespace edl {

namespace {

// The loops below never read and write the same buffer; __restrict lets the compiler vectorize.

// y[i] += a * x[i * stride], i < n
inline void axpy(float* __restrict y, const float* __restrict x, float a, int64_t n, int64_t stride) {
  if (stride == 1)
    for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
  else
    for (int64_t i = 0; i < n; ++i) y[i] += a * x[i * stride];
}

// y[i * stride] += a * x[i], i < n
inline void axpy_scatter(float* __restrict y, const float* __restrict x, float a, int64_t n, int64_t stride) {
  if (stride == 1)
    for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
  else
    for (int64_t i = 0; i < n; ++i) y[i * stride] += a * x[i];
}

// Σ g[i] * x[i * stride], i < n, in 8 partial sums (a fixed order the compiler can vectorize).
inline float dot(const float* __restrict g, const float* __restrict x, int64_t n, int64_t stride) {
  float part[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) part[j] += g[i + j] * x[(i + j) * stride];
  for (; i < n; ++i) part[0] += g[i] * x[i * stride];
  float sum = 0;
  for (float p : part) sum += p;
  return sum;
}

// One plane of x with its zero padding written out: (H + 2p) × (W + 2p), in a per-thread buffer.
const float* pad_plane(const float* x, const Conv2dShape& s) {
  static thread_local std::vector<float> buf;
  const int64_t Wp = s.W + 2 * s.padding;
  buf.assign(static_cast<size_t>((s.H + 2 * s.padding) * Wp), 0.0f);
  for (int64_t h = 0; h < s.H; ++h) std::copy_n(x + h * s.W, s.W, buf.data() + (h + s.padding) * Wp + s.padding);
  return buf.data();
}

}  // namespace

void conv2d_forward_depthwise(const float* x, const float* w, const float* b, float* y, const Conv2dShape& s) {
  const int64_t Wp = s.W + 2 * s.padding, KK = s.KH * s.KW;
#pragma omp parallel for schedule(static)
  for (int64_t plane = 0; plane < s.N * s.C; ++plane) {
    const int64_t c = plane % s.C;
    const float* xp = pad_plane(x + plane * s.H * s.W, s);
    float* yp = y + plane * s.OH * s.OW;
    for (int64_t oh = 0; oh < s.OH; ++oh) {
      float* yr = yp + oh * s.OW;
      std::fill(yr, yr + s.OW, b ? b[c] : 0.0f);
      for (int64_t kh = 0; kh < s.KH; ++kh)
        for (int64_t kw = 0; kw < s.KW; ++kw)
          axpy(yr, xp + (oh * s.stride + kh) * Wp + kw, w[c * KK + kh * s.KW + kw], s.OW, s.stride);
    }
  }
}

void conv2d_backward_depthwise(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                               const Conv2dShape& s) {
  const int64_t Wp = s.W + 2 * s.padding, Hp = s.H + 2 * s.padding, KK = s.KH * s.KW, P = s.OH * s.OW;
  if (dx) {
#pragma omp parallel for schedule(static)
    for (int64_t plane = 0; plane < s.N * s.C; ++plane) {
      static thread_local std::vector<float> dxpad;
      dxpad.assign(static_cast<size_t>(Hp * Wp), 0.0f);
      const int64_t c = plane % s.C;
      const float* g = dy + plane * P;
      for (int64_t oh = 0; oh < s.OH; ++oh)
        for (int64_t kh = 0; kh < s.KH; ++kh)
          for (int64_t kw = 0; kw < s.KW; ++kw)
            axpy_scatter(dxpad.data() + (oh * s.stride + kh) * Wp + kw, g + oh * s.OW, w[c * KK + kh * s.KW + kw], s.OW,
                         s.stride);
      float* dxp = dx + plane * s.H * s.W;  // the interior of dxpad; the padding's share is dropped
      for (int64_t h = 0; h < s.H; ++h)
        for (int64_t v = 0; v < s.W; ++v) dxp[h * s.W + v] = dxpad[static_cast<size_t>((h + s.padding) * Wp + s.padding + v)];
    }
  }
  if (dw || db) {
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < s.C; ++c)
      for (int64_t n = 0; n < s.N; ++n) {
        const float* g = dy + (n * s.C + c) * P;
        if (db) {
          float sum = 0;
          for (int64_t i = 0; i < P; ++i) sum += g[i];
          db[c] += sum;
        }
        if (!dw) continue;
        const float* xp = pad_plane(x + (n * s.C + c) * s.H * s.W, s);
        for (int64_t kh = 0; kh < s.KH; ++kh)
          for (int64_t kw = 0; kw < s.KW; ++kw) {
            float sum = 0;
            for (int64_t oh = 0; oh < s.OH; ++oh)
              sum += dot(g + oh * s.OW, xp + (oh * s.stride + kh) * Wp + kw, s.OW, s.stride);
            dw[c * KK + kh * s.KW + kw] += sum;
          }
      }
  }
}

}  // namespace edl
