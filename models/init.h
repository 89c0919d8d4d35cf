// init.h — what the zoo's constructors share: a walk over every module of a network, and the
// Kaiming-normal initializer some of the reference codes apply after building the layers.
//
// Most models of the zoo keep the layers' own initialization (PyTorch's default, see nn.h),
// because the code they follow does. Two re-initialize their weights, and say so:
//   akamaster/pytorch_resnet_cifar10 (resnet.py, _weights_init): every Conv2d and Linear weight
//       ~ N(0, 2/fan_in)   (torch.nn.init.kaiming_normal_ with its defaults)
//   xternalz/WideResNet-pytorch (wideresnet.py): every Conv2d weight ~ N(0, 2/fan_out),
//       with fan_out = OC*KH*KW (their n = kernel_size[0]*kernel_size[1]*out_channels)
// He et al. 2015, "Delving Deep into Rectifiers" (https://arxiv.org/abs/1502.01852), derive
// the 2/fan: a ReLU halves the second moment, so a variance of 2/fan keeps it constant.
#pragma once

#include <functional>
#include <string>

#include "engine/nn.h"

namespace edl {

// Calls fn(name, module) on `root` (name "") and every descendant, parents before children, in
// registration order, with dotted names ("layer1.0.conv1"): PyTorch's named_modules() order.
void for_each_module(Module& root, const std::function<void(const std::string& name, Module& m)>& fn);

// Which size the Kaiming variance divides by. For a weight (OC, C/groups, KH, KW) or (out, in):
// fan_in = (C/groups)*KH*KW or in; fan_out = OC*KH*KW or out (PyTorch's _calculate_fan_in_and_fan_out).
enum class FanMode { fan_in, fan_out };

// weight ~ N(0, 2/fan), drawing from global_rng() (torch.nn.init.kaiming_normal_(w, mode=...),
// nonlinearity 'leaky_relu' with a = 0, i.e. gain sqrt(2)).
void kaiming_normal_(Tensor& weight, FanMode mode = FanMode::fan_in);

}  // namespace edl
