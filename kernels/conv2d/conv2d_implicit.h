// conv2d_implicit.h — implicit-GEMM convolution: the product of conv2d_im2col.h without col.
//
// x is (N,C,H,W), w is (OC,C/groups,KH,KW), b is (OC) or null, y is (N,OC,OH,OW); shapes as in
// conv2d_reference.h, the specification these kernels are tested against.
//
// im2col writes every KH×KW window of an image into a column matrix, and the GEMM then copies
// that matrix again into its packed micro-panels: two passes over a buffer nine times the
// image (3×3 kernels), most of it out of cache. Implicit GEMM skips the buffer. The packing
// routine of the GEMM's B operand reads the image itself: one micro-panel of NR output pixels,
// KC rows of (channel, kh, kw) at a time, each row a shifted piece of an image row with zeros
// where the window hangs over the padding:
//
//   packed panel (kc × NR)               image x[c]
//   row (c, kh, kw): pixels j0..j0+NR  <- x[c][oh*s - p + kh][ow*s - p + kw] for those pixels
//
// The panel (KC×NR floats: 16 KB with AVX2's NR = 16) is packed into L1 and used at once by every MR-row micro-kernel of the
// weights, which are packed once per call (gemm_pack_a) and shared by all images:
//
//   for each (group, panel of NR pixels)             <- threads take these tasks; pixels are
//                                                       numbered across images, so a panel
//                                                       may span two (7×7 maps) or more
//     for each KC rows of (c, kh, kw)
//       pack the panel from the image                 (L1)
//       for each MR rows of output channels: micro-kernel (gemm_ukernel.h), += into y
//
// With stride 1 and output rows of at least NR pixels (or a little fewer: rows of 15) there is
// not even a panel to pack: cut the panels along output rows (the last one of a row partly
// empty), and row (c, kh, kw) of a panel is NR consecutive floats of the image with its zero
// padding written out (one copy of x per call), at a fixed offset from the panel's corner. The
// micro-kernel (gemm_ukernel_rows) then loads B from there through a table of the CKK offsets,
// and the only data movement left is the weights' packing, once per call. A 3×3 convolution
// of stride 2 (padding 1, even maps) reads its rows in place too, from six phase planes of
// each channel (even or odd rows × the columns each kw reads), written once per image: its
// panels run along the output pixels in raster order.
//
// The data gradient of a stride-1 convolution with a square kernel, padding <= KH-1 and rows
// read in place is itself a convolution — of dy with the weights transposed (in ↔ out
// channels) and flipped (kh → KH-1-kh), padded by KH-1-padding — so it runs through the same
// kernel and needs no col2im either. A 3×3 stride-2 data gradient on even maps is four such
// products, one per parity of dx's rows and columns, their rows of dy read in place
// (dx_by_phases); other data gradients use conv2d_im2col.h. The weight gradient has a direct
// kernel (conv2d_implicit.cpp: sums down the planes of dy and of the padded image, each read
// as one long row and vectorized along it) for stride 1, output rows of at least NR pixels, up
// to 128 × 128 channels per group and kernels other than 1×1 without padding, and for stride 2
// on the phase planes (whole vectors of output pixels, whole blocks of output channels); other wide
// layers (128 output channels and 1024 taps per group and up) take it as one implicit GEMM
// over the whole batch, dw += dy · colᵀ, the driver's panels packed straight from dy and x
// (WgradPacker); the rest (narrow rows, strides, 1×1) use conv2d_im2col.h. (Each choice
// measured: see conv2d_backward_implicit.) On layers with few output channels (ResNet-20's 16)
// the direct kernel's threads take chunks of images, and when dx is a convolution too each
// image's weight-gradient sums run right after its dx, while that image of dy is in cache.
//
// Every output element is summed by one task in a fixed order (the weight gradient by images:
// per chunk of images, then over a fixed number of chunks in order): results are bitwise
// identical for any number of threads.
//
// Tested by: ctest -R 'op\.conv2d\.variants'    Benchmarked by: edl_bench --benchmark_filter='conv2d.implicit'
#pragma once

#include "kernels/common/plane_stats.h"
#include "kernels/conv2d/conv2d_reference.h"

namespace edl {

// y (N,OC,OH,OW) = conv(x, w) + b, or y += conv(x, w) (+ b) with accumulate. b may be null.
void conv2d_forward_implicit(const float* x, const float* w, const float* b, float* y, const Conv2dShape& s,
                             bool accumulate);
inline void conv2d_forward_implicit(const float* x, const float* w, const float* b, float* y, const Conv2dShape& s) {
  conv2d_forward_implicit(x, w, b, y, s, false);
}
// The same (=), writing the PlaneStats of y into stats where its path runs image by image (rows
// read in place, or stride 2's phase planes), each image's while it is in cache; stats->done
// says whether it did.
void conv2d_forward_implicit_stats(const float* x, const float* w, const float* b, float* y, const Conv2dShape& s,
                                   PlaneStatsOut* stats);

// Whether conv2d_backward_implicit sums the weight gradient with its direct kernel (stride 1,
// output rows of at least NR pixels, up to 128 × 128 channels per group, not 1×1 without
// padding) rather than a GEMM: dispatch's rules ask.
bool conv2d_implicit_wgrad_is_direct(const Conv2dShape& s);

// Writes dx (=) and accumulates (+=) into dw and db; null outputs are skipped.
void conv2d_backward_implicit(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                              const Conv2dShape& s);

// The same with dx added into (+=: a gradient already held) instead of written, in the pass
// that computes it (the convolution's output, or col2im).
void conv2d_backward_implicit_add_dx(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                                     const Conv2dShape& s);

}  // namespace edl
