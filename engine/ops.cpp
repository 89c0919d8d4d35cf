// ops.cpp — the public wrappers: arguments in, edl::call out.
#include "engine/ops.h"

namespace edl {

// Each wrapper looks its OpDef up once (a function-local static), not on every call.
#define EDL_OP(name)                          \
  static const OpDef& def = ::edl::op(name); \
  (void)def

Tensor add(const Tensor& a, const Tensor& b) { EDL_OP("add"); return call(def, {a, b}); }
Tensor sub(const Tensor& a, const Tensor& b) { EDL_OP("sub"); return call(def, {a, b}); }
Tensor mul(const Tensor& a, const Tensor& b) { EDL_OP("mul"); return call(def, {a, b}); }
Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator*(const Tensor& a, double s) { return mul(a, Tensor::scalar(s, a.dtype())); }

Tensor matmul(const Tensor& a, const Tensor& b) { EDL_OP("matmul"); return call(def, {a, b}); }

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  EDL_OP("linear");
  return b.defined() ? call(def, {x, w, b}) : call(def, {x, w});
}

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, int64_t stride, int64_t padding, int64_t groups) {
  EDL_OP("conv2d");
  Attrs a{{"stride", stride}, {"padding", padding}, {"groups", groups}};
  return b.defined() ? call(def, {x, w, b}, a) : call(def, {x, w}, a);
}

Tensor batch_norm2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                    const Tensor& running_var, bool training, double momentum, double eps, bool relu,
                    const Tensor& residual) {
  EDL_OP("batch_norm2d");
  Tensors in{x, weight, bias, running_mean, running_var};
  if (residual.defined()) in.push_back(residual);
  return call(def, in, {{"training", int64_t{training}}, {"momentum", momentum}, {"eps", eps}, {"relu", int64_t{relu}}});
}

Tensor relu(const Tensor& x) { EDL_OP("relu"); return call(def, {x}); }
Tensor relu6(const Tensor& x) { EDL_OP("relu6"); return call(def, {x}); }
Tensor hardswish(const Tensor& x) { EDL_OP("hardswish"); return call(def, {x}); }
Tensor sigmoid(const Tensor& x) { EDL_OP("sigmoid"); return call(def, {x}); }
Tensor gelu(const Tensor& x) { EDL_OP("gelu"); return call(def, {x}); }

static Attrs pool_attrs(int64_t k, int64_t stride, int64_t padding) {
  return {{"kernel_size", k}, {"stride", stride < 0 ? k : stride}, {"padding", padding}};
}
Tensor max_pool2d(const Tensor& x, int64_t k, int64_t stride, int64_t padding) {
  EDL_OP("max_pool2d");
  return call(def, {x}, pool_attrs(k, stride, padding));
}
Tensor avg_pool2d(const Tensor& x, int64_t k, int64_t stride, int64_t padding) {
  EDL_OP("avg_pool2d");
  return call(def, {x}, pool_attrs(k, stride, padding));
}
Tensor global_avg_pool2d(const Tensor& x) { EDL_OP("global_avg_pool2d"); return call(def, {x}); }

Tensor reshape(const Tensor& x, const std::vector<int64_t>& shape) {
  EDL_OP("reshape");
  return call(def, {x}, {{"shape", shape}});
}
Tensor flatten(const Tensor& x) { return reshape(x, {x.dim(0), -1}); }
Tensor concat(const std::vector<Tensor>& xs, int64_t dim) {
  EDL_OP("concat");
  return call(def, xs, {{"dim", dim}});
}
Tensor subsample_pad2d(const Tensor& x, int64_t stride, int64_t pad) {
  EDL_OP("subsample_pad2d");
  return call(def, {x}, {{"stride", stride}, {"pad", pad}});
}

Tensor dropout(const Tensor& x, double p, bool training, uint64_t seed) {
  EDL_OP("dropout");
  // The seed travels as an attribute (a signed 64-bit integer); the kernel reads the same bits back.
  return call(def, {x}, {{"p", p}, {"training", int64_t{training}}, {"seed", static_cast<int64_t>(seed)}});
}

Tensor softmax(const Tensor& x) { EDL_OP("softmax"); return call(def, {x}); }
Tensor log_softmax(const Tensor& x) { EDL_OP("log_softmax"); return call(def, {x}); }
Tensor cross_entropy(const Tensor& logits, const Tensor& target, double label_smoothing) {
  EDL_OP("cross_entropy");
  return call(def, {logits, target}, {{"label_smoothing", label_smoothing}});
}

Tensor sum(const Tensor& x) { EDL_OP("sum"); return call(def, {x}); }
Tensor mean(const Tensor& x) { EDL_OP("mean"); return call(def, {x}); }

}  // namespace edl
