// augment.h — the data augmentations of CIFAR training, on whole batches, seeded.
//
//   random_crop_flip  pad 4 with black, crop 32×32 at a random offset, mirror with p = 0.5
//                     (the standard CIFAR recipe, He et al. 2016)     — on u8 images;
//                     or, as airbench's "translate", pad 2 with the reflected image
//   cutout            zero a random 16×16 square (DeVries & Taylor 2017, arXiv:1708.04552),
//                     on normalized images, as the original code does
//   altflip           airbench's alternating flip (Jordan 2024, arXiv:2404.00498, section 3.6):
//                     each image mirrored by a seeded coin in even epochs and the other way in
//                     odd ones, so that any two epochs in a row show it both ways (random flips
//                     repeat an orientation half the time)
//   mixup             x = λ x + (1-λ) x[perm], target = λ y + (1-λ) y[perm], λ ~ Beta(α, α)
//                     (Zhang et al. 2018, arXiv:1710.09412)
//   cutmix            paste a box of x[perm] covering 1-λ of the image; target weights are the
//                     exact pasted area (Yun et al. 2019, arXiv:1905.04899)
// mixup and cutmix produce soft targets (N,K); cross_entropy with soft targets is linear in the
// target, so its loss is exactly λ CE(y) + (1-λ) CE(y[perm]), the interpolated loss of the papers.
//
// Every random function takes the generator it draws from (alternating_flip is a function of
// the seed itself), so a batch is a pure function of its seed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/random.h"
#include "engine/tensor.h"

namespace edl {

// Index i of a row of n pixels reflected about the edge pixels, as PyTorch's F.pad mode
// 'reflect': -1 -> 1, -2 -> 2, n -> n-2 (for -n < i < 2n-1).
inline int64_t reflect_index(int64_t i, int64_t n) { return i < 0 ? -i : (i >= n ? 2 * n - 2 - i : i); }

// u8 (N,C,H,W) -> u8 (N,C,H,W): each image shifted by up to `pad` pixels and mirrored
// left-right with probability 1/2 when `flip`. The pixels shifted in are 0, or with `reflect`
// the image reflected about its edge pixels (PyTorch's F.pad mode 'reflect'; pad < H, W).
Tensor random_crop_flip(const Tensor& images, int64_t pad, bool flip, Rng& rng, bool reflect = false);

// Whether the alternating flip mirrors training image `index` in `epoch` (counted from 0): a
// coin seeded by (seed, index) in even epochs, its opposite in odd ones.
bool alternating_flip(uint64_t seed, int64_t index, int64_t epoch);

// In place on u8 (N,C,H,W): mirrors image n left-right where mirror[n] is true.
void mirror_images_(Tensor& images, const std::vector<bool>& mirror);

// In place on f32 (N,C,H,W): one size×size square per image, centred anywhere in the image
// (so it may be partly outside), set to 0.
void cutout_(Tensor& images, int64_t size, Rng& rng);

// One-hot targets (N,K) from s32 labels (N).
Tensor one_hot(const Tensor& labels, int64_t num_classes);

// A draw from Beta(a, a), via two Gamma(a) draws (Marsaglia & Tsang 2000).
double sample_beta(double a, Rng& rng);

// In place on f32 images (N,C,H,W) and f32 soft targets (N,K); returns λ.
double mixup_(Tensor& images, Tensor& targets, double alpha, Rng& rng);
double cutmix_(Tensor& images, Tensor& targets, double alpha, Rng& rng);

// Which augmentations a run uses, parsed from "crop,flip,cutout,mixup,cutmix" (any subset;
// "none" or "" for none); "translate" is airbench's crop: padding 2, reflected (not with crop);
// "altflip" is the alternating flip (not with flip).
// An unknown name is an error listing the known ones.
struct AugmentConfig {
  bool crop = false, flip = false, cutout = false, mixup = false, cutmix = false;
  bool alt_flip = false;      // "altflip"; not with flip
  bool crop_reflect = false;  // set by "translate"
  int64_t crop_padding = 4, cutout_size = 16;
  double mix_alpha = 1.0;  // Beta(α, α) for mixup and cutmix
  static AugmentConfig parse(const std::string& list);
  std::string str() const;
};

}  // namespace edl
