// op_list.h — every operator of edl, one line each.
//
// The registry (engine/registry.cpp) builds its list from this macro, and the generated tests
// and benchmarks iterate over that list. To add an op: write kernels/<op>/ (reference kernels
// and the OpDef factory `OpDef make_<op>()`), add one X(<op>) line here, and a wrapper in
// engine/ops.h. The build finds the new .cpp by itself. See docs/adding-an-operator.md.
#pragma once

#define EDL_OPS(X)       \
  X(add)                 \
  X(sub)                 \
  X(mul)                 \
  X(matmul)              \
  X(linear)              \
  X(conv2d)              \
  X(batch_norm2d)        \
  X(relu)                \
  X(relu6)               \
  X(hardswish)           \
  X(sigmoid)             \
  X(gelu)                \
  X(max_pool2d)          \
  X(avg_pool2d)          \
  X(global_avg_pool2d)   \
  X(reshape)             \
  X(concat)              \
  X(subsample_pad2d)     \
  X(dropout)             \
  X(softmax)             \
  X(log_softmax)         \
  X(cross_entropy)       \
  X(sum)                 \
  X(mean)
