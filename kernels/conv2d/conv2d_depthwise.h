// conv2d_depthwise.h — a direct kernel for depthwise convolution (groups = C = OC).
//
// x is (N,C,H,W), w is (C,1,KH,KW), b is (C) or null, y is (N,C,OH,OW); shapes as in
// conv2d_reference.h. Each channel is convolved with its own KH×KW filter: y[n][c] = w[c] ⋆ x[n][c] (+ b[c]). There
// is no sum over channels, so there is no matrix product to hand to a GEMM (im2col would give a
// 1-row product per channel) — MobileNetV2's 3×3 depthwise layers run on these loops instead.
//
// One image plane at a time, with its zero padding written out (xpad, (H+2p) × (W+2p)), every
// tap (kh, kw) is one pass along the output row:
//
//   y[oh][0 .. OW)  +=  w[kh][kw] * xpad[oh*s + kh][kw + s*(0 .. OW)]
//
// a scaled vector addition ("axpy") the compiler vectorizes for stride 1. The backward passes
// are the same walk with the roles swapped: dxpad[oh*s + kh][kw + s*ow] += w[kh][kw] * dy[oh][ow]
// (then the interior of dxpad is added to dx) and dw[c][kh][kw] += the dot product of dy with the
// same shifted rows of xpad.
//
// Threads: forward and the data gradient take image planes (n, c); the weight and bias gradients
// take channels, each summing over images in order, so results do not depend on the thread count.
//
// Tested by: ctest -R 'op\.conv2d\.variants'   Benchmarked by: edl_bench --benchmark_filter='conv2d/depthwise'
#pragma once

#include "kernels/conv2d/conv2d_reference.h"

namespace edl {

// True for the shapes this kernel handles: one input and one output channel per group.
inline bool conv2d_is_depthwise(const Conv2dShape& s) { return s.groups == s.C && s.OC == s.C; }

void conv2d_forward_depthwise(const float* x, const float* w, const float* b, float* y, const Conv2dShape& s);

// Writes dx (=) and accumulates (+=) into dw and db; null outputs are skipped.
void conv2d_backward_depthwise(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                               const Conv2dShape& s);

}  // namespace edl
