// wide_resnet.cpp — xternalz/WideResNet-pytorch's WideResNet (wideresnet.py); see wide_resnet.h.
#include "models/wide_resnet.h"

#include "models/init.h"

namespace edl {

WideBasicBlock::WideBasicBlock(int64_t in_planes, int64_t out_planes, int64_t stride, double drop_rate_)
    : drop_rate(drop_rate_), rng_(global_rng().next()) {
  EDL_CHECK(drop_rate >= 0 && drop_rate < 1, "WideBasicBlock: drop_rate={} must be in [0, 1)", drop_rate);
  // xternalz decides the shortcut by the channels alone (equalInOut); a block that kept its
  // channels but had stride 2 would fail at the addition.
  EDL_CHECK(in_planes != out_planes || stride == 1,
            "WideBasicBlock: a block that keeps its {} channels must have stride 1, got {}", in_planes, stride);
  bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(in_planes));
  conv1 = register_module("conv1", std::make_shared<Conv2d>(in_planes, out_planes, 3, stride, 1, 1, false));
  bn2 = register_module("bn2", std::make_shared<BatchNorm2d>(out_planes));
  conv2 = register_module("conv2", std::make_shared<Conv2d>(out_planes, out_planes, 3, 1, 1, 1, false));
  if (in_planes != out_planes)
    conv_shortcut =
        register_module("convShortcut", std::make_shared<Conv2d>(in_planes, out_planes, 1, stride, 0, 1, false));
}

Tensor WideBasicBlock::forward(const Tensor& x) {
  Tensor a = bn1->forward_relu(x);
  Tensor out = (*conv1)(a);
  if (drop_rate > 0 && is_training()) out = dropout(out, drop_rate, true, rng_.next());
  out = (*conv2)(bn2->forward_relu(out));
  return (conv_shortcut ? (*conv_shortcut)(a) : x) + out;
}

WideGroup::WideGroup(int64_t n, int64_t in_planes, int64_t out_planes, int64_t stride, double drop_rate) {
  layer = register_module("layer", std::make_shared<Sequential>());
  for (int64_t i = 0; i < n; ++i)
    layer->add(std::make_shared<WideBasicBlock>(i == 0 ? in_planes : out_planes, out_planes, i == 0 ? stride : 1,
                                                drop_rate));
}

WideResNet::WideResNet(int64_t depth, int64_t widen_factor, int64_t num_classes, double drop_rate) {
  EDL_CHECK(depth >= 10 && (depth - 4) % 6 == 0, "WideResNet: depth {} must be 6n+4 with n >= 1 (10, 16, 22, 28, 40)",
            depth);
  EDL_CHECK(widen_factor >= 1 && num_classes >= 1, "WideResNet: widen_factor={} and num_classes={} must be positive",
            widen_factor, num_classes);
  const int64_t n = (depth - 4) / 6, k = widen_factor;
  conv1 = register_module("conv1", std::make_shared<Conv2d>(3, 16, 3, 1, 1, 1, false));
  block1 = register_module("block1", std::make_shared<WideGroup>(n, 16, 16 * k, 1, drop_rate));
  block2 = register_module("block2", std::make_shared<WideGroup>(n, 16 * k, 32 * k, 2, drop_rate));
  block3 = register_module("block3", std::make_shared<WideGroup>(n, 32 * k, 64 * k, 2, drop_rate));
  bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(64 * k));
  fc = register_module("fc", std::make_shared<Linear>(64 * k, num_classes));

  // xternalz's loop over self.modules(): conv weights N(0, 2/n) with n = KH*KW*OC; BatchNorm
  // is already 1 and 0; Linear bias zeroed.
  for_each_module(*this, [](const std::string&, Module& m) {
    if (auto* conv = dynamic_cast<Conv2d*>(&m)) kaiming_normal_(conv->weight, FanMode::fan_out);
  });
  fc->bias.fill_(0.0);
}

Tensor WideResNet::forward(const Tensor& x) {
  Tensor out = (*conv1)(x);
  out = (*block3)((*block2)((*block1)(out)));
  out = bn1->forward_relu(out);
  out = avg_pool2d(out, 8);
  return (*fc)(flatten(out));
}

std::shared_ptr<WideResNet> wide_resnet(int64_t depth, int64_t widen_factor, int64_t num_classes, double drop_rate) {
  return std::make_shared<WideResNet>(depth, widen_factor, num_classes, drop_rate);
}

}  // namespace edl
