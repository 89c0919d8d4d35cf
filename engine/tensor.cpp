// tensor.cpp — storage, creation, views, conversion and printing of Tensor.
#include "engine/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <mutex>
#include <new>
#include <ostream>
#include <sstream>
#include <string_view>
#if __has_include(<unistd.h>)
#include <unistd.h>  // sysconf: the size of the machine's memory
#endif

#include "engine/autograd.h"

namespace edl {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::s8: return "s8";
    case DType::u8: return "u8";
    case DType::s32: return "s32";
    case DType::s64: return "s64";
    case DType::b1: return "b1";
  }
  return "?";
}

DType dtype_from_name(const std::string& name) {
  for (DType t : {DType::f32, DType::f64, DType::s8, DType::u8, DType::s32, DType::s64, DType::b1})
    if (name == dtype_name(t)) return t;
  throw Error(fmt::format("unknown dtype '{}' (known: f32 f64 s8 u8 s32 s64 b1)", name));
}

int64_t numel_of(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_str(const Shape& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(shape[i]);
  }
  return s + ")";
}

// ---- Storage ------------------------------------------------------------------------------

static constexpr size_t kAlign = 64;

// Large buffers are kept for reuse instead of going back to the system. A training step
// allocates the same activations and gradients every step; glibc serves blocks above 32 MB
// (its largest mmap threshold) straight from mmap and unmaps them on free, so each step would
// fault in every page of them again — with the zeroing the kernel does, that is like writing
// each big tensor one extra time. Blocks of at least kCacheMin bytes are cached by exact size,
// up to cache_max() bytes in total; past that, the smallest cached blocks go back to the system
// first (a training step's working set is a few large sizes that come back every step). The
// limit is a quarter of the machine's memory, at least 2 GiB: airbench at batch 1024 keeps
// about 2.5 GB of activations and gradients alive (its resident size), more than a fixed 2 GiB
// (5 steps with a 2 GiB limit: 54.2 and 53.4 s, 1.42 M page faults, 13-16 s in the kernel; with
// this one: 49.3 and 48.5 s, 1.07 M faults, 8 s; alternating, same build otherwise).
namespace {
constexpr size_t kCacheMin = size_t{1} << 20;

size_t cache_max() {
  static const size_t limit = [] {
    size_t bytes = size_t{2} << 30;
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0) bytes = std::max(bytes, static_cast<size_t>(pages) * static_cast<size_t>(page) / 4);
#endif
    return bytes;
  }();
  return limit;
}

class BlockCache {
 public:
  // The block of that size given back last (blocks of one size sit in the order they came
  // back): it is the likeliest still to be in the caches, so a kernel writing its fresh output
  // there does not first wait for every line to come in from memory. ResNet-20 (edl train
  // --profile-shapes, 39 steps, six alternating pairs), against the one given back first: time
  // in ops 7611/7618/7679/7676/7827/7520 -> 7345/7648/7390/7475/7444/7266 ms; its 16-channel
  // batch norms (which write a fresh dx and y) backward 751-797 -> 660-702, forward 417-435 ->
  // 374-411.
  std::byte* take(size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto last = free_.upper_bound(bytes);
    if (last == free_.begin() || std::prev(last)->first != bytes) return nullptr;
    const auto it = std::prev(last);
    std::byte* p = it->second;
    free_.erase(it);
    cached_ -= bytes;
    return p;
  }
  // False when the block alone is larger than the cache: the caller frees it.
  bool give(std::byte* p, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (bytes > cache_max()) return false;
    while (cached_ + bytes > cache_max()) {
      auto smallest = free_.begin();
      cached_ -= smallest->first;
      std::free(smallest->second);
      free_.erase(smallest);
    }
    free_.emplace(bytes, p);
    cached_ += bytes;
    return true;
  }
  ~BlockCache() {
    for (auto& [bytes, p] : free_) std::free(p);
  }

 private:
  std::mutex mutex_;
  std::multimap<size_t, std::byte*> free_;
  size_t cached_ = 0;
};

BlockCache& block_cache() {
  static BlockCache* cache = new BlockCache;  // never destroyed: tensors may outlive static destructors
  return *cache;
}

size_t rounded_size(size_t nbytes) { return (std::max<size_t>(nbytes, 1) + kAlign - 1) / kAlign * kAlign; }
}  // namespace

