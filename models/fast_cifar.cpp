// fast_cifar.cpp — the airbench-shaped networks of fast_cifar.h.
#include "models/fast_cifar.h"

#include <Eigen/Dense>

#include "engine/autograd.h"

namespace edl {

namespace {

// torch.nn.init.dirac_ on the first C_in filters of a (OC, C_in, K, K) weight, as airbench does
// after the default init: filter o < C_in becomes the identity on channel o (1 at the centre
// tap, 0 elsewhere), so the convolution starts as an implicit residual connection.
void dirac_first_filters(Tensor& weight) {
  const int64_t OC = weight.dim(0), C = weight.dim(1), K = weight.dim(2);
  float* w = weight.data<float>();
  for (int64_t o = 0; o < std::min(OC, C); ++o) {
    std::fill(w + o * C * K * K, w + (o + 1) * C * K * K, 0.0f);
    w[((o * C + o) * K + K / 2) * K + K / 2] = 1.0f;
  }
}

}  // namespace

FastCifarBlock::FastCifarBlock(int64_t in_channels, int64_t out_channels, bool airbench) : gelu_activation(airbench) {
  // Registration order = state_dict order of the PyTorch modules in docs/fast-training.md.
  const double eps = airbench ? 1e-12 : 1e-5, momentum = airbench ? 0.4 : 0.1;
  conv1 = register_module("conv1", std::make_shared<Conv2d>(in_channels, out_channels, 3, 1, 1, 1, false));
  norm1 = register_module("norm1", std::make_shared<BatchNorm2d>(out_channels, eps, momentum));
  conv2 = register_module("conv2", std::make_shared<Conv2d>(out_channels, out_channels, 3, 1, 1, 1, false));
  norm2 = register_module("norm2", std::make_shared<BatchNorm2d>(out_channels, eps, momentum));
  if (airbench) {
    dirac_first_filters(conv1->weight);
    dirac_first_filters(conv2->weight);
    norm1->weight.set_requires_grad(false);
    norm2->weight.set_requires_grad(false);
  }
}

Tensor FastCifarBlock::forward(const Tensor& x) {
  // Pooling before the norm, as airbench does: the norm and the activation then run on a
  // quarter of the pixels.
  // The ReLU runs inside the norm's op (BatchNorm2d::forward_relu); GELU after it.
  auto norm_act = [&](BatchNorm2d& norm, const Tensor& t) { return gelu_activation ? gelu(norm(t)) : norm.forward_relu(t); };
  Tensor h = norm_act(*norm1, max_pool2d((*conv1)(x), 2, 2, 0));
  return norm_act(*norm2, (*conv2)(h));
}

FastCifar::FastCifar(int64_t num_classes, FastCifarOptions o) : options(o) {
  EDL_CHECK(num_classes >= 1, "FastCifar: num_classes must be at least 1, got {}", num_classes);
  EDL_CHECK(o.w1 >= 1 && o.w2 >= 1 && o.w3 >= 1, "FastCifar: widths must be positive, got {}, {}, {}", o.w1, o.w2, o.w3);
  stem = register_module("stem", std::make_shared<Conv2d>(3, 24, 2, 1, 0, 1, true));
  block1 = register_module("block1", std::make_shared<FastCifarBlock>(24, o.w1, o.airbench));
  block2 = register_module("block2", std::make_shared<FastCifarBlock>(o.w1, o.w2, o.airbench));
  block3 = register_module("block3", std::make_shared<FastCifarBlock>(o.w2, o.w3, o.airbench));
  head = register_module("head", std::make_shared<Linear>(o.w3, num_classes, false));
  if (o.airbench) {
    stem->weight.set_requires_grad(false);  // set by init_whitening, then frozen
    stem->bias.fill_(0.0f);                 // airbench zeroes the biases of its convolutions
  }
}

Tensor FastCifar::forward(const Tensor& x) {
  Tensor s = (*stem)(x);
  Tensor h = (*block3)((*block2)((*block1)(options.airbench ? gelu(s) : relu(s))));
  Tensor logits = (*head)(flatten(max_pool2d(h, 3, 3, 0)));
  // airbench's output scale: logits of a freshly initialized network are 9 times smaller, so
  // the softmax starts nearly uniform and the head can take a large learning rate.
  return options.airbench ? logits * (1.0 / 9.0) : logits;
}

void FastCifar::init_whitening(const Tensor& images, double eps) {
  EDL_CHECK(images.dtype() == DType::f32 && images.ndim() == 4 && images.dim(1) == 3 && images.dim(2) >= 2 &&
                images.dim(3) >= 2,
            "init_whitening: expected f32 images (N,3,H,W) with H, W >= 2, got {} {}", dtype_name(images.dtype()),
            shape_str(images.shape()));
  EDL_CHECK(stem->weight.shape() == (Shape{24, 3, 2, 2}), "init_whitening: the stem must be 3->24 with a 2x2 kernel, is {}",
            shape_str(stem->weight.shape()));
  const Tensor& x = images;
  const int64_t N = x.dim(0), H = x.dim(2), W = x.dim(3), D = 12;
  // The second moments of every 2×2 patch, in the weight's (c, kh, kw) order, summed in double.
  Eigen::MatrixXd sigma = Eigen::MatrixXd::Zero(D, D);
  Eigen::VectorXd p(D);
  const float* px = x.data<float>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i + 1 < H; ++i)
      for (int64_t j = 0; j + 1 < W; ++j) {
        for (int64_t c = 0; c < 3; ++c)
          for (int64_t di = 0; di < 2; ++di)
            for (int64_t dj = 0; dj < 2; ++dj) p[c * 4 + di * 2 + dj] = px[((n * 3 + c) * H + i + di) * W + j + dj];
        sigma.selfadjointView<Eigen::Lower>().rankUpdate(p);
      }
  sigma = sigma.selfadjointView<Eigen::Lower>();
  sigma /= static_cast<double>(N * (H - 1) * (W - 1));
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(sigma);
  EDL_CHECK(eig.info() == Eigen::Success, "init_whitening: the eigendecomposition of the patch covariance failed");
  NoGradGuard no_grad;
  float* w = stem->weight.data<float>();
  for (int64_t k = 0; k < D; ++k) {
    const int64_t src = D - 1 - k;  // Eigen sorts eigenvalues increasingly; airbench's filters go largest first
    const double scale = 1.0 / std::sqrt(std::max(eig.eigenvalues()[src], 0.0) + eps);
    for (int64_t d = 0; d < D; ++d) {
      const float v = static_cast<float>(eig.eigenvectors()(d, src) * scale);
      w[k * D + d] = v;
      w[(D + k) * D + d] = -v;
    }
  }
}

std::shared_ptr<FastCifar> fast_cifar(int64_t num_classes, FastCifarOptions options) {
  return std::make_shared<FastCifar>(num_classes, options);
}

}  // namespace edl
