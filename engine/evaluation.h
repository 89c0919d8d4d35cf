// evaluation.h — how well a model classifies a test set: top-1, top-5, per class, confusion.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "data/cifar.h"
#include "engine/nn.h"

namespace edl {

struct Evaluation {
  int64_t images = 0, num_classes = 0;
  double top1 = 0, top5 = 0;
  std::vector<double> per_class;   // accuracy of each true class
  std::vector<int64_t> confusion;  // (K,K) row-major: row = true class, column = prediction
  Tensor logits;                   // f32 (images, K) when asked for, else undefined
};

// Test-time augmentation: the logits of an image are averaged over several views of it.
//   none       the image alone
//   flip       the image and its mirror image (left-right), 1/2 each: twice the work, and
//              usually a few tenths of a percent more accuracy for a network trained with flips
//   translate  airbench's level 2: 1/2 on the flip pair of the image, 1/4 on the flip pair of
//              the image moved one pixel down and right, 1/4 up and left (borders reflected, as
//              PyTorch's F.pad(mode='reflect')): six times the work
enum class Tta { none, flip, translate };
const char* tta_name(Tta tta);
Tta tta_from_name(const std::string& name);  // "none", "flip", "translate"; else an error listing them

// Runs `model` in evaluation mode without autograd on the first `limit` images of `test`
// (0 = all), normalized with mean and stddev, in batches of 500, with test-time augmentation
// `tta`. The model is left in evaluation mode.
Evaluation evaluate_model(Module& model, const CifarSet& test, const std::array<float, 3>& mean,
                          const std::array<float, 3>& stddev, int64_t limit = 0, bool keep_logits = false,
                          Tta tta = Tta::none);

// images (N,C,H,W) f32 moved by (dy, dx) pixels with reflected borders: out[h][w] =
// in[r(h + dy)][r(w + dx)], r reflecting about the edge pixels (-1 -> 1, H -> H-2). |dy|, |dx| < H, W.
Tensor translate_reflect(const Tensor& images, int64_t dy, int64_t dx);
// A report for people: top-1, top-5, per-class accuracy and the confusion matrix.
std::string format_evaluation(const Evaluation& e, const std::vector<std::string>& class_names);

}  // namespace edl
