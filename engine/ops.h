// ops.h — the public functional API: one wrapper per registered op, PyTorch's names.
//
// Each wrapper only packs its arguments into the uniform (tensors, attrs) call of the
// registry; validation, variant choice and autograd all happen in edl::call.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/registry.h"

namespace edl {

// Elementwise, with broadcasting.
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, double s);  // a * scalar (a scalar tensor of a's dtype)

// Products.
Tensor matmul(const Tensor& a, const Tensor& b);  // (M,K) x (K,N)
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor());  // x wᵀ + b
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b = Tensor(), int64_t stride = 1, int64_t padding = 0,
              int64_t groups = 1);

// Normalization: updates running_mean/var in place when training. With relu, the output is
// relu(batch_norm(x)) computed in one op: one pass over memory fewer each way than the two ops.
// With a residual (x's shape), relu?(batch_norm(x) + residual): the end of a residual block,
// where the add and the ReLU would each be a pass over memory of their own.
Tensor batch_norm2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                    const Tensor& running_var, bool training, double momentum = 0.1, double eps = 1e-5,
                    bool relu = false, const Tensor& residual = Tensor());

// Activations.
Tensor relu(const Tensor& x);
Tensor relu6(const Tensor& x);
Tensor hardswish(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor gelu(const Tensor& x);  // x Φ(x), the exact (erf) form, as torch.nn.GELU()

// Pooling. stride < 0 means stride = kernel_size (PyTorch's default).
Tensor max_pool2d(const Tensor& x, int64_t kernel_size, int64_t stride = -1, int64_t padding = 0);
Tensor avg_pool2d(const Tensor& x, int64_t kernel_size, int64_t stride = -1, int64_t padding = 0);
Tensor global_avg_pool2d(const Tensor& x);  // (N,C,H,W) -> (N,C)

// Shape.
Tensor reshape(const Tensor& x, const std::vector<int64_t>& shape);
Tensor flatten(const Tensor& x);  // (N, ...) -> (N, -1)
Tensor concat(const std::vector<Tensor>& xs, int64_t dim = 1);
// x[:, :, ::stride, ::stride] with `pad` zero channels on each side: (N,C,H,W) ->
// (N, C + 2*pad, ceil(H/stride), ceil(W/stride)), the option-A shortcut of the CIFAR ResNets.
Tensor subsample_pad2d(const Tensor& x, int64_t stride, int64_t pad);

// Regularization. The mask is a function of seed: the same seed gives the same mask.
Tensor dropout(const Tensor& x, double p, bool training, uint64_t seed);

// Probabilities and losses (over the last dimension).
Tensor softmax(const Tensor& x);
Tensor log_softmax(const Tensor& x);
// target: s32 labels (N) or probabilities (N,K) of logits' dtype. Returns the batch mean.
Tensor cross_entropy(const Tensor& logits, const Tensor& target, double label_smoothing = 0.0);

// Reductions over all elements.
Tensor sum(const Tensor& x);
Tensor mean(const Tensor& x);

}  // namespace edl
