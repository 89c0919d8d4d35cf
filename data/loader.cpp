// loader.cpp — background batch preparation (see loader.h).
#include "data/loader.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <numeric>

namespace edl {

BatchLoader::BatchLoader(const CifarSet& set, std::vector<int64_t> pool, int64_t batch_size, AugmentConfig augment,
                         std::array<float, 3> mean, std::array<float, 3> stddev, uint64_t seed, bool shuffle,
                         bool drop_last)
    : set_(set), pool_(std::move(pool)), batch_size_(batch_size), augment_(augment), mean_(mean), stddev_(stddev),
      seed_(seed), shuffle_(shuffle), drop_last_(drop_last) {
  EDL_CHECK(batch_size >= 1, "batch size must be at least 1, got {}", batch_size);
  EDL_CHECK(!pool_.empty(), "no images to draw batches from");
  EDL_CHECK(!drop_last || batch_size <= static_cast<int64_t>(pool_.size()),
            "batch size {} exceeds the {} training images", batch_size, pool_.size());
}

BatchLoader::~BatchLoader() {
  if (pending_.valid()) pending_.wait();
}

int64_t BatchLoader::batches_per_epoch() const {
  const int64_t n = static_cast<int64_t>(pool_.size());
  return drop_last_ ? n / batch_size_ : (n + batch_size_ - 1) / batch_size_;
}

Batch BatchLoader::make(int64_t epoch, int64_t index) const {
  // The epoch's order: a Fisher-Yates shuffle seeded by (seed, epoch).
  std::vector<int64_t> order = pool_;
  if (shuffle_) {
    Rng rng(splitmix64(seed_) ^ splitmix64(static_cast<uint64_t>(epoch) + 0x1000));
    for (size_t i = order.size(); i > 1; --i)
      std::swap(order[i - 1], order[static_cast<size_t>(rng.integer(static_cast<int64_t>(i)))]);
  }
  const int64_t begin = index * batch_size_;
  const int64_t end = std::min<int64_t>(begin + batch_size_, static_cast<int64_t>(order.size()));
  EDL_CHECK(begin < end, "batch {} of epoch {} is past the end ({} batches per epoch)", index, epoch, batches_per_epoch());

  const int64_t n = end - begin, image_bytes = set_.images.numel() / set_.images.dim(0);
  Tensor u8 = Tensor::empty({n, set_.images.dim(1), set_.images.dim(2), set_.images.dim(3)}, DType::u8);
  Batch b;
  b.labels = Tensor::empty({n}, DType::s32);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = order[static_cast<size_t>(begin + i)];
    std::memcpy(u8.data<uint8_t>() + i * image_bytes, set_.images.data<uint8_t>() + k * image_bytes,
                static_cast<size_t>(image_bytes));
    b.labels.data<int32_t>()[i] = set_.labels.data<int32_t>()[k];
  }

  Rng rng(splitmix64(seed_ ^ splitmix64(static_cast<uint64_t>(epoch))) ^ splitmix64(static_cast<uint64_t>(index) + 7));
  if (augment_.crop || augment_.flip) u8 = random_crop_flip(u8, augment_.crop ? augment_.crop_padding : 0, augment_.flip, rng, augment_.crop_reflect);
  if (augment_.alt_flip) {  // by the image's index in the set, not its place in the batch
    std::vector<bool> mirror(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
      mirror[static_cast<size_t>(i)] = alternating_flip(seed_, order[static_cast<size_t>(begin + i)], epoch);
    mirror_images_(u8, mirror);
  }
  b.images = normalize_images(u8, mean_, stddev_);
  if (augment_.cutout) cutout_(b.images, augment_.cutout_size, rng);
  if (augment_.mixup || augment_.cutmix) {
    b.targets = one_hot(b.labels, set_.num_classes);
    if (augment_.mixup) mixup_(b.images, b.targets, augment_.mix_alpha, rng);
    else cutmix_(b.images, b.targets, augment_.mix_alpha, rng);
  }
  return b;
}

Batch BatchLoader::get(int64_t epoch, int64_t index) {
  Batch b;
  if (pending_.valid() && pending_epoch_ == epoch && pending_index_ == index) {
    const auto t0 = std::chrono::steady_clock::now();
    b = pending_.get();
    wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  } else {
    if (pending_.valid()) pending_.wait();  // a prefetch for another position: discard it
    const auto t0 = std::chrono::steady_clock::now();
    b = make(epoch, index);
    wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  // Start the next one: the following batch of this epoch, or the first of the next.
  int64_t next_epoch = epoch, next_index = index + 1;
  if (next_index >= batches_per_epoch()) next_epoch = epoch + 1, next_index = 0;
  pending_epoch_ = next_epoch, pending_index_ = next_index;
  pending_ = std::async(std::launch::async, [this, next_epoch, next_index] { return make(next_epoch, next_index); });
  return b;
}

}  // namespace edl
