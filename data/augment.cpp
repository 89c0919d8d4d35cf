// augment.cpp — crop, flip, cutout, mixup and cutmix on batches (see augment.h).
#include "data/augment.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <sstream>
#include <vector>

namespace edl {

Tensor random_crop_flip(const Tensor& images, int64_t pad, bool flip, Rng& rng, bool reflect) {
  EDL_CHECK(images.dtype() == DType::u8 && images.ndim() == 4, "random_crop_flip: expected u8 (N,C,H,W) images, got {} {}",
            dtype_name(images.dtype()), shape_str(images.shape()));
  const int64_t N = images.dim(0), C = images.dim(1), H = images.dim(2), W = images.dim(3);
  EDL_CHECK(!reflect || (pad < H && pad < W), "random_crop_flip: reflected padding {} needs images larger than it, got {}x{}",
            pad, H, W);
  Tensor out = Tensor::zeros(images.shape(), DType::u8);
  const uint8_t* x = images.data<uint8_t>();
  uint8_t* y = out.data<uint8_t>();
  // A source coordinate outside [0, n): reflected (reflect_index), or -1 for "zero".
  auto source = [reflect](int64_t i, int64_t n) -> int64_t {
    if (i >= 0 && i < n) return i;
    return reflect ? reflect_index(i, n) : -1;
  };
  for (int64_t n = 0; n < N; ++n) {
    // The crop of the padded image starting at (dy, dx) reads source pixel (h + dy - pad, w + dx - pad).
    const int64_t dy = rng.integer(2 * pad + 1) - pad, dx = rng.integer(2 * pad + 1) - pad;
    const bool mirror = flip && rng.uniform() < 0.5;
    for (int64_t c = 0; c < C; ++c)
      for (int64_t h = 0; h < H; ++h) {
        const int64_t sh = source(h + dy, H);
        if (sh < 0) continue;  // padding rows stay 0
        const uint8_t* src = x + ((n * C + c) * H + sh) * W;
        uint8_t* dst = y + ((n * C + c) * H + h) * W;
        for (int64_t w = 0; w < W; ++w) {
          const int64_t sw = source((mirror ? W - 1 - w : w) + dx, W);
          if (sw >= 0) dst[w] = src[sw];
        }
      }
  }
  return out;
}

bool alternating_flip(uint64_t seed, int64_t index, int64_t epoch) {
  const bool coin = (splitmix64(splitmix64(seed ^ 0xf11b) ^ static_cast<uint64_t>(index)) >> 63) != 0;
  return coin != (epoch % 2 == 1);
}

void mirror_images_(Tensor& images, const std::vector<bool>& mirror) {
  EDL_CHECK(images.dtype() == DType::u8 && images.ndim() == 4, "mirror_images_: expected u8 (N,C,H,W) images, got {} {}",
            dtype_name(images.dtype()), shape_str(images.shape()));
  EDL_CHECK(static_cast<int64_t>(mirror.size()) == images.dim(0), "mirror_images_: {} flags for {} images", mirror.size(),
            images.dim(0));
  const int64_t rows = images.dim(1) * images.dim(2), W = images.dim(3);
  for (int64_t n = 0; n < images.dim(0); ++n) {
    if (!mirror[static_cast<size_t>(n)]) continue;
    uint8_t* x = images.data<uint8_t>() + n * rows * W;
    for (int64_t r = 0; r < rows; ++r) std::reverse(x + r * W, x + (r + 1) * W);
  }
}

void cutout_(Tensor& images, int64_t size, Rng& rng) {
  EDL_CHECK(images.dtype() == DType::f32 && images.ndim() == 4, "cutout: expected f32 (N,C,H,W) images, got {} {}",
            dtype_name(images.dtype()), shape_str(images.shape()));
  const int64_t N = images.dim(0), C = images.dim(1), H = images.dim(2), W = images.dim(3);
  float* x = images.data<float>();
  for (int64_t n = 0; n < N; ++n) {
    const int64_t cy = rng.integer(H), cx = rng.integer(W);
    const int64_t h0 = std::max<int64_t>(0, cy - size / 2), h1 = std::min(H, cy + size / 2);
    const int64_t w0 = std::max<int64_t>(0, cx - size / 2), w1 = std::min(W, cx + size / 2);
    for (int64_t c = 0; c < C; ++c)
      for (int64_t h = h0; h < h1; ++h)
        for (int64_t w = w0; w < w1; ++w) x[((n * C + c) * H + h) * W + w] = 0.0f;
  }
}

Tensor one_hot(const Tensor& labels, int64_t num_classes) {
  EDL_CHECK(labels.dtype() == DType::s32 && labels.ndim() == 1, "one_hot: expected s32 labels (N), got {} {}",
            dtype_name(labels.dtype()), shape_str(labels.shape()));
  Tensor t = Tensor::zeros({labels.dim(0), num_classes});
  for (int64_t n = 0; n < labels.dim(0); ++n) {
    const int32_t l = labels.data<int32_t>()[n];
    EDL_CHECK(l >= 0 && l < num_classes, "one_hot: label {} at row {} is out of range for {} classes", l, n, num_classes);
    t.data<float>()[n * num_classes + l] = 1.0f;
  }
  return t;
}

// Gamma(a, 1) by Marsaglia & Tsang (2000); for a < 1 via Gamma(a + 1) * U^(1/a).
static double sample_gamma(double a, Rng& rng) {
  if (a < 1) return sample_gamma(a + 1, rng) * std::pow(1.0 - rng.uniform(), 1.0 / a);
  const double d = a - 1.0 / 3, c = 1.0 / std::sqrt(9 * d);
  for (;;) {
    double x, v;
    do {
      x = rng.normal();
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const double u = 1.0 - rng.uniform();
    if (std::log(u) < 0.5 * x * x + d - d * v + d * std::log(v)) return d * v;
  }
}

double sample_beta(double a, Rng& rng) {
  EDL_CHECK(a > 0, "sample_beta: alpha must be positive, got {}", a);
  const double x = sample_gamma(a, rng), y = sample_gamma(a, rng);
  return x / (x + y);
}

static std::vector<int64_t> permutation(int64_t n, Rng& rng) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), 0);
  for (int64_t i = n - 1; i > 0; --i) std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(rng.integer(i + 1))]);
  return p;
}

