// main.cpp — the edl command line.
//
//   edl train [flags]            train a CNN on CIFAR with progress (edl train --help for the flags)
//   edl eval --checkpoint F      top-1, top-5, per-class accuracy, confusion matrix; --logits to save them
//   edl augment-preview          a PNG grid of augmented training images
//   edl summary --model M        layers, output shapes, parameters and multiply-accumulates
//   edl ops                      list the registered operators and their variants
//   edl download --dataset D     fetch CIFAR-10/100 from the official address, check its MD5, unpack
//
// Every bad flag, unknown model or missing data set ends with a one-line error and exit code 1
// (2 for a command-line syntax error, as CLI11 reports it).
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <algorithm>
#include <cmath>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>

#include "data/download.h"
#include "data/image_io.h"
#include "data/loader.h"
#include "engine/checkpoint.h"
#include "engine/evaluation.h"
#include "engine/registry.h"
#include "engine/trainer.h"
#include "models/summary.h"
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

struct EvalOptions {
  std::string checkpoint, model, dataset, data_dir, logits;
  int64_t eval_size = 0;
  std::string tta = "none";
};

// Loads a checkpoint written by edl train (or by PyTorch with the same state_dict names) and
// evaluates it on the test set. The model and data set come from the flags, else from the
// checkpoint's metadata.
static void run_eval(const EvalOptions& o) {
  std::map<std::string, std::string> meta;
  // last.safetensors also holds the optimizer's state and Lookahead's slow weights: the model part only.
  const NamedTensors weights = split_train_checkpoint(load_safetensors(o.checkpoint, &meta)).model;
  std::string model = o.model, dataset = o.dataset;
  if (meta.count("config")) {
    const auto config = nlohmann::json::parse(meta["config"]);
    if (model.empty()) model = config["model"];
    if (dataset.empty()) dataset = config["dataset"];
  }
  if (model.empty() && meta.count("model")) model = meta["model"];
  if (dataset.empty() && meta.count("dataset")) dataset = meta["dataset"];
  EDL_CHECK(!model.empty(), "eval: {} does not say which model it holds: pass --model ({})", o.checkpoint, join(model_names()));
  if (dataset.empty()) dataset = "cifar10";
  EDL_CHECK(dataset == "cifar10" || dataset == "cifar100", "unknown dataset '{}' (known: cifar10, cifar100)", dataset);

  std::shared_ptr<Module> net = make_model(model, dataset == "cifar10" ? 10 : 100);
  net->load_state_dict(weights);
  const std::string dir = find_cifar_dir(dataset, o.data_dir);
  const CifarSet test = load_cifar(dir, dataset, false);
  const auto mean = dataset == "cifar10" ? kCifar10Mean : kCifar100Mean;
  const auto stddev = dataset == "cifar10" ? kCifar10Std : kCifar100Std;
  // A bare --tta (no value; CLI11 2.1 gives such an option its empty default string) means flip.
  const Tta tta = tta_from_name(o.tta.empty() ? "flip" : o.tta);
  Evaluation e = evaluate_model(*net, test, mean, stddev, o.eval_size, !o.logits.empty(), tta);
  const char* how = tta == Tta::flip        ? ", logits averaged with the mirror image's (--tta flip)"
                    : tta == Tta::translate ? ", logits averaged over 6 views: mirrored and moved by one pixel (--tta translate)"
                                            : "";
  std::cout << fmt::format("{} ({}) on {} from {}{}\n", o.checkpoint, model, dataset, dir, how)
            << format_evaluation(e, test.class_names);
  if (!o.logits.empty()) {
    if (o.logits.size() > 12 && o.logits.substr(o.logits.size() - 12) == ".safetensors")
      save_safetensors(o.logits, {{"logits", e.logits}, {"labels", test.labels.slice(0, e.images).clone()}});
    else
      write_npy(o.logits, e.logits);
    std::cout << fmt::format("wrote the logits of {} images to {}\n", e.images, o.logits);
  }
}

struct PreviewOptions {
  std::string dataset = "cifar10", data_dir, augment = "crop,flip,cutout", out = "augment-preview.png";
  int64_t count = 64, cols = 8;
  uint64_t seed = 0;
};

