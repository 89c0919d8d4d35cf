// conv2d_im2col.cpp — the im2col + GEMM convolution kernels declared in conv2d_im2col.h.
#include "kernels/conv2d/conv2d_im2col.h"

#include "engine/threads.h"

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

// Columns per backward product (nb images of OH*OW pixels side by side), about: the depth of
// the weight-gradient product and the width of the data-gradient one. 1024 keeps the GEMMs in
// their fast regime (32×32 maps: one image; 4×4 maps: 64 images; measured on ResNet-18's 4×4 layer,
// 2 threads: 213 ms against 490 ms one image at a time) while a thread's column matrix stays at
// CKK × 1024 floats (18 MB for 512-channel layers).
constexpr int64_t kBackwardColumns = 1024;
// Images per partial weight gradient (rounded up to whole products): the partial sums are
// added in order at the end.
constexpr int64_t kWgradChunk = 8;

// A thread's scratch for one product of nb images: dy gathered to (OCG × nb*P), and the column
// matrix (CKK × nb*P) of the same images (or, for the data gradient, dcol).
struct BackwardScratch {
  float* dyc;
  float* col;
};
static BackwardScratch backward_scratch(int64_t dyc_floats, int64_t col_floats) {
  static thread_local std::vector<float> buf;
  if (static_cast<int64_t>(buf.size()) < dyc_floats + col_floats) buf.resize(static_cast<size_t>(dyc_floats + col_floats));
  return {buf.data(), buf.data() + dyc_floats};
}

void conv2d_bias_backward(const float* dy, float* db, const Conv2dShape& s) {
  const int64_t P = s.OH * s.OW;
#pragma omp parallel for schedule(static) if (s.N * s.OC * P >= kParallelMin)
  for (int64_t oc = 0; oc < s.OC; ++oc)
    for (int64_t n = 0; n < s.N; ++n) {
      float acc = 0;
      for (int64_t i = 0; i < P; ++i) acc += dy[(n * s.OC + oc) * P + i];
      db[oc] += acc;
    }
}

namespace {
void backward_im2col(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                     const Conv2dShape& s, bool add_dx) {
  const int64_t CG = s.C / s.groups, OCG = s.OC / s.groups, KK = s.KH * s.KW, CKK = CG * KK, P = s.OH * s.OW;
  if (db) conv2d_bias_backward(dy, db, s);
  if (dx && !add_dx && (P == 0 || OCG == 0)) std::fill_n(dx, s.N * s.C * s.H * s.W, 0.0f);  // no output: dx = 0
  if ((!dw && !dx) || s.N == 0 || P == 0 || CKK == 0 || OCG == 0) return;

  // Images per product: about kBackwardColumns columns, in an even number of products, so that
  // 2 threads get equal shares (128 images of 7×7: 8 products of 16, not 6 of 21 and one of 2;
  // of 3×3: 2 of 64, not 114 + 14; measured 241 -> 178 ms and 63 -> 44 ms on 2 threads).
  const int64_t products = ((s.N * P + kBackwardColumns - 1) / kBackwardColumns + 1) / 2 * 2;
  const int64_t nb_max = std::max<int64_t>(1, (s.N + products - 1) / products);

  // One pass over fixed chunks of images, in parallel; in each, one product of nb images at a
  // time (single-threaded GEMMs: no synchronization inside a chunk), per group g:
  //   gather dy into dyc (OCG × ld, ld = nb*P) and the images' columns into col (CKK × ld),
  //   partial[chunk] (g's rows) += dyc · colᵀ,
  //   col = w[g]ᵀ · dyc (now dcol), then col2im adds it into dx image by image.
  // dx of an image does not depend on which images it is multiplied with; the weight gradient's
  // partial sums are added in chunk order at the end.
  const int64_t chunk = (kWgradChunk + nb_max - 1) / nb_max * nb_max, chunks = (s.N + chunk - 1) / chunk;
  const int64_t WN = s.OC * CKK;
  std::vector<float> partial(dw ? static_cast<size_t>(chunks * WN) : 0, 0.0f);
#pragma omp parallel for schedule(dynamic)
  for (int64_t ch = 0; ch < chunks; ++ch)
    for (int64_t n0 = ch * chunk; n0 < std::min(s.N, (ch + 1) * chunk); n0 += nb_max) {
      const int64_t nb = std::min(nb_max, s.N - n0), ld = nb * P;  // chunk is whole products
      const BackwardScratch b = backward_scratch(OCG * nb_max * P, CKK * nb_max * P + s.W + 2);
      // col2im_write_channel_s2 writes dx, col2im_add_channel adds into it: the first where its
      // halves of a row are whole vectors (AVX-512, 2 threads, bench/compare.py 3 rounds, dx:
      // 3×3 layers with 32×32 inputs 1.18-1.34×, the 1×1 shortcut 0.97-1.12×, 16×16 and 8×8
      // inputs 0.62-0.95×: short rows, where the zeroed plane of the second costs little).
      const bool write_dx = s.stride == 2 && s.W >= 32;
      if (dx && !write_dx && !add_dx) std::fill_n(dx + n0 * s.C * s.H * s.W, nb * s.C * s.H * s.W, 0.0f);
      for (int64_t g = 0; g < s.groups; ++g) {
        for (int64_t i = 0; i < nb; ++i) {
          for (int64_t oc = 0; oc < OCG; ++oc)
            std::copy_n(dy + ((n0 + i) * s.OC + g * OCG + oc) * P, P, b.dyc + oc * ld + i * P);
          if (dw)
            for (int64_t c = 0; c < CG; ++c)
              im2col_channel(x + ((n0 + i) * s.C + g * CG + c) * s.H * s.W, b.col + c * KK * ld + i * P, ld, s);
        }
        if (dw) {
          GemmEpilogue ep;
          ep.accumulate = true;
          gemm_f32(OCG, CKK, ld, {b.dyc, ld, 1}, {b.col, 1, ld}, partial.data() + ch * WN + g * OCG * CKK, CKK, ep);
        }
        if (dx) {
          gemm_f32(CKK, ld, OCG, {w + g * OCG * CKK, 1, CKK}, {b.dyc, ld, 1}, b.col, ld);
          float* even = b.col + CKK * nb_max * P;  // a row's two halves (col2im_write_channel_s2)
          for (int64_t i = 0; i < nb; ++i)
            for (int64_t c = 0; c < CG; ++c) {
              float* dxc = dx + ((n0 + i) * s.C + g * CG + c) * s.H * s.W;
              if (write_dx)
                col2im_write_channel_s2(b.col + c * KK * ld + i * P, dxc, ld, s, even, even + (s.W + 1) / 2, add_dx);
              else col2im_add_channel(b.col + c * KK * ld + i * P, dxc, ld, s);
            }
        }
      }
    }
  if (dw)
    for (int64_t ch = 0; ch < chunks; ++ch)
      for (int64_t i = 0; i < WN; ++i) dw[i] += partial[static_cast<size_t>(ch * WN + i)];
}
}  // namespace

void conv2d_backward_im2col(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                            const Conv2dShape& s) {
  backward_im2col(x, w, dy, dx, dw, db, s, /*add_dx=*/false);
}
void conv2d_backward_im2col_add_dx(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                                   const Conv2dShape& s) {
  backward_im2col(x, w, dy, dx, dw, db, s, /*add_dx=*/true);
}

}  // namespace edl
