// conv2d_dense.cpp — convolution as a product with its dense matrix T (conv2d_dense.h).
#include "kernels/conv2d/conv2d_dense.h"

#include <algorithm>
#include <vector>

#include "engine/error.h"
#include "kernels/common/gemm.h"
#include "kernels/common/gemm_ukernel.h"
#include "kernels/conv2d/conv2d_im2col.h"  // conv2d_bias_backward

namespace edl {

namespace {

// The non-zero entries of T's block for one pair of channels (oc, c), the same for every
// pair: (output pixel p, input pixel q, tap k), T[(oc,p)][(c,q)] = w[oc][c][k]. In output
// pixel order, then tap order (the order the weight gradient sums in).
struct Tap {
  int64_t p, q, k;
};
std::vector<Tap> matrix_taps(const Conv2dShape& s) {
  std::vector<Tap> taps;
  for (int64_t oh = 0; oh < s.OH; ++oh)
    for (int64_t ow = 0; ow < s.OW; ++ow)
      for (int64_t kh = 0; kh < s.KH; ++kh)
        for (int64_t kw = 0; kw < s.KW; ++kw) {
          const int64_t ih = oh * s.stride - s.padding + kh, iw = ow * s.stride - s.padding + kw;
          if (ih >= 0 && ih < s.H && iw >= 0 && iw < s.W) taps.push_back({oh * s.OW + ow, ih * s.W + iw, kh * s.KW + kw});
        }
  return taps;
}

// T's entry at row (oc, p), column (c, q) is w[oc][c][tap(p, q)], or 0 where output pixel p
// does not read input pixel q. Each index of T — an output value (oc, p) or an input value
// (c, q) — contributes an offset into w (oc·C·KK or c·KK) and an offset into the table of taps
// (p·HW or q), so that an entry is
//   tap = tap_of[t_row + t_col],  entry = tap < 0 ? 0 : w[w_row + w_col + tap]
// whichever of the two indexes is the row: the same code packs T (dx) and Tᵀ (forward).
struct MatrixIndex {
  std::vector<int64_t> w_offset, tap_offset;
};

struct DenseMatrix {
  MatrixIndex out, in;          // the OC·P output values (oc, p) and the C·HW input values (c, q)
  std::vector<int32_t> tap_of;  // (P × HW): tap k = kh·KW + kw of output pixel p on input pixel q, or -1
};

DenseMatrix dense_matrix(const Conv2dShape& s) {
  const int64_t P = s.OH * s.OW, HW = s.H * s.W, KK = s.KH * s.KW;
  DenseMatrix m;
  m.tap_of.assign(static_cast<size_t>(P * HW), -1);
  for (const Tap& e : matrix_taps(s)) m.tap_of[static_cast<size_t>(e.p * HW + e.q)] = static_cast<int32_t>(e.k);
  for (int64_t oc = 0; oc < s.OC; ++oc)
    for (int64_t p = 0; p < P; ++p) m.out.w_offset.push_back(oc * s.C * KK), m.out.tap_offset.push_back(p * HW);
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t q = 0; q < HW; ++q) m.in.w_offset.push_back(c * KK), m.in.tap_offset.push_back(q);
  return m;
}

// The GEMM's operands: A is a strided matrix (x or dy), B is T or Tᵀ, whose panels are written
// straight from w as the driver asks for them. T is never written out in full (21 MB for 256
// channels on 3×3 maps: writing it and reading it back from memory cost a third of the
// forward pass at batch 128); each panel is written into the driver's buffer, in cache.
class DensePacker final : public GemmPacker {
 public:
  DensePacker(MatrixView a, const float* w, const DenseMatrix& m, const MatrixIndex& rows, const MatrixIndex& cols)
      : a_(a), w_(w), tap_of_(m.tap_of.data()), rows_(rows), cols_(cols) {}

  void pack_a(int64_t i0, int64_t k0, int64_t mc, int64_t kc, float* ap) const override {
    gemm_pack_a(a_, i0, k0, mc, kc, ap);
  }

