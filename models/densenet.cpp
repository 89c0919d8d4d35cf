// densenet.cpp — kuangliu/pytorch-cifar's DenseNet (models/densenet.py); see densenet.h.
#include "models/densenet.h"

#include <cmath>

namespace edl {

DenseBottleneck::DenseBottleneck(int64_t in_planes, int64_t growth_rate) {
  bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(in_planes));
  conv1 = register_module("conv1", std::make_shared<Conv2d>(in_planes, 4 * growth_rate, 1, 1, 0, 1, false));
  bn2 = register_module("bn2", std::make_shared<BatchNorm2d>(4 * growth_rate));
  conv2 = register_module("conv2", std::make_shared<Conv2d>(4 * growth_rate, growth_rate, 3, 1, 1, 1, false));
}

Tensor DenseBottleneck::forward(const Tensor& x) {
  Tensor out = (*conv1)(bn1->forward_relu(x));
  out = (*conv2)(bn2->forward_relu(out));
  return concat({out, x}, 1);  // new channels first, as torch.cat([out, x], 1)
}

DenseTransition::DenseTransition(int64_t in_planes, int64_t out_planes) {
  bn = register_module("bn", std::make_shared<BatchNorm2d>(in_planes));
  conv = register_module("conv", std::make_shared<Conv2d>(in_planes, out_planes, 1, 1, 0, 1, false));
}

Tensor DenseTransition::forward(const Tensor& x) { return avg_pool2d((*conv)(bn->forward_relu(x)), 2); }

DenseNet::DenseNet(const std::vector<int64_t>& nblocks, int64_t growth_rate, int64_t num_classes, double reduction) {
  EDL_CHECK(nblocks.size() == 4,
            "DenseNet: nblocks must list 4 dense blocks (densenet_cifar: {{6, 12, 24, 16}}), got {}", nblocks.size());
  EDL_CHECK(growth_rate >= 1 && num_classes >= 1, "DenseNet: growth_rate={} and num_classes={} must be positive",
            growth_rate, num_classes);
  EDL_CHECK(reduction > 0 && reduction <= 1, "DenseNet: reduction must be in (0, 1], got {}", reduction);

  // _make_dense_layers: layer i of a block sees in_planes + i*growth_rate channels.
  auto dense = [&](int64_t& planes, int64_t n) {
    auto block = std::make_shared<Sequential>();
    for (int64_t i = 0; i < n; ++i) {
      block->add(std::make_shared<DenseBottleneck>(planes, growth_rate));
      planes += growth_rate;
    }
    return block;
  };
  // out_planes = int(math.floor(num_planes*reduction))
  auto transition = [&](int64_t& planes) {
    const int64_t out = static_cast<int64_t>(std::floor(static_cast<double>(planes) * reduction));
    auto t = std::make_shared<DenseTransition>(planes, out);
    planes = out;
    return t;
  };

  int64_t planes = 2 * growth_rate;
  conv1 = register_module("conv1", std::make_shared<Conv2d>(3, planes, 3, 1, 1, 1, false));
  dense1 = register_module("dense1", dense(planes, nblocks[0]));
  trans1 = register_module("trans1", transition(planes));
  dense2 = register_module("dense2", dense(planes, nblocks[1]));
  trans2 = register_module("trans2", transition(planes));
  dense3 = register_module("dense3", dense(planes, nblocks[2]));
  trans3 = register_module("trans3", transition(planes));
  dense4 = register_module("dense4", dense(planes, nblocks[3]));
  bn = register_module("bn", std::make_shared<BatchNorm2d>(planes));
  linear = register_module("linear", std::make_shared<Linear>(planes, num_classes));
}

Tensor DenseNet::forward(const Tensor& x) {
  Tensor out = (*conv1)(x);
  out = (*trans1)((*dense1)(out));
  out = (*trans2)((*dense2)(out));
  out = (*trans3)((*dense3)(out));
  out = (*dense4)(out);
  out = avg_pool2d(bn->forward_relu(out), 4);
  return (*linear)(flatten(out));
}

std::shared_ptr<DenseNet> densenet_cifar(int64_t num_classes) {
  return std::make_shared<DenseNet>(std::vector<int64_t>{6, 12, 24, 16}, 12, num_classes);
}

}  // namespace edl
