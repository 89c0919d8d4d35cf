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

// Runs `model` in evaluation mode without autograd on the first `limit` images of `test`
// (0 = all), normalized with mean and stddev, in batches of 500. The model is left in
// evaluation mode. With flip_tta (test-time augmentation), each image's logits are the mean of
// the model's logits for the image and for its mirror image (left-right): twice the work, and
// usually a few tenths of a percent more accuracy for a network trained with random flips.
Evaluation evaluate_model(Module& model, const CifarSet& test, const std::array<float, 3>& mean,
                          const std::array<float, 3>& stddev, int64_t limit = 0, bool keep_logits = false,
                          bool flip_tta = false);
// A report for people: top-1, top-5, per-class accuracy and the confusion matrix.
std::string format_evaluation(const Evaluation& e, const std::vector<std::string>& class_names);

}  // namespace edl
