// main.cpp — the edl command line.
//
//   edl train [flags]     train a CNN on CIFAR with progress (edl train --help for the flags)
//   edl ops               list the registered operators and their variants
//
// Every bad flag, unknown model or missing data set ends with a one-line error and exit code 1
// (2 for a command-line syntax error, as CLI11 reports it).
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <iostream>

#include "engine/registry.h"
#include "engine/trainer.h"
#include "models/zoo.h"

using namespace edl;

static std::atomic<bool> g_stop{false};

static void list_ops() {
  for (const OpDef& op : all_ops()) {
    std::vector<std::string> variants;
    for (const Variant& v : op.variants) variants.push_back(v.name);
    std::cout << fmt::format("{:<18} {}\n{:<18} variants: {}\n", op.name, op.summary, "", join(variants));
  }
}

int main(int argc, char** argv) {
  CLI::App app{"edl — a small deep-learning engine for learning efficient deep learning"};
  app.require_subcommand(1);

  TrainConfig tc;
  CLI::App* train_cmd = app.add_subcommand("train", "train a CNN on CIFAR, with progress, metrics and checkpoints");
  train_cmd->add_option("--model", tc.model, "model: " + join(model_names()))->capture_default_str();
  train_cmd->add_option("--dataset", tc.dataset, "cifar10 or cifar100")->capture_default_str();
  train_cmd->add_option("--data-dir", tc.data_dir,
                        "folder with the CIFAR .bin files (default: $EDL_DATA_DIR, then ./data, ../shared/data)");
  train_cmd->add_option("--epochs", tc.epochs, "passes over the training set")->capture_default_str();
  train_cmd->add_option("--max-steps", tc.max_steps, "stop after this many steps (0: no limit; for smoke tests)")
      ->capture_default_str();
  train_cmd->add_option("--batch-size", tc.batch_size, "images per step")->capture_default_str();
  train_cmd->add_option("--optimizer", tc.optimizer, "sgd or adamw")->capture_default_str();
  train_cmd->add_option("--lr", tc.lr, "peak learning rate")->capture_default_str();
  train_cmd->add_option("--momentum", tc.momentum, "SGD momentum")->capture_default_str();
  train_cmd->add_flag("--nesterov,!--no-nesterov", tc.nesterov, "Nesterov momentum (SGD)")->capture_default_str();
  train_cmd->add_option("--weight-decay", tc.weight_decay, "weight decay")->capture_default_str();
  train_cmd->add_option("--schedule", tc.schedule, "constant, step, cosine or onecycle")->capture_default_str();
  train_cmd->add_option("--warmup", tc.warmup_epochs, "linear warm-up, in epochs (may be fractional)")
      ->capture_default_str();
  train_cmd->add_option("--label-smoothing", tc.label_smoothing, "label smoothing")->capture_default_str();
  train_cmd->add_option("--augment", tc.augment, "comma-separated: crop, flip, cutout, mixup, cutmix; or none")
      ->capture_default_str();
  train_cmd->add_option("--subset", tc.subset, "train on this many random training images (0: all)")->capture_default_str();
  train_cmd->add_option("--eval-size", tc.eval_size, "evaluate on this many test images (0: all)")->capture_default_str();
  train_cmd->add_option("--seed", tc.seed, "seed of weights, shuffling, augmentation and subset")->capture_default_str();
  train_cmd->add_option("--threads", tc.threads, "compute threads (0: OMP_NUM_THREADS or all cores)")->capture_default_str();
  train_cmd->add_option("--out", tc.out, "run folder: config, metrics, checkpoints, curves")->capture_default_str();
  train_cmd->add_flag("--resume", tc.resume, "continue the run in --out from its last checkpoint");

  CLI::App* ops_cmd = app.add_subcommand("ops", "list the registered operators and their variants");

  CLI11_PARSE(app, argc, argv);
  try {
    if (*train_cmd) {
      // The first Ctrl-C asks the loop to stop after the current step and write a resumable
      // checkpoint; a second one ends the program at once (the default action).
      std::signal(SIGINT, [](int) {
        g_stop = true;
        std::signal(SIGINT, SIG_DFL);
      });
      TrainResult r = train(tc, std::cout, isatty(STDOUT_FILENO) != 0, &g_stop);
      if (r.interrupted) return 130;
    }
    if (*ops_cmd) list_ops();
  } catch (const std::exception& e) {
    std::cout.flush();
    std::cerr << "\nedl: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
