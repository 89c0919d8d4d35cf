// wide_resnet.h — Wide Residual Networks for CIFAR (Zagoruyko & Komodakis 2016,
// https://arxiv.org/abs/1605.07146), WRN-depth-k, as xternalz/WideResNet-pytorch builds them
// (wideresnet.py), with its state_dict names (block1.layer.0.convShortcut.weight, fc.weight).
//
//   conv1 3x3 3->16 (no bias)                                           32x32
//   block1: n pre-activation blocks, 16k channels                      32x32
//   block2: n blocks, 32k channels, the first with stride 2            16x16
//   block3: n blocks, 64k channels, the first with stride 2             8x8
//   bn1, relu, avg_pool2d(8), fc 64k->num_classes
// with n = (depth - 4) / 6. WRN-28-10 has 36,479,194 parameters with 10 classes.
//
// Why xternalz and not meliketoy/wide-resnet.pytorch (networks/wide_resnet.py, the "wide_basic"
// block): xternalz reproduces the authors' code (szagoruyko/wide-residual-networks) — stride on
// the first 3x3 convolution, no convolution biases — and so the parameter count of the paper.
// meliketoy puts the stride on the second convolution (the first then runs at the full
// resolution: more multiply-accumulates), gives every convolution a bias (36,489,290
// parameters for WRN-28-10), and names things differently (layer1.0.shortcut.0, linear).
// The two checkpoints are not interchangeable.
//
//   auto net = edl::wide_resnet(28, 10, 10);   // = edl::make_model("wrn_28_10", 10)
//
// Initialization as xternalz: every conv weight ~ N(0, 2/(KH*KW*OC)) (Kaiming, fan_out),
// BatchNorm 1 and 0, fc bias 0 (fc weight keeps PyTorch's default).
//
// Tested by tests/test_models.cpp:  build/tests/edl_tests '[models]'
#pragma once

#include <memory>

#include "engine/nn.h"

namespace edl {

// xternalz's BasicBlock(in_planes, out_planes, stride, dropRate), pre-activation:
//   same channels:      y = x + conv2(relu(bn2(dropout(conv1(relu(bn1(x)))))))
//   channels change:    a = relu(bn1(x));  y = convShortcut(a) + conv2(relu(bn2(dropout(conv1(a)))))
// conv1 3x3 with `stride`, conv2 3x3, convShortcut 1x1 with `stride`, no biases. When the
// channels change, the shortcut taps the pre-activated a (as in the authors' code). Dropout
// (between the convolutions, in training only) is F.dropout in xternalz: no module, no name.
// xternalz's relu1/relu2 modules hold nothing and are plain relu() calls here.
class WideBasicBlock : public Module {
 public:
  WideBasicBlock(int64_t in_planes, int64_t out_planes, int64_t stride, double drop_rate = 0.0);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<BatchNorm2d> bn1, bn2;
  std::shared_ptr<Conv2d> conv1, conv2;
  std::shared_ptr<Conv2d> conv_shortcut;  // "convShortcut"; null when in_planes == out_planes
  double drop_rate;

 private:
  Rng rng_;  // the dropout masks' seeds, seeded from global_rng() as nn.h's Dropout does
};

// xternalz's NetworkBlock: a Sequential named `layer` (hence block1.layer.0...).
class WideGroup : public Module {
 public:
  WideGroup(int64_t n, int64_t in_planes, int64_t out_planes, int64_t stride, double drop_rate);
  Tensor forward(const Tensor& x) override { return (*layer)(x); }
  std::shared_ptr<Sequential> layer;
};

// xternalz's WideResNet(depth, num_classes, widen_factor, dropRate).
class WideResNet : public Module {
 public:
  WideResNet(int64_t depth, int64_t widen_factor, int64_t num_classes, double drop_rate = 0.0);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Conv2d> conv1;
  std::shared_ptr<WideGroup> block1, block2, block3;
  std::shared_ptr<BatchNorm2d> bn1;
  std::shared_ptr<Linear> fc;
};

// wide_resnet(28, 10, k) is WRN-28-10; wide_resnet(16, 4, k) is WRN-16-4.
std::shared_ptr<WideResNet> wide_resnet(int64_t depth, int64_t widen_factor, int64_t num_classes,
                                        double drop_rate = 0.0);

}  // namespace edl
