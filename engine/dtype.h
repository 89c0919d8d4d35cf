// dtype.h — element types of a Tensor.
//
//   f32  training and inference        f64  gradient checks (finite differences need it)
//   s8   int8 weights / activations    u8   images, unsigned int8 activations
//   s32  int8 GEMM accumulators, labels s64  PyTorch's integer buffers (num_batches_tracked)
//   b1   1 bit per element, packed 8 per byte, LSB first: bit i of the flat index is
//        (byte[i / 8] >> (i % 8)) & 1; bit 1 means +1, bit 0 means -1 (binary networks).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace edl {

enum class DType : uint8_t { f32, f64, s8, u8, s32, s64, b1 };

const char* dtype_name(DType t);  // "f32", ...
DType dtype_from_name(const std::string& name);  // throws edl::Error on an unknown name

// Bytes per element; 0 for the bit-packed b1 (use bytes_for).
inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::s8: return 1;
    case DType::u8: return 1;
    case DType::s32: return 4;
    case DType::s64: return 8;
    case DType::b1: return 0;
  }
  return 0;
}

inline size_t bytes_for(DType t, int64_t numel) {
  return t == DType::b1 ? static_cast<size_t>((numel + 7) / 8) : dtype_size(t) * static_cast<size_t>(numel);
}

inline bool is_floating(DType t) { return t == DType::f32 || t == DType::f64; }

template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<int8_t>() { return DType::s8; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::u8; }
template <> constexpr DType dtype_of<int32_t>() { return DType::s32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::s64; }

}  // namespace edl