// The first training batch after augmentation, un-normalized back to pixels, as a PNG grid.
static void run_preview(const PreviewOptions& o) {
  EDL_CHECK(o.count >= 1 && o.cols >= 1, "augment-preview: --count and --cols must be positive");
  const std::string dir = find_cifar_dir(o.dataset, o.data_dir);
  const CifarSet train = load_cifar(dir, o.dataset, true);
  const auto mean = o.dataset == "cifar10" ? kCifar10Mean : kCifar100Mean;
  const auto stddev = o.dataset == "cifar10" ? kCifar10Std : kCifar100Std;
  std::vector<int64_t> pool(static_cast<size_t>(train.images.dim(0)));
  std::iota(pool.begin(), pool.end(), 0);
  BatchLoader loader(train, pool, std::min<int64_t>(o.count, train.images.dim(0)), AugmentConfig::parse(o.augment), mean,
                     stddev, o.seed, true, true);
  Batch b = loader.make(0, 0);
  Tensor pixels = Tensor::empty(b.images.shape(), DType::u8);
  const int64_t plane = b.images.dim(2) * b.images.dim(3);
  for (int64_t i = 0; i < b.images.numel(); ++i) {
    const int64_t c = i / plane % 3;
    const double v = (b.images.data<float>()[i] * stddev[c] + mean[c]) * 255.0;
    pixels.data<uint8_t>()[i] = static_cast<uint8_t>(std::clamp(std::nearbyint(v), 0.0, 255.0));
  }
  write_image_grid_png(o.out, pixels, o.cols);
  std::cout << fmt::format("wrote {} augmented images ({}) to {}\n", pixels.dim(0), o.augment, o.out);
}

