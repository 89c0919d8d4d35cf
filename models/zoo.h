// zoo.h — the model zoo: networks by name, with PyTorch state_dict parameter names.
//
//   auto net = edl::make_model("small_cnn", 10);   // unknown names list the known ones
//
// For now the zoo holds small_cnn, the network of the quick start; the CIFAR families
// (ResNet-20/56, ResNet-18, VGG, MobileNetV2, ...) join it with the training issue.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/nn.h"

namespace edl {

std::shared_ptr<Module> make_model(const std::string& name, int64_t num_classes);
std::vector<std::string> model_names();

// small_cnn: three conv-bn-relu stages (16, 32, 64 channels; 2x2 max-pool after the first two),
// global average pooling and a linear classifier. 5.6 MFLOP per 32x32 image forward, ~24k
// parameters: big enough to learn CIFAR-10 well above chance in a few hundred steps, small
// enough that the reference kernels train it in minutes.
std::shared_ptr<Sequential> small_cnn(int64_t num_classes);

}  // namespace edl
