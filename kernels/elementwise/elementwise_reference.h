// elementwise_reference.h — add, sub, mul with NumPy/PyTorch broadcasting, as plain loops.
//
// a and b are broadcast to y's shape: a dimension of size 1 (or a missing leading dimension)
// repeats. A per-channel bias b of shape (C,1,1) added to x of shape (N,C,H,W) is the case
// CNNs need. Broadcast holds, for every dimension of y, the stride of a and of b in elements,
// with stride 0 where that operand is broadcast, so a[offset] reads the repeated value.
//
// Backward: y = a + b gives da = dy, db = dy, summed over the broadcast positions (a value of b
// used at many positions of y receives the sum of their gradients); y = a - b gives db = -dy;
// y = a * b gives da = dy * b, db = dy * a. Backward kernels accumulate (+=) into da and db,
// which the caller zeroes.
//
// Tested by: ctest -R 'op\.(add|sub|mul)'     Benchmarked by: build/bench/edl_bench --benchmark_filter='^(add|sub|mul)/'
#pragma once

#include <cstdint>
#include <vector>

namespace edl {

struct Broadcast {
  std::vector<int64_t> y_shape;
  std::vector<int64_t> a_stride, b_stride;  // per dimension of y; 0 where broadcast
  int64_t numel = 1;
};

// Offsets into a and b of the flat output index i.
inline void broadcast_offsets(const Broadcast& bc, int64_t i, int64_t& oa, int64_t& ob) {
  oa = ob = 0;
  for (int64_t d = static_cast<int64_t>(bc.y_shape.size()) - 1; d >= 0; --d) {
    int64_t coord = i % bc.y_shape[d];
    i /= bc.y_shape[d];
    oa += coord * bc.a_stride[d];
    ob += coord * bc.b_stride[d];
  }
}

template <typename T>
void add_forward_reference(const T* a, const T* b, T* y, const Broadcast& bc) {
  for (int64_t i = 0; i < bc.numel; ++i) {
    int64_t oa, ob;
    broadcast_offsets(bc, i, oa, ob);
    y[i] = a[oa] + b[ob];
  }
}

// sign is +1 for add and -1 for sub: d(a - b)/db = -1.
template <typename T>
void add_backward_reference(const T* dy, T* da, T* db, T sign, const Broadcast& bc) {
  for (int64_t i = 0; i < bc.numel; ++i) {
    int64_t oa, ob;
    broadcast_offsets(bc, i, oa, ob);
    if (da) da[oa] += dy[i];
    if (db) db[ob] += sign * dy[i];
  }
}

template <typename T>
void sub_forward_reference(const T* a, const T* b, T* y, const Broadcast& bc) {
  for (int64_t i = 0; i < bc.numel; ++i) {
    int64_t oa, ob;
    broadcast_offsets(bc, i, oa, ob);
    y[i] = a[oa] - b[ob];
  }
}

template <typename T>
void mul_forward_reference(const T* a, const T* b, T* y, const Broadcast& bc) {
  for (int64_t i = 0; i < bc.numel; ++i) {
    int64_t oa, ob;
    broadcast_offsets(bc, i, oa, ob);
    y[i] = a[oa] * b[ob];
  }
}

template <typename T>
void mul_backward_reference(const T* a, const T* b, const T* dy, T* da, T* db, const Broadcast& bc) {
  for (int64_t i = 0; i < bc.numel; ++i) {
    int64_t oa, ob;
    broadcast_offsets(bc, i, oa, ob);
    if (da) da[oa] += dy[i] * b[ob];
    if (db) db[ob] += dy[i] * a[oa];
  }
}

}  // namespace edl
