// trainer.h — the training loop behind `edl train`: data, model, optimizer, schedule,
// progress, metrics, checkpoints, resume.
//
// One function runs a whole training from a TrainConfig; the command line only parses flags
// into the config. What it writes into the run folder (config.out):
//   config.json            the exact configuration
//   metrics.csv / .jsonl   one row per epoch: train loss and accuracy, test accuracy, times
//   last.safetensors       model + optimizer state (+ Lookahead's slow weights) + position,
//                          after every epoch and on Ctrl-C (what --resume continues from)
//   best.safetensors       the model with the best test accuracy so far (PyTorch state_dict
//                          names only: loads with safetensors.torch.load_file)
//   curves.svg             loss and accuracy per epoch
// Every file is written atomically (temporary file, then rename).
// Before the first step of a new run, the airbench model's whitening stem is set from the first
// 5000 images of the training pool (all images, or the --subset; FastCifar::init_whitening).
#pragma once

#include <atomic>
#include <cstdint>
#include <iosfwd>
#include <string>

#include "engine/tensor.h"

namespace edl {

struct TrainConfig {
  std::string model = "resnet20";
  std::string dataset = "cifar10";
  std::string data_dir;              // "" = search (see find_cifar_dir)
  int64_t epochs = 30;
  bool profile = false;               // time every op and print the table at the end (engine/profiler.h)
  bool profile_shapes = false;        // the same, a row per op, variant and input shapes
  int64_t max_steps = 0;             // stop after this many steps (0 = the whole run); for smoke tests
  int64_t batch_size = 128;
  std::string optimizer = "sgd";     // sgd | adamw
  double lr = 0.2;
  double momentum = 0.9;
  bool nesterov = true;
  double weight_decay = 5e-4;
  std::string schedule = "cosine";   // constant | step | cosine | onecycle | linear
  double warmup_epochs = 2;
  double label_smoothing = 0.1;
  std::string augment = "crop,flip"; // any of crop (or translate), flip, cutout, mixup, cutmix; or none
  double bn_lr_scale = 1;            // BatchNorm parameters: lr times this, weight decay divided by it
  bool lookahead = false;            // airbench's Lookahead: from 30% of the run, every 5 steps, decay 0.95^5 * progress^3
  double freeze_stem_bias = -1;      // airbench: freeze the whitening stem's bias after this many epochs (-1: never)
  std::string tta = "none";          // test-time augmentation of the evaluations: none, flip, translate
  int64_t eval_every = 1;            // evaluate every this many epochs (0: only after the last)
  uint64_t seed = 0;
  int64_t subset = 0;                // train on this many random training images (0 = all)
  int64_t eval_size = 0;             // evaluate on the first this-many test images (0 = all)
  int threads = 0;                   // 0 = OMP_NUM_THREADS or all cores
  std::string out = "runs/default";  // the run folder
  bool resume = false;               // continue from out/last.safetensors
};

struct TrainResult {
  int64_t steps = 0;                 // optimizer steps done in total (including before a resume)
  int64_t epochs_done = 0;
  double train_loss = 0;             // of the last epoch
  double train_accuracy = 0;
  double test_accuracy = 0;          // after the last evaluated epoch
  double best_test_accuracy = 0;
  double seconds = 0;                // wall time of this invocation, evaluation included
  double train_images_per_second = 0;
  double data_wait_seconds = 0;      // time the training loop waited for batches
  bool interrupted = false;          // stopped by Ctrl-C (or stop flag) with a resumable checkpoint
};

// The parts of a last.safetensors: the model's state_dict, the optimizer's state (entries
// "optimizer.<name>", split off without the prefix) and Lookahead's slow weights ("lookahead.").
// edl eval uses the model part alone.
struct TrainCheckpoint {
  NamedTensors model, optimizer, lookahead;
};
TrainCheckpoint split_train_checkpoint(const NamedTensors& saved);

class Module;
class Optimizer;
// --bn-lr-scale: every BatchNorm2d parameter of `model` among the optimizer's gets lr * scale
// and weight_decay / scale (airbench's bias_scaler; the decay per step stays the same).
void scale_batch_norm_params(Module& model, Optimizer& opt, double scale);

// `stop` may be set from a signal handler: the loop finishes the current step, writes
// last.safetensors and returns with interrupted = true.
TrainResult train(const TrainConfig& config, std::ostream& log, bool live_progress,
                  const std::atomic<bool>* stop = nullptr);

}  // namespace edl
