// loader.h — batches of a CIFAR split, shuffled, augmented and normalized, prepared in the
// background while the previous batch trains.
//
// A batch is a pure function of (seed, epoch, batch index): its images, its order and its
// augmentation draws come from a generator seeded with those three numbers. So a run is
// reproducible, a resumed run sees exactly the batches it would have seen, and the background
// thread cannot change the result by running early or late.
#pragma once

#include <array>
#include <cstdint>
#include <future>
#include <vector>

#include "data/augment.h"
#include "data/cifar.h"

namespace edl {

struct Batch {
  Tensor images;   // f32 (B,3,32,32), normalized (and augmented)
  Tensor labels;   // s32 (B)
  Tensor targets;  // f32 (B,K) soft targets when mixup/cutmix ran, else undefined
};

class BatchLoader {
 public:
  // `pool` lists the images to draw from (all of a split, or a training subset).
  // shuffle: a new order every epoch; drop_last: skip a last partial batch (training).
  BatchLoader(const CifarSet& set, std::vector<int64_t> pool, int64_t batch_size, AugmentConfig augment,
              std::array<float, 3> mean, std::array<float, 3> stddev, uint64_t seed, bool shuffle, bool drop_last);
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  int64_t batches_per_epoch() const;
  // Batch `index` of `epoch`, then starts preparing the one after it in the background.
  Batch get(int64_t epoch, int64_t index);
  // Seconds the caller spent waiting for a batch that was not ready yet (data starvation).
  double wait_seconds() const { return wait_seconds_; }

  // The same batch, prepared synchronously (what the background thread runs).
  Batch make(int64_t epoch, int64_t index) const;

 private:
  const CifarSet& set_;
  std::vector<int64_t> pool_;
  int64_t batch_size_;
  AugmentConfig augment_;
  std::array<float, 3> mean_, stddev_;
  uint64_t seed_;
  bool shuffle_, drop_last_;
  std::future<Batch> pending_;
  int64_t pending_epoch_ = -1, pending_index_ = -1;
  double wait_seconds_ = 0;
};

}  // namespace edl