void run_download(const std::string& dataset, const std::string& dir, const std::string& url) {
  DownloadSpec spec = cifar_download_spec(dataset);
  if (!url.empty()) spec.url = url;
  std::cout << fmt::format("{}: {} -> {}\n", spec.title, spec.url, dir) << std::flush;
  int last_percent = -1;
  const bool live = isatty(STDOUT_FILENO) != 0;
  const std::string folder = download_dataset(spec, dir, [&](int64_t done, int64_t total) {
    if (total <= 0) return;
    const int percent = static_cast<int>(100 * done / total);
    if (percent == last_percent || (!live && percent % 10 != 0)) return;  // in a log: every 10%
    last_percent = percent;
    std::cout << fmt::format("{}downloaded {:.1f} of {:.1f} MB ({}%){}", live ? "\r" : "", done / 1e6, total / 1e6,
                             percent, live ? "" : "\n")
              << std::flush;
  });
  if (live && last_percent >= 0) std::cout << "\n";
  std::cout << fmt::format("{} is in {} (MD5 checked); train on it with --data-dir {}\n", spec.title, folder, dir);
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
  train_cmd->add_option("--schedule", tc.schedule, "constant, step, cosine, onecycle or linear")->capture_default_str();
  train_cmd->add_option("--warmup", tc.warmup_epochs, "linear warm-up, in epochs (may be fractional)")
      ->capture_default_str();
  train_cmd->add_option("--label-smoothing", tc.label_smoothing, "label smoothing")->capture_default_str();
  train_cmd->add_option("--augment", tc.augment,
                        "comma-separated: crop (or translate: pad 2, reflected), flip (or altflip: each image the other way every epoch), cutout, mixup, cutmix; or none")
      ->capture_default_str();
  train_cmd->add_option("--subset", tc.subset, "train on this many random training images (0: all)")->capture_default_str();
  train_cmd->add_option("--eval-size", tc.eval_size, "evaluate on this many test images (0: all)")->capture_default_str();
  train_cmd->add_option("--seed", tc.seed, "seed of weights, shuffling, augmentation and subset")->capture_default_str();
  train_cmd->add_option("--threads", tc.threads, "compute threads (0: OMP_NUM_THREADS or all cores)")->capture_default_str();
  train_cmd->add_option("--out", tc.out, "run folder: config, metrics, checkpoints, curves")->capture_default_str();
  train_cmd->add_option("--bn-lr-scale", tc.bn_lr_scale,
                        "BatchNorm parameters train at lr times this, with weight decay divided by it")
      ->capture_default_str();
  train_cmd->add_flag("--lookahead", tc.lookahead, "Lookahead as airbench: slow weights every 5 steps (docs/fast-training.md)");
  train_cmd->add_option("--freeze-stem-bias", tc.freeze_stem_bias,
                        "airbench: freeze the whitening stem's bias after this many epochs, as airbench94 does after 3 (-1: never)")
      ->capture_default_str();
  train_cmd->add_option("--tta", tc.tta, "test-time augmentation of the evaluations: none, flip or translate")
      ->capture_default_str();
  train_cmd->add_option("--eval-every", tc.eval_every, "evaluate every this many epochs (0: only after the last)")
      ->capture_default_str();
  train_cmd->add_flag("--profile", tc.profile, "time every op and print where the time went at the end");
  train_cmd->add_flag("--profile-shapes", tc.profile_shapes,
                      "as --profile, with a row per input shape of each op (one per layer shape)");
  train_cmd->add_flag("--resume", tc.resume, "continue the run in --out from its last checkpoint");

  EvalOptions eo;
  CLI::App* eval_cmd = app.add_subcommand("eval", "evaluate a checkpoint on the test set");
  eval_cmd->add_option("--checkpoint", eo.checkpoint, "a .safetensors file (best or last of a run, or from PyTorch)")->required();
  eval_cmd->add_option("--model", eo.model, "model (default: from the checkpoint)");
  eval_cmd->add_option("--dataset", eo.dataset, "cifar10 or cifar100 (default: from the checkpoint)");
  eval_cmd->add_option("--data-dir", eo.data_dir, "folder with the CIFAR .bin files");
  eval_cmd->add_option("--eval-size", eo.eval_size, "evaluate on this many test images (0: all)");
  eval_cmd->add_option("--logits", eo.logits, "write every image's logits to this .npy or .safetensors file");
  eval_cmd
      ->add_option("--tta", eo.tta,
                   "test-time augmentation: none; flip (the default of a bare --tta): average each image's logits "
                   "with its mirror image's; translate: also over one-pixel shifts (6 views)")
      ->expected(0, 1);

  PreviewOptions po;
  CLI::App* preview_cmd = app.add_subcommand("augment-preview", "write a PNG grid of augmented training images");
  preview_cmd->add_option("--dataset", po.dataset, "cifar10 or cifar100")->capture_default_str();
  preview_cmd->add_option("--data-dir", po.data_dir, "folder with the CIFAR .bin files");
  preview_cmd->add_option("--augment", po.augment, "crop, flip, cutout, mixup, cutmix")->capture_default_str();
  preview_cmd->add_option("--count", po.count, "images")->capture_default_str();
  preview_cmd->add_option("--cols", po.cols, "images per row")->capture_default_str();
  preview_cmd->add_option("--seed", po.seed, "seed")->capture_default_str();
  preview_cmd->add_option("--out", po.out, "PNG file")->capture_default_str();

  std::string summary_model = "resnet20", summary_dataset = "cifar10";
  CLI::App* summary_cmd = app.add_subcommand("summary", "layers, output shapes, parameters and MACs per image of a model");
  summary_cmd->add_option("--model", summary_model, "model: " + join(model_names()))->capture_default_str();
  summary_cmd->add_option("--dataset", summary_dataset, "cifar10 or cifar100 (sets the number of classes)")
      ->capture_default_str();

  CLI::App* ops_cmd = app.add_subcommand("ops", "list the registered operators and their variants");

  std::string dl_dataset = "cifar10", dl_dir = "data", dl_url;
  CLI::App* download_cmd = app.add_subcommand(
      "download", "download CIFAR-10/100 from the official address, check its MD5 and unpack it (data/download.h)");
  download_cmd->add_option("--dataset", dl_dataset, "cifar10 or cifar100")->capture_default_str();
  download_cmd->add_option("--data-dir", dl_dir, "folder to put the data in")->capture_default_str();
  download_cmd->add_option("--url", dl_url, "another address of the same archive (a mirror); the MD5 must match");

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
    if (*eval_cmd) run_eval(eo);
    if (*preview_cmd) run_preview(po);
    if (*summary_cmd) {
      EDL_CHECK(summary_dataset == "cifar10" || summary_dataset == "cifar100",
                "unknown dataset '{}' (known: cifar10, cifar100)", summary_dataset);
      std::shared_ptr<Module> net = make_model(summary_model, summary_dataset == "cifar10" ? 10 : 100);
      std::cout << summary_model << " on " << summary_dataset << " (per 3x32x32 image)\n"
                << format_summary(summarize(*net, {1, 3, 32, 32}));
    }
    if (*ops_cmd) list_ops();
    if (*download_cmd) run_download(dl_dataset, dl_dir, dl_url);
  } catch (const std::exception& e) {
    std::cout.flush();
    std::cerr << "\nedl: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
