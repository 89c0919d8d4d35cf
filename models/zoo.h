// zoo.h — the model zoo: CIFAR networks by name, with the state_dict names of the PyTorch code
// each one follows, so weights move between edl and PyTorch in both directions.
//
//   auto net = edl::make_model("resnet20", 10);   // unknown names list the known ones
//
// name             follows (repository, file)                         params  MACs/image
//                                                               (10 classes)     (32x32)
// small_cnn        edl (below)                                        24,346      2.80 M
// resnet20         akamaster/pytorch_resnet_cifar10, resnet.py       269,722     40.55 M
// resnet32                                                           464,154     68.86 M
// resnet44                                                           658,586     97.17 M
// resnet56                                                           853,018    125.49 M
// resnet110                                                        1,727,962    252.89 M
// resnet18         kuangliu/pytorch-cifar, models/resnet.py       11,173,962    555.42 M
// preact_resnet18  kuangliu, models/preact_resnet.py              11,171,146    555.42 M
// vgg11            kuangliu, models/vgg.py                         9,231,114    152.77 M
// vgg13                                                            9,416,010    228.27 M
// vgg16                                                           14,728,266    313.20 M
// vgg19                                                           20,040,522    398.14 M
// mobilenetv2      kuangliu, models/mobilenetv2.py                 2,296,922     91.15 M
// densenet_cifar   kuangliu, models/densenet.py                    1,000,618    125.34 M
// wrn_16_4         xternalz/WideResNet-pytorch, wideresnet.py      2,748,890    392.61 M
// wrn_28_10                                                       36,479,194      5.24 G
// fast_cifar       edl, after KellerJordan/airbench (fast_cifar.h)  1,972,792    118.15 M
//
// The parameter counts and the state_dict names are PyTorch's for the code cited, and the
// logits agree for the same weights (tests/test_models.cpp); MACs are summary.h's count,
// equal to what forward hooks on Conv2d and Linear count in PyTorch.
//
// The families, their constructors (with depth, width and the like as parameters) and what
// each one changes from the paper are in resnet_cifar.h, resnet.h, vgg.h, mobilenetv2.h,
// densenet.h, wide_resnet.h and fast_cifar.h; summary.h prints a layer-by-layer table of any of them.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/nn.h"
#include "models/densenet.h"
#include "models/fast_cifar.h"
#include "models/mobilenetv2.h"
#include "models/resnet.h"
#include "models/resnet_cifar.h"
#include "models/vgg.h"
#include "models/wide_resnet.h"

namespace edl {

// Builds the network `name` (one of model_names()) for `num_classes` classes; an unknown name
// throws edl::Error listing the known ones.
std::shared_ptr<Module> make_model(const std::string& name, int64_t num_classes);
std::vector<std::string> model_names();

// small_cnn: three conv-bn-relu stages (16, 32, 64 channels; 2x2 max-pool after the first two),
// global average pooling and a linear classifier. 5.6 MFLOP per 32x32 image forward, ~24k
// parameters: big enough to learn CIFAR-10 well above chance in a few hundred steps, small
// enough that the reference kernels train it in minutes.
std::shared_ptr<Sequential> small_cnn(int64_t num_classes);

}  // namespace edl
