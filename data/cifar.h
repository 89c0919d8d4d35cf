// cifar.h — readers for the official binary CIFAR-10 and CIFAR-100 files, where to find them,
// and the per-channel normalization every CIFAR network is trained with.
//
// The format is described on https://www.cs.toronto.edu/~kriz/cifar.html ("Binary version"):
// a file is a plain sequence of fixed-size records, no header.
//
//   CIFAR-10   cifar-10-binary.tar.gz  -> cifar-10-batches-bin/
//              data_batch_1.bin .. data_batch_5.bin (train, 10000 records each), test_batch.bin
//              record = 1 label byte (0..9), 3072 pixel bytes                   = 3073 bytes
//              class names: batches.meta.txt, one per line
//   CIFAR-100  cifar-100-binary.tar.gz -> cifar-100-binary/
//              train.bin (50000 records), test.bin (10000)
//              record = 1 coarse label (0..19), 1 fine label (0..99), 3072 pixels = 3074 bytes
//              class names: coarse_label_names.txt, fine_label_names.txt
//
// The 3072 pixel bytes are the 1024 red values, then 1024 green, then 1024 blue, each plane
// a 32×32 image in row-major order. That is exactly edl's NCHW layout of one image, (3,32,32),
// so a record's pixels are copied as they are: byte c*1024 + h*32 + w is images[n][c][h][w].
//
// Tested by tests/test_cifar.cpp:  ctest --test-dir build -R cifar
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace edl {

struct CifarSet {
  Tensor images;  // u8 (N,3,32,32), raw pixel values 0..255
  Tensor labels;  // s32 (N), class indices 0..num_classes-1
  int64_t num_classes = 0;
  std::vector<std::string> class_names;  // from the names file; empty if the file is absent
};

// Loads a split of CIFAR-10 or CIFAR-100 from `dir` (the folder holding the .bin files).
//   dataset     "cifar10" or "cifar100"
//   train       true: the 50000 training images; false: the 10000 test images
//   label_kind  CIFAR-100 only: "fine" (100 classes) or "coarse" (20 superclasses)
// Throws edl::Error naming the file for a missing directory or file (and saying how to get
// the data), a size that is not a whole number of records, or a label out of range.
CifarSet load_cifar(const std::string& dir, const std::string& dataset, bool train,
                    const std::string& label_kind = "fine");

// Where the data is. Returns the first of these directories that holds the dataset's files:
//   1. explicit_dir (the --data-dir flag), if non-empty: it must exist; its
//      cifar-10-batches-bin/ (or cifar-100-binary/) subfolder is used if the files are there
//   2. $EDL_DATA_DIR, then $EDL_DATA_DIR/cifar-10-batches-bin (or cifar-100-binary)
//   3. ./data/cifar-10-batches-bin, then ../shared/data/cifar-10-batches-bin, relative to the
//      current directory
//   4. the same two relative to the source tree (the project's checkout)
// Throws edl::Error listing every place it looked and how to get the data.
std::string find_cifar_dir(const std::string& dataset, const std::string& explicit_dir = "");

// u8 (N,3,H,W) images -> f32 (N,3,H,W) with y = (x/255 - mean[c]) / stddev[c], the
// ToTensor + Normalize(mean, std) of torchvision, computed in float in the same order so
// the values match PyTorch's.
Tensor normalize_images(const Tensor& u8_images, const std::array<float, 3>& mean,
                        const std::array<float, 3>& stddev);

// Per-channel (R, G, B) mean and standard deviation of the training images, scaled to [0, 1];
// the values used throughout the CIFAR literature and in torchvision examples.
inline constexpr std::array<float, 3> kCifar10Mean = {0.4914f, 0.4822f, 0.4465f};
inline constexpr std::array<float, 3> kCifar10Std = {0.2470f, 0.2435f, 0.2616f};
inline constexpr std::array<float, 3> kCifar100Mean = {0.5071f, 0.4865f, 0.4409f};
inline constexpr std::array<float, 3> kCifar100Std = {0.2673f, 0.2564f, 0.2762f};

}  // namespace edl
