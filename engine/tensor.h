// tensor.h — the n-dimensional array of edl: shape, dtype, 64-byte aligned storage, views.
//
// A Tensor is a cheap handle (a shared pointer) to a TensorImpl. Copying a Tensor copies the
// handle, not the data; clone() copies the data. Storage is always contiguous, row-major, NCHW
// for images. Views (reshape, flatten, slicing along the first dimension) share the storage and
// only change the shape or the byte offset, so they cost nothing.
//
// The autograd fields (requires_grad, grad, grad_fn) live here too; see autograd.h for how
// backward uses them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/dtype.h"
#include "engine/error.h"

namespace edl {

using Shape = std::vector<int64_t>;

int64_t numel_of(const Shape& shape);
std::string shape_str(const Shape& shape);  // "(2,3,32,32)"

// Statistics of the planes of an (N,C,H,W) float tensor, left by the kernel that wrote it for
// the op that reads it next: for plane (n, c), mean[n*C + c] of its HW values and m2[n*C + c],
// the sum of their squared deviations from that mean. conv2d's fast variants compute them in
// training while each image's output is in cache; batch_norm2d merges them into its batch
// statistics instead of reading the tensor once more (batch_norm2d_simd.h).
struct PlaneStats {
  int64_t N = 0, C = 0, HW = 0;
  std::vector<float> mean, m2;
};

// Raw bytes, 64-byte aligned (one cache line, one AVX-512 register), released with the last
// handle: blocks of 1 MB and more go to a cache for the next tensor of the same size (up to
// 2 GiB in all; tensor.cpp says why), smaller ones back to malloc.
class Storage {
 public:
  explicit Storage(size_t nbytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  std::byte* data() { return data_; }
  size_t nbytes() const { return nbytes_; }
  // The PlaneStats of the tensor that fills this storage from its first byte (Tensor::plane_stats).
  std::shared_ptr<const PlaneStats> plane_stats;

 private:
  std::byte* data_ = nullptr;
  size_t nbytes_ = 0;
};

struct Node;
struct TensorImpl;

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor: defined() is false

  // ---- creation -------------------------------------------------------------------------
  static Tensor empty(const Shape& shape, DType dtype = DType::f32);
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32);
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32);
  static Tensor ones(const Shape& shape, DType dtype = DType::f32) { return full(shape, 1.0, dtype); }
  // Values given in row-major order, converted to dtype.
  static Tensor from(const Shape& shape, const std::vector<double>& values, DType dtype = DType::f32);
  static Tensor scalar(double value, DType dtype = DType::f32) { return from({}, {value}, dtype); }

  // ---- metadata -------------------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  int64_t ndim() const { return static_cast<int64_t>(shape().size()); }
  int64_t dim(int64_t i) const;  // negative i counts from the end, as in PyTorch
  int64_t numel() const;
  DType dtype() const;
  size_t nbytes() const;  // bytes of this tensor's elements (bit-packed: ceil(numel/8))

  // ---- data access ------------------------------------------------------------------------
  // data<T>() checks that T matches the dtype: a mismatch is a bug in the caller.
  template <typename T>
  T* data() {
    check_type(dtype_of<T>());
    return static_cast<T*>(raw());
  }
  template <typename T>
  const T* data() const {
    check_type(dtype_of<T>());
    return static_cast<const T*>(raw());
  }
  void* raw();
  const void* raw() const;
  double item() const;                // the value of a one-element tensor
  double at(int64_t flat_index) const;  // any dtype, as double (slow; for tests and printing)
  std::vector<double> to_vector() const;

  // ---- views (share storage, not tracked by autograd unless noted) -----------------------
  // reshape is an operator (see ops.h) so that gradients flow through it; view() is the raw
  // storage-sharing primitive underneath. One dimension may be -1.
  Tensor view(const Shape& shape) const;
  // Rows [begin, end) along dimension 0; a batch of a data set is a slice of it.
  Tensor slice(int64_t begin, int64_t end) const;

  // ---- copies and conversion -------------------------------------------------------------
  Tensor clone() const;
  // Converts element by element; to(DType::b1) packs sign bits (x >= 0 -> 1), from b1 gives +-1.
  Tensor to(DType dtype) const;
  void copy_(const Tensor& src);  // same shape and dtype required
  void fill_(double value);

  // ---- statistics left by the kernel that wrote the tensor ---------------------------------
  // Its PlaneStats, or null: none attached, or this tensor does not hold the planes they
  // describe (a view from another offset or of another shape; a view of the same planes gets
  // them). copy_ and fill_, through any view, drop them; code that writes into data<T>() of a
  // tensor that has them must drop them too (set_plane_stats(nullptr)).
  const PlaneStats* plane_stats() const;
  void set_plane_stats(std::shared_ptr<const PlaneStats> stats);

  // ---- autograd ----------------------------------------------------------------------------
  bool requires_grad() const;
  Tensor& set_requires_grad(bool on = true);  // leaf tensors only
  Tensor grad() const;                        // undefined until a backward reaches it
  void set_grad(const Tensor& g);
  void zero_grad();                           // drops the gradient (next backward starts fresh)
  bool is_leaf() const;
  std::shared_ptr<Node> grad_fn() const;
  void set_grad_fn(std::shared_ptr<Node> fn);
  Tensor detach() const;  // same storage, no history, requires_grad false
  // Backpropagates from this tensor. Without an argument the tensor must hold one element.
  void backward(const Tensor& dy = Tensor()) const;

  // ---- printing ----------------------------------------------------------------------------
  std::string str(int64_t max_per_dim = 6) const;

  bool same_storage(const Tensor& other) const;
  // No other handle, view or gradient refers to this tensor's elements: changing them in place
  // changes nothing else.
  bool unshared() const;
  TensorImpl* impl() const { return impl_.get(); }

 private:
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}
  void check_type(DType requested) const;
  std::shared_ptr<TensorImpl> impl_;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  size_t offset = 0;  // bytes from storage start
  Shape shape;
  DType dtype = DType::f32;
  bool requires_grad = false;
  Tensor grad;
  std::shared_ptr<Node> grad_fn;  // set on outputs of tracked ops; null on leaves
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// Tensors by name in a fixed order, like PyTorch's state_dict().items().
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

}  // namespace edl
