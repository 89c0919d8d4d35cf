// trainer.h — the training loop behind `edl train`: data, model, optimizer, schedule, progress.
//
// One function runs a whole training from a TrainConfig and returns what it measured; the
// command line only parses flags into the config. Progress goes to `log`: a live line
// (step, loss, accuracy, images/s, ETA) redrawn in place on a terminal, or a line every tenth
// of the run when the output is a file.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>

namespace edl {

struct TrainConfig {
  std::string model = "small_cnn";
  std::string dataset = "cifar10";
  std::string data_dir;          // "" = search (see find_cifar_dir)
  int64_t steps = 300;
  int64_t batch_size = 64;
  std::string optimizer = "sgd";  // sgd | adamw
  double lr = 0.05;
  double momentum = 0.9;
  bool nesterov = true;
  double weight_decay = 5e-4;
  std::string schedule = "cosine";  // constant | step | cosine | onecycle
  int64_t warmup_steps = 0;
  double label_smoothing = 0.0;
  uint64_t seed = 0;
  int64_t subset = 0;      // train on this many random training images (0 = all)
  int64_t eval_size = 0;   // evaluate on the first this-many test images (0 = all)
  std::string out;         // run folder for config.json and model.safetensors ("" = none)
};

struct TrainResult {
  double final_train_loss = 0;  // mean over the last 10% of steps
  double final_train_accuracy = 0;
  double test_accuracy = 0;
  int64_t test_images = 0;
  double seconds = 0;           // training only
  double images_per_second = 0;
};

TrainResult train(const TrainConfig& config, std::ostream& log, bool live_progress);

}  // namespace edl