static void check_mix_inputs(const char* what, const Tensor& images, const Tensor& targets) {
  EDL_CHECK(images.dtype() == DType::f32 && images.ndim() == 4 && targets.dtype() == DType::f32 &&
                targets.ndim() == 2 && targets.dim(0) == images.dim(0),
            "{}: expected f32 images (N,C,H,W) and f32 soft targets (N,K), got {} and {}", what,
            shape_str(images.shape()), shape_str(targets.shape()));
}

// rows[i] = w * rows[i] + (1 - w) * rows[perm[i]], on a copy so that partners read originals.
static void mix_rows(Tensor& t, const std::vector<int64_t>& perm, double w) {
  const int64_t N = t.dim(0), row = t.numel() / N;
  Tensor src = t.clone();
  const float* s = src.data<float>();
  float* d = t.data<float>();
  const float a = static_cast<float>(w), b = static_cast<float>(1 - w);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < row; ++i) d[n * row + i] = a * s[n * row + i] + b * s[perm[static_cast<size_t>(n)] * row + i];
}

double mixup_(Tensor& images, Tensor& targets, double alpha, Rng& rng) {
  check_mix_inputs("mixup", images, targets);
  const double lambda = sample_beta(alpha, rng);
  const std::vector<int64_t> perm = permutation(images.dim(0), rng);
  mix_rows(images, perm, lambda);
  mix_rows(targets, perm, lambda);
  return lambda;
}

double cutmix_(Tensor& images, Tensor& targets, double alpha, Rng& rng) {
  check_mix_inputs("cutmix", images, targets);
  const int64_t N = images.dim(0), C = images.dim(1), H = images.dim(2), W = images.dim(3);
  double lambda = sample_beta(alpha, rng);
  const std::vector<int64_t> perm = permutation(N, rng);
  // A box of (1-λ) of the area, centred uniformly, clipped to the image (Yun et al., Alg. 1).
  const double r = std::sqrt(1 - lambda);
  const int64_t bh = static_cast<int64_t>(H * r), bw = static_cast<int64_t>(W * r);
  const int64_t cy = rng.integer(H), cx = rng.integer(W);
  const int64_t h0 = std::clamp<int64_t>(cy - bh / 2, 0, H), h1 = std::clamp<int64_t>(cy + bh / 2, 0, H);
  const int64_t w0 = std::clamp<int64_t>(cx - bw / 2, 0, W), w1 = std::clamp<int64_t>(cx + bw / 2, 0, W);
  Tensor src = images.clone();
  const float* s = src.data<float>();
  float* d = images.data<float>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t h = h0; h < h1; ++h)
        for (int64_t w = w0; w < w1; ++w)
          d[((n * C + c) * H + h) * W + w] = s[((perm[static_cast<size_t>(n)] * C + c) * H + h) * W + w];
  // The clipped box may be smaller than asked: weight the targets by the area actually pasted.
  lambda = 1.0 - static_cast<double>((h1 - h0) * (w1 - w0)) / static_cast<double>(H * W);
  mix_rows(targets, perm, lambda);
  return lambda;
}

AugmentConfig AugmentConfig::parse(const std::string& list) {
  AugmentConfig a;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty() || item == "none") continue;
    if (item == "crop") a.crop = true;
    else if (item == "translate") a.crop_reflect = true;
    else if (item == "flip") a.flip = true;
    else if (item == "altflip") a.alt_flip = true;
    else if (item == "cutout") a.cutout = true;
    else if (item == "mixup") a.mixup = true;
    else if (item == "cutmix") a.cutmix = true;
    else
      throw Error(fmt::format("unknown augmentation '{}' in '{}' (known: crop, translate, flip, altflip, cutout, mixup, cutmix, none)",
                              item, list));
  }
  EDL_CHECK(!(a.crop && a.crop_reflect), "augmentations crop and translate are exclusive: pick one");
  if (a.crop_reflect) a.crop = true, a.crop_padding = 2;
  EDL_CHECK(!(a.mixup && a.cutmix), "augmentations mixup and cutmix are exclusive: pick one");
  EDL_CHECK(!(a.flip && a.alt_flip), "augmentations flip and altflip are exclusive: pick one");
  return a;
}

std::string AugmentConfig::str() const {
  std::vector<std::string> v;
  if (crop) v.push_back(crop_reflect ? "translate" : "crop");
  if (flip) v.push_back("flip");
  if (alt_flip) v.push_back("altflip");
  if (cutout) v.push_back("cutout");
  if (mixup) v.push_back("mixup");
  if (cutmix) v.push_back("cutmix");
  return v.empty() ? "none" : join(v, ",");
}

}  // namespace edl