Storage::Storage(size_t nbytes) : nbytes_(nbytes) {
  // Round up so that the last SIMD load of a buffer never crosses into unowned memory.
  const size_t rounded = rounded_size(nbytes);
  if (rounded >= kCacheMin) data_ = block_cache().take(rounded);
  if (!data_) data_ = static_cast<std::byte*>(std::aligned_alloc(kAlign, rounded));
  if (!data_) throw std::bad_alloc();
}

Storage::~Storage() {
  const size_t rounded = rounded_size(nbytes_);
  if (rounded >= kCacheMin && block_cache().give(data_, rounded)) return;
  std::free(data_);
}

// ---- creation -----------------------------------------------------------------------------

Tensor Tensor::empty(const Shape& shape, DType dtype) {
  for (int64_t d : shape)
    EDL_CHECK(d >= 0, "Tensor::empty: negative dimension in shape {}", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(bytes_for(dtype, numel_of(shape)));
  impl->shape = shape;
  impl->dtype = dtype;
  // EDL_POISON_EMPTY=1 (the test suite sets it) fills new tensors with all-ones bytes: NaN as a
  // float, -1 as an integer. A kernel that reads an element of its output before writing it, or
  // leaves one unwritten, then gives NaN or garbage, where reused memory would often hold zeros
  // and hide the bug.
  static const bool poison = [] {
    const char* e = std::getenv("EDL_POISON_EMPTY");
    return e && std::string_view(e) == "1";
  }();
  if (poison) std::memset(impl->storage->data(), 0xFF, impl->storage->nbytes());
  return Tensor(std::move(impl));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  std::memset(t.raw(), 0, t.nbytes());
  return t;
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype) {
  Tensor t = empty(shape, dtype);
  t.fill_(value);
  return t;
}

Tensor Tensor::from(const Shape& shape, const std::vector<double>& values, DType dtype) {
  EDL_CHECK(static_cast<int64_t>(values.size()) == numel_of(shape),
            "Tensor::from: {} values given for shape {} ({} elements)", values.size(), shape_str(shape),
            numel_of(shape));
  Tensor t64 = empty(shape, DType::f64);
  std::copy(values.begin(), values.end(), t64.data<double>());
  return dtype == DType::f64 ? t64 : t64.to(dtype);
}

// ---- metadata -------------------------------------------------------------------------------

static const TensorImpl& checked(const std::shared_ptr<TensorImpl>& impl) {
  EDL_CHECK(impl != nullptr, "use of an undefined Tensor");
  return *impl;
}

const Shape& Tensor::shape() const { return checked(impl_).shape; }
int64_t Tensor::numel() const { return numel_of(shape()); }
DType Tensor::dtype() const { return checked(impl_).dtype; }
size_t Tensor::nbytes() const { return bytes_for(dtype(), numel()); }

int64_t Tensor::dim(int64_t i) const {
  int64_t n = ndim();
  EDL_CHECK(i >= -n && i < n, "Tensor::dim({}) out of range for shape {}", i, shape_str(shape()));
  return shape()[static_cast<size_t>(i < 0 ? i + n : i)];
}

void* Tensor::raw() { return checked(impl_).storage->data() + impl_->offset; }
const void* Tensor::raw() const { return checked(impl_).storage->data() + impl_->offset; }

void Tensor::check_type(DType requested) const {
  DType t = dtype();
  // Packed bits are read and written as bytes.
  if (t == requested || (t == DType::b1 && requested == DType::u8)) return;
  throw Error(fmt::format("Tensor::data: tensor has dtype {}, accessed as {}", dtype_name(t),
                          dtype_name(requested)));
}

double Tensor::at(int64_t i) const {
  EDL_CHECK(i >= 0 && i < numel(), "Tensor::at({}) out of range for {} elements", i, numel());
  const void* p = raw();
  switch (dtype()) {
    case DType::f32: return static_cast<const float*>(p)[i];
    case DType::f64: return static_cast<const double*>(p)[i];
    case DType::s8: return static_cast<const int8_t*>(p)[i];
    case DType::u8: return static_cast<const uint8_t*>(p)[i];
    case DType::s32: return static_cast<const int32_t*>(p)[i];
    case DType::s64: return static_cast<double>(static_cast<const int64_t*>(p)[i]);
    case DType::b1: return ((static_cast<const uint8_t*>(p)[i / 8] >> (i % 8)) & 1) ? 1.0 : -1.0;
  }
  return 0;
}

double Tensor::item() const {
  EDL_CHECK(numel() == 1, "Tensor::item: tensor of shape {} has {} elements, expected 1",
            shape_str(shape()), numel());
  return at(0);
}

std::vector<double> Tensor::to_vector() const {
  std::vector<double> v(static_cast<size_t>(numel()));
  const int64_t n = numel();
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = at(i);
  return v;
}

// ---- views --------------------------------------------------------------------------------

Tensor Tensor::view(const Shape& requested) const {
  Shape shape = requested;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      EDL_CHECK(infer < 0, "view: more than one -1 in {}", shape_str(requested));
      infer = static_cast<int64_t>(i);
    } else {
      EDL_CHECK(shape[i] >= 0, "view: negative dimension in {}", shape_str(requested));
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    EDL_CHECK(known > 0 && numel() % known == 0, "view: cannot infer -1 in {} for {} elements",
              shape_str(requested), numel());
    shape[static_cast<size_t>(infer)] = numel() / known;
  }
  EDL_CHECK(numel_of(shape) == numel(), "view: shape {} has {} elements, tensor of shape {} has {}",
            shape_str(shape), numel_of(shape), shape_str(this->shape()), numel());
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = impl_->storage;
  impl->offset = impl_->offset;
  impl->shape = shape;
  impl->dtype = impl_->dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::slice(int64_t begin, int64_t end) const {
  EDL_CHECK(ndim() >= 1, "slice: tensor of shape {} has no dimension to slice", shape_str(shape()));
  int64_t n = shape()[0];
  EDL_CHECK(0 <= begin && begin <= end && end <= n, "slice: [{}, {}) out of range for dimension 0 of size {}",
            begin, end, n);
  int64_t row = numel_of(Shape(shape().begin() + 1, shape().end()));
  if (dtype() == DType::b1)
    EDL_CHECK((begin * row) % 8 == 0, "slice: bit-packed rows must start on a byte boundary");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = impl_->storage;
  impl->offset = impl_->offset + bytes_for(dtype(), begin * row);
  impl->shape = shape();
  impl->shape[0] = end - begin;
  impl->dtype = dtype();
  return Tensor(std::move(impl));
}

bool Tensor::same_storage(const Tensor& other) const {
  return defined() && other.defined() && impl_->storage == other.impl_->storage;
}

bool Tensor::unshared() const { return defined() && impl_.use_count() == 1 && impl_->storage.use_count() == 1; }

// ---- copies and conversion ------------------------------------------------------------------

Tensor Tensor::clone() const {
  Tensor t = empty(shape(), dtype());
  std::memcpy(t.raw(), raw(), nbytes());
  return t;
}

void Tensor::copy_(const Tensor& src) {
  EDL_CHECK(src.shape() == shape() && src.dtype() == dtype(), "copy_: source {} {} does not match destination {} {}",
            shape_str(src.shape()), dtype_name(src.dtype()), shape_str(shape()), dtype_name(dtype()));
  std::memmove(raw(), src.raw(), nbytes());
  impl_->storage->plane_stats = nullptr;  // no longer the values they describe
}

template <typename T>
static void store(void* p, int64_t i, double v) {
  static_cast<T*>(p)[i] = static_cast<T>(v);
}

// Integer targets saturate and round to nearest, so that to(s8) of a large value is 127, not
// a wrapped-around surprise.
template <typename T>
static void store_int(void* p, int64_t i, double v) {
  double lo = static_cast<double>(std::numeric_limits<T>::min());
  double hi = static_cast<double>(std::numeric_limits<T>::max());
  static_cast<T*>(p)[i] = static_cast<T>(std::clamp(std::nearbyint(v), lo, hi));
}

static void store_any(DType t, void* p, int64_t i, double v) {
  switch (t) {
    case DType::f32: store<float>(p, i, v); break;
    case DType::f64: store<double>(p, i, v); break;
    case DType::s8: store_int<int8_t>(p, i, v); break;
    case DType::u8: store_int<uint8_t>(p, i, v); break;
    case DType::s32: store_int<int32_t>(p, i, v); break;
    case DType::s64: store_int<int64_t>(p, i, v); break;
    case DType::b1: {
      auto* bytes = static_cast<uint8_t*>(p);
      uint8_t bit = static_cast<uint8_t>(1u << (i % 8));
      if (v >= 0) bytes[i / 8] |= bit; else bytes[i / 8] &= static_cast<uint8_t>(~bit);
      break;
    }
  }
}

Tensor Tensor::to(DType target) const {
  if (target == dtype()) return clone();
  Tensor t = target == DType::b1 ? zeros(shape(), target) : empty(shape(), target);
  void* p = t.raw();
  const int64_t n = numel();
  if (dtype() == DType::f32 && target == DType::f64) {  // the common case, kept fast
    const float* s = data<float>();
    for (int64_t i = 0; i < n; ++i) static_cast<double*>(p)[i] = s[i];
  } else if (dtype() == DType::f64 && target == DType::f32) {
    const double* s = data<double>();
    for (int64_t i = 0; i < n; ++i) static_cast<float*>(p)[i] = static_cast<float>(s[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) store_any(target, p, i, at(i));
  }
  return t;
}

void Tensor::fill_(double value) {
  void* p = raw();
  const int64_t n = numel();
  for (int64_t i = 0; i < n; ++i) store_any(dtype(), p, i, value);
  impl_->storage->plane_stats = nullptr;
}

// ---- plane statistics ------------------------------------------------------------------------

const PlaneStats* Tensor::plane_stats() const {
  if (!defined() || !impl_->storage->plane_stats || impl_->offset != 0 || dtype() != DType::f32 || ndim() != 4)
    return nullptr;
  const PlaneStats& ps = *impl_->storage->plane_stats;
  const bool fits = ps.N == dim(0) && ps.C == dim(1) && ps.HW == dim(2) * dim(3) &&
                    static_cast<int64_t>(ps.mean.size()) == ps.N * ps.C && ps.m2.size() == ps.mean.size();
  return fits ? &ps : nullptr;
}

void Tensor::set_plane_stats(std::shared_ptr<const PlaneStats> stats) {
  EDL_CHECK(defined(), "set_plane_stats: undefined tensor");
  impl_->storage->plane_stats = std::move(stats);
}

// ---- autograd fields ----------------------------------------------------------------------

bool Tensor::requires_grad() const { return defined() && impl_->requires_grad; }

Tensor& Tensor::set_requires_grad(bool on) {
  EDL_CHECK(is_leaf(), "set_requires_grad: only leaf tensors (not outputs of tracked ops) can change it");
  EDL_CHECK(!on || is_floating(dtype()), "set_requires_grad: dtype {} cannot have gradients", dtype_name(dtype()));
  impl_->requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const { return checked(impl_).grad; }
void Tensor::set_grad(const Tensor& g) { checked(impl_); impl_->grad = g; }
void Tensor::zero_grad() { checked(impl_); impl_->grad = Tensor(); }
bool Tensor::is_leaf() const { return checked(impl_).grad_fn == nullptr; }
std::shared_ptr<Node> Tensor::grad_fn() const { return checked(impl_).grad_fn; }
void Tensor::set_grad_fn(std::shared_ptr<Node> fn) {
  checked(impl_);
  impl_->grad_fn = std::move(fn);
  impl_->requires_grad = impl_->grad_fn != nullptr || impl_->requires_grad;
}

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = checked(impl_).storage;
  impl->offset = impl_->offset;
  impl->shape = impl_->shape;
  impl->dtype = impl_->dtype;
  return Tensor(std::move(impl));
}

void Tensor::backward(const Tensor& dy) const { edl::backward(*this, dy); }

// ---- printing -----------------------------------------------------------------------------

static void print_rec(std::ostringstream& os, const Tensor& t, size_t d, int64_t base, int64_t max_per_dim) {
  const Shape& s = t.shape();
  if (d == s.size()) {
    double v = t.at(base);
    if (is_floating(t.dtype())) os << fmt::format("{:.4f}", v); else os << fmt::format("{}", v);
    return;
  }
  int64_t stride = numel_of(Shape(s.begin() + static_cast<long>(d) + 1, s.end()));
  os << "[";
  for (int64_t i = 0; i < s[d]; ++i) {
    if (s[d] > max_per_dim && i == max_per_dim / 2) {
      os << "..., ";
      i = s[d] - max_per_dim / 2;
    }
    print_rec(os, t, d + 1, base + i * stride, max_per_dim);
    if (i + 1 < s[d]) os << (d + 1 == s.size() ? ", " : ",\n" + std::string(d + 8, ' '));
  }
  os << "]";
}

std::string Tensor::str(int64_t max_per_dim) const {
  if (!defined()) return "tensor(undefined)";
  std::ostringstream os;
  os << "tensor(";
  print_rec(os, *this, 0, 0, max_per_dim);
  os << ", shape=" << shape_str(shape()) << ", dtype=" << dtype_name(dtype());
  if (requires_grad()) os << ", requires_grad";
  os << ")";
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

}  // namespace edl
