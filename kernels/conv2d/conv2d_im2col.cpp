// conv2d_im2col.cpp — the im2col + GEMM convolution kernels declared in conv2d_im2col.h.
#include "kernels/conv2d/conv2d_im2col.h"

#include <algorithm>
#include <vector>

namespace edl {

// One image's column matrix, reused across calls by each thread.
static float* col_scratch(int64_t n) {
  static thread_local std::vector<float> buf;
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(static_cast<size_t>(n));
  return buf.data();
}

void conv2d_forward_im2col(const float* x, const float* w, const float* b, float* y, const Conv2dShape& s) {
  const int64_t CG = s.C / s.groups, OCG = s.OC / s.groups, CKK = CG * s.KH * s.KW, P = s.OH * s.OW;
  const bool pointwise = conv2d_is_pointwise(s);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < s.N; ++n) {
    float* col = pointwise ? nullptr : col_scratch(CKK * P);
    for (int64_t g = 0; g < s.groups; ++g) {
      const float* xg = x + (n * s.C + g * CG) * s.H * s.W;
      if (!pointwise) im2col(xg, col, CG, s);
      GemmEpilogue ep;
      ep.bias_row = b ? b + g * OCG : nullptr;
      gemm_f32(OCG, P, CKK, {w + g * OCG * CKK, CKK, 1}, {pointwise ? xg : col, P, 1},
               y + (n * s.OC + g * OCG) * P, P, ep);
    }
  }
}

void conv2d_backward_im2col(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                            const Conv2dShape& s) {
  const int64_t CG = s.C / s.groups, OCG = s.OC / s.groups, CKK = CG * s.KH * s.KW, P = s.OH * s.OW;
  const bool pointwise = conv2d_is_pointwise(s);
  if (db)
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t oc = 0; oc < s.OC; ++oc) {
        float acc = 0;
        for (int64_t i = 0; i < P; ++i) acc += dy[(n * s.OC + oc) * P + i];
        db[oc] += acc;
      }

  // dw[g] += sum over images of dy[n,g] · col[n,g]ᵀ: chunks of kChunk images in parallel, each
  // into its own partial sum, then the partial sums added in chunk order.
  if (dw) {
    constexpr int64_t kChunk = 8;
    const int64_t chunks = (s.N + kChunk - 1) / kChunk, WN = s.OC * CKK;
    std::vector<float> partial(static_cast<size_t>(chunks * WN), 0.0f);
#pragma omp parallel for schedule(dynamic)
    for (int64_t ch = 0; ch < chunks; ++ch)
      for (int64_t n = ch * kChunk; n < std::min(s.N, (ch + 1) * kChunk); ++n)
        for (int64_t g = 0; g < s.groups; ++g) {
          const float* xg = x + (n * s.C + g * CG) * s.H * s.W;
          const float* col = xg;
          if (!pointwise) {
            float* c = col_scratch(CKK * P);
            im2col(xg, c, CG, s);
            col = c;
          }
          GemmEpilogue ep;
          ep.accumulate = true;
          gemm_f32(OCG, CKK, P, {dy + (n * s.OC + g * OCG) * P, P, 1}, {col, 1, P},
                   partial.data() + ch * WN + g * OCG * CKK, CKK, ep);
        }
    for (int64_t ch = 0; ch < chunks; ++ch)
      for (int64_t i = 0; i < WN; ++i) dw[i] += partial[static_cast<size_t>(ch * WN + i)];
  }

  // dx[n,g] += col2im(w[g]ᵀ · dy[n,g]); one image per thread.
  if (dx) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t g = 0; g < s.groups; ++g) {
        float* dxg = dx + (n * s.C + g * CG) * s.H * s.W;
        const MatrixView wt{w + g * OCG * CKK, 1, CKK}, dyg{dy + (n * s.OC + g * OCG) * P, P, 1};
        if (pointwise) {
          GemmEpilogue ep;
          ep.accumulate = true;
          gemm_f32(CKK, P, OCG, wt, dyg, dxg, P, ep);
        } else {
          float* dcol = col_scratch(CKK * P);
          gemm_f32(CKK, P, OCG, wt, dyg, dcol, P);
          col2im_add(dcol, dxg, CG, s);
        }
      }
  }
}

}  // namespace edl