  void pack_b(int64_t k0, int64_t j0, int64_t kc, int64_t nc, float* bp, int64_t p0, int64_t p1) const override {
    for (int64_t pn = p0; pn < p1; ++pn) {
      float* d = bp + pn * kc * kGemmNR;
      const int64_t first = j0 + pn * kGemmNR, cols = std::min<int64_t>(kGemmNR, nc - pn * kGemmNR);
      // Where each column of the panel reads w and the table of taps.
      const float* w_col[kGemmNR];
      const int32_t* tap_col[kGemmNR];
      for (int64_t c = 0; c < cols; ++c) {
        w_col[c] = w_ + cols_.w_offset[static_cast<size_t>(first + c)];
        tap_col[c] = tap_of_ + cols_.tap_offset[static_cast<size_t>(first + c)];
      }
      for (int64_t k = 0; k < kc; ++k) {
        const size_t row = static_cast<size_t>(k0 + k);
        const int64_t w_row = rows_.w_offset[row], t_row = rows_.tap_offset[row];
        float* dk = d + k * kGemmNR;
        for (int64_t c = 0; c < cols; ++c) {
          const int32_t tap = tap_col[c][t_row];
          dk[c] = tap < 0 ? 0.0f : w_col[c][w_row + tap];
        }
        for (int64_t c = cols; c < kGemmNR; ++c) dk[c] = 0.0f;
      }
    }
  }

 private:
  MatrixView a_;
  const float* w_;
  const int32_t* tap_of_;
  const MatrixIndex &rows_, &cols_;
};

void check_shape(const Conv2dShape& s) {
  EDL_CHECK(s.groups == 1, "conv2d dense: groups={} (only groups=1 has one matrix per image)", s.groups);
}

}  // namespace

void conv2d_forward_dense(const float* x, const float* w, const float* b, float* y, const Conv2dShape& s) {
  check_shape(s);
  const int64_t P = s.OH * s.OW, OCP = s.OC * P, CHW = s.C * s.H * s.W;
  const DenseMatrix m = dense_matrix(s);
  GemmEpilogue ep;
  std::vector<float> bias;
  if (b) {  // the bias of column (oc, p) is b[oc]
    bias.resize(static_cast<size_t>(OCP));
    for (int64_t oc = 0; oc < s.OC; ++oc) std::fill(bias.begin() + oc * P, bias.begin() + (oc + 1) * P, b[oc]);
    ep.bias_col = bias.data();
  }
  // Y (N × OCP) = X (N × CHW) · Tᵀ (CHW × OCP): B's rows are input values, its columns output values.
  gemm_f32_packed(s.N, OCP, CHW, DensePacker(MatrixView{x, CHW, 1}, w, m, m.in, m.out), y, OCP, ep);
}

void conv2d_backward_dense(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                           const Conv2dShape& s) {
  check_shape(s);
  const int64_t P = s.OH * s.OW, OCP = s.OC * P, HW = s.H * s.W, CHW = s.C * HW, KK = s.KH * s.KW;
  if (dx) {
    const DenseMatrix m = dense_matrix(s);
    // dX (N × CHW) = dY (N × OCP) · T (OCP × CHW).
    gemm_f32_packed(s.N, CHW, OCP, DensePacker(MatrixView{dy, OCP, 1}, w, m, m.out, m.in), dx, CHW, GemmEpilogue{});
  }
  if (dw) {
    static thread_local ScratchBuffer dt_buffer;  // reused: a fresh one would page-fault every call
    float* dt = dt_buffer.get(OCP * CHW);
    // dT (OCP × CHW) = dYᵀ (OCP × N) · X (N × CHW): A[i][k] = dY[k][i].
    gemm_f32(OCP, CHW, s.N, MatrixView{dy, 1, OCP}, MatrixView{x, CHW, 1}, dt, CHW);
    const std::vector<Tap> taps = matrix_taps(s);
#pragma omp parallel for schedule(static)
    for (int64_t oc = 0; oc < s.OC; ++oc)
      for (int64_t c = 0; c < s.C; ++c) {
        // The taps of w[oc][c], summed into dw pixel by pixel (a fixed order).
        float* dwc = dw + (oc * s.C + c) * KK;
        const float* block = dt + oc * P * CHW + c * HW;
        for (const Tap& e : taps) dwc[e.k] += block[e.p * CHW + e.q];
      }
  }
  if (db) conv2d_bias_backward(dy, db, s);
}

}  // namespace edl
