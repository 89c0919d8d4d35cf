// op_util.h — what the op definitions share: input validation for shape rules, gradient
// buffers, and pointer helpers. Kernels never include this: they see raw pointers and sizes.
//
// Every validation message names the op, the argument, what was expected and what arrived, e.g.
//   "conv2d: x must be 4-d (N,C,H,W), got shape (3,32,32)".
#pragma once

#include <string>

#include "engine/registry.h"

namespace edl {

inline void expect_ndim(const std::string& op, const char* what, const Tensor& t, int64_t ndim, const char* layout) {
  EDL_CHECK(t.ndim() == ndim, "{}: {} must be {}-d {}, got shape {}", op, what, ndim, layout, shape_str(t.shape()));
}

inline void expect_shape(const std::string& op, const char* what, const Tensor& t, const Shape& shape) {
  EDL_CHECK(t.shape() == shape, "{}: {} must have shape {}, got {}", op, what, shape_str(shape), shape_str(t.shape()));
}

inline void expect_floating(const std::string& op, const char* what, const Tensor& t) {
  EDL_CHECK(is_floating(t.dtype()), "{}: {} must be f32 or f64, got {}", op, what, dtype_name(t.dtype()));
}

// Every floating input has the same dtype as input 0 (no silent mixed precision).
inline void expect_same_floating(const std::string& op, const Tensors& in) {
  expect_floating(op, "input 0", in[0]);
  for (size_t i = 1; i < in.size(); ++i)
    if (is_floating(in[i].dtype()))
      EDL_CHECK(in[i].dtype() == in[0].dtype(), "{}: input {} has dtype {}, input 0 has {}", op, i,
                dtype_name(in[i].dtype()), dtype_name(in[0].dtype()));
}

// Output size of a sliding window (convolution, pooling), checked to be at least 1.
inline int64_t window_out(const std::string& op, int64_t in, int64_t k, int64_t stride, int64_t pad, const char* dim) {
  EDL_CHECK(stride >= 1 && pad >= 0 && k >= 1, "{}: kernel {} stride {} padding {} must be positive", op, k, stride, pad);
  int64_t out = (in + 2 * pad - k) / stride + 1;
  EDL_CHECK(in + 2 * pad >= k && out >= 1, "{}: kernel {} with padding {} does not fit input {} of {}", op, k, pad, dim, in);
  return out;
}

// A zeroed gradient buffer shaped like `like` when `needed`, else an undefined tensor.
// Backward kernels accumulate into it.
inline Tensor grad_buffer(bool needed, const Tensor& like) {
  return needed ? Tensor::zeros(like.shape(), like.dtype()) : Tensor();
}

// The data pointer of an optional tensor, nullptr when undefined: kernels skip null outputs.
template <typename T>
T* ptr_or_null(Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}
template <typename T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

}  // namespace edl
