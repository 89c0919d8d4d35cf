// evaluation.cpp — test-set accuracy in detail (see evaluation.h).
#include "engine/evaluation.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <numeric>

#include "data/augment.h"
#include "data/loader.h"
#include "engine/autograd.h"

namespace edl {

// images (N,C,H,W) mirrored left-right: out[n][c][h][w] = in[n][c][h][W-1-w].
static Tensor flip_width(const Tensor& images) {
  Tensor out = Tensor::empty(images.shape(), images.dtype());
  const int64_t W = images.dim(3), rows = images.numel() / W;
  const float* src = images.data<float>();
  float* dst = out.data<float>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t w = 0; w < W; ++w) dst[r * W + w] = src[r * W + W - 1 - w];
  return out;
}

Tensor translate_reflect(const Tensor& images, int64_t dy, int64_t dx) {
  EDL_CHECK(images.dtype() == DType::f32 && images.ndim() == 4, "translate_reflect: expected f32 (N,C,H,W), got {} {}",
            dtype_name(images.dtype()), shape_str(images.shape()));
  const int64_t H = images.dim(2), W = images.dim(3), planes = images.dim(0) * images.dim(1);
  EDL_CHECK(std::abs(dy) < H && std::abs(dx) < W, "translate_reflect: a shift of ({}, {}) does not fit {}x{} images", dy,
            dx, H, W);
  Tensor out = Tensor::empty(images.shape(), images.dtype());
  const float* src = images.data<float>();
  float* dst = out.data<float>();
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t w = 0; w < W; ++w) dst[(p * H + h) * W + w] = src[(p * H + reflect_index(h + dy, H)) * W + reflect_index(w + dx, W)];
  return out;
}

const char* tta_name(Tta tta) {
  switch (tta) {
    case Tta::none: return "none";
    case Tta::flip: return "flip";
    case Tta::translate: return "translate";
  }
  return "?";
}

Tta tta_from_name(const std::string& name) {
  for (Tta t : {Tta::none, Tta::flip, Tta::translate})
    if (name == tta_name(t)) return t;
  throw Error(fmt::format("unknown test-time augmentation '{}' (known: none, flip, translate)", name));
}

Evaluation evaluate_model(Module& model, const CifarSet& test, const std::array<float, 3>& mean,
                          const std::array<float, 3>& stddev, int64_t limit, bool keep_logits, Tta tta) {
  const int64_t n = limit > 0 ? std::min(limit, test.images.dim(0)) : test.images.dim(0);
  const int64_t K = test.num_classes;
  std::vector<int64_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  BatchLoader loader(test, idx, 500, AugmentConfig{}, mean, stddev, 0, /*shuffle=*/false, /*drop_last=*/false);

  Evaluation e;
  e.images = n;
  e.num_classes = K;
  e.confusion.assign(static_cast<size_t>(K * K), 0);
  if (keep_logits) e.logits = Tensor::empty({n, K});
  model.eval();
  NoGradGuard no_grad;
  int64_t top1 = 0, top5 = 0, row = 0;
  for (int64_t b = 0; b < loader.batches_per_epoch(); ++b) {
    Batch batch = loader.get(0, b);
    auto flip_pair = [&](const Tensor& x) { return mul(add(model(x), model(flip_width(x))), Tensor::scalar(0.5)); };
    Tensor logits = tta == Tta::none ? model(batch.images) : flip_pair(batch.images);
    if (tta == Tta::translate) {
      const Tensor moved = add(flip_pair(translate_reflect(batch.images, -1, -1)), flip_pair(translate_reflect(batch.images, 1, 1)));
      logits = add(mul(logits, Tensor::scalar(0.5)), mul(moved, Tensor::scalar(0.25)));
    }
    EDL_CHECK(logits.ndim() == 2 && logits.dim(1) == K, "evaluate: the model gives logits of shape {}, the data set has {} classes",
              shape_str(logits.shape()), K);
    const float* z = logits.data<float>();
    for (int64_t i = 0; i < logits.dim(0); ++i, ++row) {
      const float* zi = z + i * K;
      const int32_t label = batch.labels.data<int32_t>()[i];
      const int64_t pred = std::max_element(zi, zi + K) - zi;
      // The label is in the top 5 when fewer than 5 classes score higher than it.
      int64_t higher = 0;
      for (int64_t k = 0; k < K; ++k) higher += zi[k] > zi[label];
      top1 += pred == label;
      top5 += higher < 5;
      ++e.confusion[static_cast<size_t>(label * K + pred)];
    }
    if (keep_logits)
      std::memcpy(e.logits.data<float>() + (row - logits.dim(0)) * K, z, static_cast<size_t>(logits.numel()) * sizeof(float));
  }
  e.top1 = static_cast<double>(top1) / static_cast<double>(n);
  e.top5 = static_cast<double>(top5) / static_cast<double>(n);
  for (int64_t k = 0; k < K; ++k) {
    int64_t total = 0;
    for (int64_t j = 0; j < K; ++j) total += e.confusion[static_cast<size_t>(k * K + j)];
    e.per_class.push_back(total ? static_cast<double>(e.confusion[static_cast<size_t>(k * K + k)]) / static_cast<double>(total) : 0);
  }
  return e;
}

std::string format_evaluation(const Evaluation& e, const std::vector<std::string>& class_names) {
  auto name = [&](int64_t k) {
    return k < static_cast<int64_t>(class_names.size()) ? class_names[static_cast<size_t>(k)] : std::to_string(k);
  };
  std::string s = fmt::format("{} test images: top-1 {:.2f}%, top-5 {:.2f}%\n\nper class:\n", e.images, 100 * e.top1,
                              100 * e.top5);
  for (int64_t k = 0; k < e.num_classes; ++k) s += fmt::format("  {:<12} {:6.2f}%\n", name(k), 100 * e.per_class[static_cast<size_t>(k)]);
  if (e.num_classes <= 20) {
    s += "\nconfusion matrix (rows: true class, columns: predicted):\n" + std::string(14, ' ');
    for (int64_t k = 0; k < e.num_classes; ++k) s += fmt::format("{:>6.5}", name(k));
    s += "\n";
    for (int64_t k = 0; k < e.num_classes; ++k) {
      s += fmt::format("  {:<12}", name(k));
      for (int64_t j = 0; j < e.num_classes; ++j) s += fmt::format("{:>6}", e.confusion[static_cast<size_t>(k * e.num_classes + j)]);
      s += "\n";
    }
  }
  return s;
}

}  // namespace edl
