// conv2d_dense.h — a convolution on a small map as one dense matrix product per pass.
//
// x is (N,C,H,W), w is (OC,C,KH,KW), b is (OC) or null, y is (N,OC,OH,OW); shapes as in
// conv2d_reference.h, the specification these kernels are tested against. No groups.
//
// A convolution is a linear map of each image: its C·H·W input values to its OC·OH·OW output
// values, through a matrix T with one row per output value and one column per input value,
//   T[(oc,oh,ow)][(c,ih,iw)] = w[oc][c][ih - oh·s + p][iw - ow·s + p]   where that tap exists,
//                            = 0                                        elsewhere.
// In NCHW an image is already one contiguous row of C·H·W floats, so for the whole batch the
// three passes are three plain GEMMs, each as large as the batch, with nothing to unroll:
//   forward  Y  (N × OC·OH·OW)        = X (N × C·H·W) · Tᵀ          (+ b[oc] on column (oc,oh,ow))
//   dx       dX (N × C·H·W)           = dY · T
//   dw       dT (OC·OH·OW × C·H·W)    = dYᵀ · X, then each tap sums its entries of dT:
//            dw[oc][c][kh][kw] = Σ over (oh,ow) of dT[(oc,oh,ow)][(c, oh·s - p + kh, ow·s - p + kw)]
//
// T holds OH·OW·H·W entries per pair of channels, of which at most OH·OW·KH·KW are taps, so this
// pays only where the map is about the size of the kernel. On a 3×3 map with a 3×3 kernel and
// padding 1 (airbench's last layer) T has 81 entries per pair of channels, exactly the
// multiply-adds that the convolution is counted at (its windows overhang the padding): the zeros
// cost nothing extra, and the products have thousands of rows and columns where implicit GEMM
// has 9 pixels per image and Winograd mostly padded tiles. On 4×4 maps T is 256/144 = 1.8× the
// work, already too much (conv2d.cpp's dispatch rule). T itself is never written out: the
// GEMM's packer writes each panel of T (or Tᵀ) straight from w as the driver asks for it
// (DensePacker in conv2d_dense.cpp). The weight gradient does write dT, OC·C·OH·OW·H·W floats
// (21 MB for 256 channels on 3×3 maps), and reads it back once to sum the taps.
//
// Every output element is summed by one thread in a fixed order (gemm.h, and the tap sums run
// one (oc) per task): results are bitwise identical for any number of threads.
//
// Tested by: ctest -R 'op\.conv2d\.variants'    Benchmarked by: edl_bench --benchmark_filter='conv2d.dense'
#pragma once

#include "kernels/conv2d/conv2d_reference.h"

namespace edl {

// The number of floats in dT: what the weight gradient holds in memory beside its operands (in
// double: on absurd shapes the product of six sizes would overflow an int64).
inline double conv2d_dense_matrix_size(const Conv2dShape& s) {
  return static_cast<double>(s.OC * s.OH * s.OW) * static_cast<double>(s.C * s.H * s.W);
}

// y (N,OC,OH,OW) = conv(x, w) + b. b may be null. groups must be 1.
void conv2d_forward_dense(const float* x, const float* w, const float* b, float* y, const Conv2dShape& s);

// Writes dx (=) and accumulates (+=) into dw and db; null outputs are skipped. groups must be 1.
void conv2d_backward_dense(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                           const Conv2dShape& s);

}  // namespace edl
