// summary.h — a table of a network's layers: output shapes, parameters and multiply-accumulates.
//
//   auto net = edl::make_model("resnet20", 10);
//   edl::ModelSummary s = edl::summarize(*net, {3, 32, 32});
//   std::cout << edl::format_summary(s);
//
//   layer               type              output          params         MACs
//   conv1               Conv2d            (1,16,32,32)       432      442,368
//   bn1                 BatchNorm2d       (1,16,32,32)        32            0
//   layer1.0.conv1      Conv2d            (1,16,32,32)     2,304    2,359,296
//   ...
//
// One row per leaf module (a module without children), in registration order — PyTorch's
// named_modules() order, which is the order of the state_dict. Empty Sequentials (identity
// shortcuts) compute nothing and get no row.
//
// Multiply-accumulates per image: a convolution does OC*OH*OW * (C/groups)*KH*KW of them,
// that is weight.numel() per output pixel; a linear layer in*out; every other layer is counted
// as 0 (BatchNorm, activations, pooling and additions are elementwise: cheap next to the
// products, and left out by the usual convention). One MAC is two FLOPs.
//
// How the shapes are found, with no hook in the engine: summarize() runs one forward pass on
// a zero image (batch 1, evaluation mode, the model's train/eval state restored afterwards)
// and reads the autograd graph it leaves. Every op that touched a parameter recorded a node
// with its inputs and output, so a layer with parameters (Conv2d, BatchNorm2d, Linear) is
// found as the node that took its weight. A layer without parameters that sits in a
// Sequential (the ReLU and MaxPool2d of VGG's features) is run again on its predecessor's
// output. A parameter-free layer called inside a block's own forward (the option-A shortcut
// of resnet20) cannot be observed this way: its output shape is left empty and printed "-".
//
// Tested by tests/test_models.cpp:  build/tests/edl_tests '[models]'
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/nn.h"

namespace edl {

struct LayerSummary {
  std::string name;     // dotted module path, "layer1.0.conv1"
  std::string type;     // C++ class without the namespace, "Conv2d"
  Shape output;         // for batch 1, e.g. (1,16,32,32); empty when it could not be observed
  int64_t params = 0;   // elements of the layer's own parameters
  int64_t macs = 0;     // multiply-accumulates per image
};

struct ModelSummary {
  Shape input, output;               // (1,C,H,W) and the network's output for it
  std::vector<LayerSummary> layers;  // the leaf modules in registration order
  int64_t total_params = 0;          // every parameter of the model (== module.num_parameters())
  int64_t total_macs = 0;            // the sum over the layers
};

// `input` is the shape of one image, (C,H,W) such as {3, 32, 32}; (1,C,H,W) is accepted too.
ModelSummary summarize(Module& model, const Shape& input);

// The table above, with a total line ("269,722 parameters (1.08 MB as f32), 40.55 M MACs per image").
std::string format_summary(const ModelSummary& summary);

}  // namespace edl
