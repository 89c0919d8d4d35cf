// trainer.cpp — the training loop behind `edl train` (see trainer.h).
#include "engine/trainer.h"

#include <nlohmann/json.hpp>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <cstring>
#include <numeric>
#include <ostream>
#include <sstream>

#include "data/loader.h"
#include "engine/autograd.h"
#include "engine/checkpoint.h"
#include "engine/evaluation.h"
#include "engine/optim.h"
#include "engine/profiler.h"
#include "engine/threads.h"
#include "models/fast_cifar.h"
#include "models/init.h"
#include "models/zoo.h"

namespace edl {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string format_duration(double s) {
  int64_t t = static_cast<int64_t>(s + 0.5);
  return t >= 3600 ? fmt::format("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60) : fmt::format("{}:{:02}", t / 60, t % 60);
}

// Correct predictions (argmax of each row of logits) in a batch.
int64_t count_correct(const Tensor& logits, const Tensor& labels) {
  const int64_t N = logits.dim(0), K = logits.dim(1);
  const float* z = logits.data<float>();
  int64_t correct = 0;
  for (int64_t n = 0; n < N; ++n) {
    const int64_t best = std::max_element(z + n * K, z + (n + 1) * K) - (z + n * K);
    correct += best == labels.data<int32_t>()[n];
  }
  return correct;
}

std::unique_ptr<Optimizer> make_optimizer(const TrainConfig& c, std::vector<Tensor> params) {
  if (c.optimizer == "sgd") return std::make_unique<SGD>(std::move(params), c.lr, c.momentum, c.nesterov, c.weight_decay);
  if (c.optimizer == "adamw") return std::make_unique<AdamW>(std::move(params), c.lr, 0.9, 0.999, 1e-8, c.weight_decay);
  throw Error(fmt::format("unknown optimizer '{}' (known: sgd, adamw)", c.optimizer));
}

void validate(const TrainConfig& c) {
  EDL_CHECK(c.epochs >= 1, "--epochs must be at least 1, got {}", c.epochs);
  EDL_CHECK(c.max_steps >= 0, "--max-steps must not be negative, got {}", c.max_steps);
  EDL_CHECK(c.batch_size >= 2, "--batch-size must be at least 2 (batch normalization needs two images), got {}",
            c.batch_size);
  EDL_CHECK(c.lr > 0, "--lr must be positive, got {}", c.lr);
  EDL_CHECK(c.subset >= 0 && c.eval_size >= 0, "--subset and --eval-size must not be negative");
  EDL_CHECK(c.warmup_epochs >= 0 && c.warmup_epochs < c.epochs, "--warmup ({} epochs) must be less than --epochs ({})",
            c.warmup_epochs, c.epochs);
  EDL_CHECK(c.label_smoothing >= 0 && c.label_smoothing < 1, "--label-smoothing must be in [0, 1), got {}",
            c.label_smoothing);
  EDL_CHECK(c.dataset == "cifar10" || c.dataset == "cifar100", "unknown dataset '{}' (known: cifar10, cifar100)",
            c.dataset);
  EDL_CHECK(!c.out.empty(), "--out must name a run folder");
  EDL_CHECK(c.threads >= 0, "--threads must not be negative, got {}", c.threads);
  EDL_CHECK(c.bn_lr_scale > 0, "--bn-lr-scale must be positive, got {}", c.bn_lr_scale);
  EDL_CHECK(c.eval_every >= 0, "--eval-every must not be negative, got {}", c.eval_every);
  EDL_CHECK(c.freeze_stem_bias == -1 || (c.freeze_stem_bias >= 0 && c.freeze_stem_bias <= static_cast<double>(c.epochs)),
            "--freeze-stem-bias must be -1 (never) or a number of epochs from 0 to --epochs ({}), got {}", c.epochs,
            c.freeze_stem_bias);
  EDL_CHECK(c.freeze_stem_bias < 0 || c.model == "airbench",
            "--freeze-stem-bias applies to --model airbench (its whitening stem), not to {}", c.model);
  try {
    tta_from_name(c.tta);
  } catch (const Error& e) {
    throw Error(fmt::format("--tta: {}", e.what()));
  }
}

// Lookahead as airbench94: every kLookaheadEvery steps, with the decay rising as progress^3,
// from the first multiple of kLookaheadEvery at or after kLookaheadStart of the run (airbench:
// epoch 3 of 9.9), where the slow weights start as a copy of the model.
constexpr int64_t kLookaheadEvery = 5;
constexpr double kLookaheadStart = 0.3;
int64_t lookahead_first_step(int64_t total_steps) {
  const auto start = static_cast<int64_t>(std::ceil(kLookaheadStart * static_cast<double>(total_steps)));
  return std::max<int64_t>(kLookaheadEvery, (start + kLookaheadEvery - 1) / kLookaheadEvery * kLookaheadEvery);
}
double lookahead_decay(int64_t step, int64_t total_steps) {
  const double progress = static_cast<double>(step) / static_cast<double>(total_steps);
  return std::pow(0.95, kLookaheadEvery) * progress * progress * progress;
}

}  // namespace

void scale_batch_norm_params(Module& model, Optimizer& opt, double scale) {
  std::vector<const void*> bn;
  for_each_module(model, [&](const std::string&, Module& m) {
    if (auto* b = dynamic_cast<BatchNorm2d*>(&m)) bn.push_back(b->weight.raw()), bn.push_back(b->bias.raw());
  });
  for (size_t i = 0; i < opt.params().size(); ++i)
    if (std::find(bn.begin(), bn.end(), opt.params()[i].raw()) != bn.end()) opt.set_scales(i, scale, 1.0 / scale);
}

namespace {

// The first `count` images of the pool, normalized as the loader does (no augmentation).
Tensor normalized_images(const CifarSet& set, const std::vector<int64_t>& pool, int64_t count,
                         const std::array<float, 3>& mean, const std::array<float, 3>& stddev) {
  std::vector<int64_t> idx(pool.begin(), pool.begin() + std::min<int64_t>(count, static_cast<int64_t>(pool.size())));
  BatchLoader loader(set, idx, static_cast<int64_t>(idx.size()), AugmentConfig{}, mean, stddev, 0, false, false);
  return loader.make(0, 0).images;  // make, not get: get would prepare a next batch in the background
}

nlohmann::json config_json(const TrainConfig& c) {
  return {{"model", c.model},         {"dataset", c.dataset},       {"epochs", c.epochs},
          {"max_steps", c.max_steps}, {"batch_size", c.batch_size}, {"optimizer", c.optimizer},
          {"lr", c.lr},               {"momentum", c.momentum},     {"nesterov", c.nesterov},
          {"weight_decay", c.weight_decay}, {"schedule", c.schedule}, {"warmup_epochs", c.warmup_epochs},
          {"label_smoothing", c.label_smoothing}, {"augment", c.augment}, {"seed", c.seed},
          {"subset", c.subset},       {"eval_size", c.eval_size},   {"threads", c.threads},
          {"bn_lr_scale", c.bn_lr_scale}, {"lookahead", c.lookahead}, {"tta", c.tta},
          {"eval_every", c.eval_every}, {"freeze_stem_bias", c.freeze_stem_bias}};
}

struct EpochRow {
  int64_t epoch;
  double train_loss, train_accuracy, test_accuracy, lr, seconds, images_per_second, data_wait;
};

// A two-panel SVG (loss; train and test accuracy) of the epochs so far.
std::string curves_svg(const std::vector<EpochRow>& rows, const std::string& title) {
  const double W = 420, H = 260, L = 55, R = 15, T = 30, B = 40;
  std::ostringstream s;
  s << fmt::format(R"(<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif" font-size="11">)",
                   2 * W, H + 20)
    << "\n"
    << fmt::format(R"(<text x="{}" y="16" text-anchor="middle" font-size="13">{}</text>)", W, title) << "\n";
  struct Series {
    const char* name;
    const char* color;
    std::vector<double> y;
  };
  auto panel = [&](double x0, const char* ylabel, std::vector<Series> series, double ymin, double ymax) {
    const double pw = W - L - R, ph = H - T - B;
    const double xmax = std::max<double>(1, static_cast<double>(rows.size()));
    auto px = [&](double e) { return x0 + L + pw * (e - 1) / std::max(1.0, xmax - 1); };
    auto py = [&](double v) { return T + ph * (1 - (v - ymin) / (ymax - ymin)); };
    s << fmt::format(R"(<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#888"/>)", x0 + L, T, pw, ph) << "\n";
    for (int k = 0; k <= 4; ++k) {
      const double v = ymin + (ymax - ymin) * k / 4;
      s << fmt::format(R"(<line x1="{}" x2="{}" y1="{:.1f}" y2="{:.1f}" stroke="#eee"/>)", x0 + L, x0 + L + pw, py(v), py(v))
        << fmt::format(R"(<text x="{}" y="{:.1f}" text-anchor="end">{:.3g}</text>)", x0 + L - 4, py(v) + 4, v) << "\n";
    }
    s << fmt::format(R"(<text x="{}" y="{}" text-anchor="middle">epoch (1 to {})</text>)", x0 + L + pw / 2, H - 8,
                     rows.size())
      << fmt::format(R"svg(<text x="{}" y="{}" text-anchor="middle" transform="rotate(-90 {} {})">{}</text>)svg", x0 + 14,
                     T + ph / 2, x0 + 14, T + ph / 2, ylabel)
      << "\n";
    double ly = T + 14;
    for (const Series& ser : series) {
      std::string pts;
      for (size_t i = 0; i < ser.y.size(); ++i)  // epochs not evaluated (NaN) are left out
        if (!std::isnan(ser.y[i])) pts += fmt::format("{:.1f},{:.1f} ", px(static_cast<double>(i + 1)), py(ser.y[i]));
      s << fmt::format(R"(<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>)", pts, ser.color)
        << fmt::format(R"(<text x="{}" y="{}" fill="{}">{}</text>)", x0 + L + 8, ly, ser.color, ser.name) << "\n";
      ly += 14;
    }
  };
  std::vector<double> loss, tr, te;
  for (const EpochRow& r : rows) loss.push_back(r.train_loss), tr.push_back(100 * r.train_accuracy), te.push_back(100 * r.test_accuracy);
  const double lmax = loss.empty() ? 1 : *std::max_element(loss.begin(), loss.end());
  panel(0, "train loss", {{"train loss", "#1f77b4", loss}}, 0, std::max(1e-3, lmax * 1.05));
  panel(W, "accuracy (%)", {{"train", "#1f77b4", tr}, {"test", "#d62728", te}}, 0, 100);
  s << "</svg>\n";
  return s.str();
}

constexpr const char* kOptimizerPrefix = "optimizer.";
constexpr const char* kLookaheadPrefix = "lookahead.";

}  // namespace

TrainCheckpoint split_train_checkpoint(const NamedTensors& saved) {
  TrainCheckpoint parts;
  auto starts = [](const std::string& name, const char* prefix) { return name.rfind(prefix, 0) == 0; };
  for (const auto& [name, t] : saved) {
    if (starts(name, kOptimizerPrefix)) parts.optimizer.emplace_back(name.substr(std::strlen(kOptimizerPrefix)), t);
    else if (starts(name, kLookaheadPrefix)) parts.lookahead.emplace_back(name.substr(std::strlen(kLookaheadPrefix)), t);
    else parts.model.emplace_back(name, t);
  }
  return parts;
}

TrainResult train(const TrainConfig& c, std::ostream& log, bool live, const std::atomic<bool>* stop) {
  validate(c);
  const auto t_start = Clock::now();
  if (c.threads > 0) set_num_threads(c.threads);
  const AugmentConfig augment = AugmentConfig::parse(c.augment);

  // Everything that can fail on a bad flag fails before the data is read.
  manual_seed(c.seed);
  const int64_t num_classes = c.dataset == "cifar10" ? 10 : 100;
  std::shared_ptr<Module> model = make_model(c.model, num_classes);
  std::unique_ptr<Optimizer> opt = make_optimizer(c, model->parameters());
  if (c.bn_lr_scale != 1) scale_batch_norm_params(*model, *opt, c.bn_lr_scale);
  const LrKind lr_kind = lr_kind_from_name(c.schedule);
  const Tta tta = tta_from_name(c.tta);

  const std::string dir = find_cifar_dir(c.dataset, c.data_dir);
  const CifarSet train_set = load_cifar(dir, c.dataset, true), test_set = load_cifar(dir, c.dataset, false);
  const auto mean = c.dataset == "cifar10" ? kCifar10Mean : kCifar100Mean;
  const auto stddev = c.dataset == "cifar10" ? kCifar10Std : kCifar100Std;

  // The training images: all, or a seeded random subset (the course labs train on subsets).
  std::vector<int64_t> pool(static_cast<size_t>(train_set.images.dim(0)));
  std::iota(pool.begin(), pool.end(), 0);
  if (c.subset > 0) {
    EDL_CHECK(c.subset <= static_cast<int64_t>(pool.size()), "--subset {} exceeds the {} training images", c.subset,
              pool.size());
    Rng rng(c.seed ^ 0x5eedULL);
    for (size_t i = pool.size(); i > 1; --i)
      std::swap(pool[i - 1], pool[static_cast<size_t>(rng.integer(static_cast<int64_t>(i)))]);
    pool.resize(static_cast<size_t>(c.subset));
    std::sort(pool.begin(), pool.end());
  }
  BatchLoader loader(train_set, pool, c.batch_size, augment, mean, stddev, c.seed, /*shuffle=*/true, /*drop_last=*/true);
  const int64_t steps_per_epoch = loader.batches_per_epoch();
  const int64_t total_steps = c.epochs * steps_per_epoch;
  const int64_t n_test = c.eval_size > 0 ? std::min(c.eval_size, test_set.images.dim(0)) : test_set.images.dim(0);

  LrScheduleOptions so;
  so.kind = lr_kind;
  so.base_lr = c.lr;
  so.total_steps = total_steps;
  so.warmup_steps = lr_kind == LrKind::onecycle ? 0 : static_cast<int64_t>(c.warmup_epochs * steps_per_epoch);
  if (lr_kind == LrKind::step) {  // x0.1 at 1/2 and 3/4 of the steps after warm-up
    const int64_t T = total_steps - so.warmup_steps;
    so.milestones = {std::max<int64_t>(1, T / 2), std::max<int64_t>(2, T * 3 / 4)};
  }
  const LrSchedule schedule(so);

  auto* fast = dynamic_cast<FastCifar*>(model.get());
  if (fast && fast->options.airbench && !c.resume) {  // a resumed run loads the stem from its checkpoint
    fast->init_whitening(normalized_images(train_set, pool, 5000, mean, stddev));
    log << fmt::format("whitening stem: set from the 2x2 patches of {} training images, frozen\n",
                       std::min<size_t>(5000, pool.size()));
  }
  // airbench trains the whitening stem's bias for its first 3 epochs only: from then on the
  // backward pass stops at block1 (no gradient of its first convolution's input, of the GELU
  // after the stem, of the stem's bias), about 5% of a step. (Lookahead's updates still pull it
  // towards its slow copy, as in airbench; after a whole number of epochs the two are equal,
  // since each epoch ends on the slow weights.)
  const int64_t stem_bias_steps =
      c.freeze_stem_bias < 0 ? -1 : static_cast<int64_t>(std::ceil(c.freeze_stem_bias * static_cast<double>(steps_per_epoch)));
  if (stem_bias_steps >= 0)
    log << fmt::format("whitening stem: bias trained for the first {} steps ({} epochs), then frozen\n", stem_bias_steps,
                       c.freeze_stem_bias);
  std::unique_ptr<Lookahead> lookahead;
  if (c.lookahead) lookahead = std::make_unique<Lookahead>(model->state_dict());
  const int64_t lookahead_first = lookahead_first_step(total_steps);

  // ---- the run folder; resume ----
  namespace fs = std::filesystem;
  fs::create_directories(c.out);
  const std::string last_path = c.out + "/last.safetensors", best_path = c.out + "/best.safetensors";
  int64_t step = 0;
  double best_acc = 0;
  std::vector<EpochRow> rows;
  if (c.resume) {
    EDL_CHECK(fs::exists(last_path), "--resume: no checkpoint to resume from at {}", last_path);
    std::map<std::string, std::string> meta;
    const TrainCheckpoint saved = split_train_checkpoint(load_safetensors(last_path, &meta));
    EDL_CHECK(meta.count("step") && meta.count("config"), "--resume: {} has no training position (not written by edl train)",
              last_path);
    const nlohmann::json was = nlohmann::json::parse(meta["config"]), now = config_json(c);
    // Runs written before a key existed ran without it: its value then was the default.
    const nlohmann::json defaults_of_old_runs = {{"lookahead", false}, {"freeze_stem_bias", -1.0}};
    for (const char* key :
         {"model", "dataset", "batch_size", "epochs", "subset", "seed", "optimizer", "augment", "schedule", "lookahead",
          "freeze_stem_bias"})
    {
      const nlohmann::json before = was.contains(key) ? was[key] : defaults_of_old_runs.value(key, nlohmann::json());
      EDL_CHECK(before == now[key], "--resume: the run in {} used {}={}, this command says {}", c.out, key, before.dump(),
                now[key].dump());
    }
    model->load_state_dict(saved.model);
    opt->load_state(saved.optimizer);
    if (lookahead) lookahead->load_state(saved.lookahead);
    step = std::stoll(meta["step"]);
    best_acc = std::stod(meta.at("best_test_accuracy"));
    if (fs::exists(c.out + "/metrics.jsonl")) {  // the epochs already done, for the curves
      std::ifstream in(c.out + "/metrics.jsonl");
      for (std::string line; std::getline(in, line);) {
        const auto j = nlohmann::json::parse(line);
        if (j["epoch"].get<int64_t>() > step / steps_per_epoch) break;
        const double test_acc = j["test_accuracy"].is_null() ? std::nan("") : j["test_accuracy"].get<double>();
        rows.push_back({j["epoch"], j["train_loss"], j["train_accuracy"], test_acc, j["lr"], j["seconds"],
                        j["images_per_second"], j["data_wait_seconds"]});
      }
    }
    log << fmt::format("resumed {} at step {} (epoch {}, batch {})\n", last_path, step, step / steps_per_epoch + 1,
                       step % steps_per_epoch + 1);
  }
  write_file_atomic(c.out + "/config.json", config_json(c).dump(2) + "\n");

  log << fmt::format("data: {} from {} ({} training images, {} test images)\n", c.dataset, dir, pool.size(), n_test);
  log << fmt::format("model: {} ({} parameters); {} epochs x {} steps of {} images; {} lr {} {} (warm-up {} epochs); "
                     "augment {}; {} threads\n",
                     c.model, model->num_parameters(), c.epochs, steps_per_epoch, c.batch_size, c.optimizer, c.lr,
                     c.schedule, c.warmup_epochs, augment.str(), omp_get_max_threads())
      << std::flush;

  auto save_last = [&](int64_t at_step) {
    NamedTensors all = model->state_dict();
    for (auto& [name, t] : opt->state()) all.emplace_back(kOptimizerPrefix + name, t);
    if (lookahead)
      for (auto& [name, t] : lookahead->state()) all.emplace_back(kLookaheadPrefix + name, t);
    save_safetensors(last_path, all,
                     {{"step", std::to_string(at_step)}, {"best_test_accuracy", fmt::format("{:.17g}", best_acc)},
                      {"config", config_json(c).dump()}, {"format", "edl train checkpoint"}});
  };
  auto write_metrics = [&]() {
    std::string csv = "epoch,train_loss,train_accuracy,test_accuracy,lr,seconds,images_per_second,data_wait_seconds\n",
                jsonl;
    for (const EpochRow& r : rows) {
      // An epoch without evaluation (--eval-every) has an empty test_accuracy (null in the JSON).
      const std::string test_acc = std::isnan(r.test_accuracy) ? "" : fmt::format("{:.6f}", r.test_accuracy);
      csv += fmt::format("{},{:.6f},{:.6f},{},{:.6g},{:.2f},{:.1f},{:.2f}\n", r.epoch, r.train_loss, r.train_accuracy,
                         test_acc, r.lr, r.seconds, r.images_per_second, r.data_wait);
      const nlohmann::json test_json = std::isnan(r.test_accuracy) ? nlohmann::json() : nlohmann::json(r.test_accuracy);
      jsonl += nlohmann::json{{"epoch", r.epoch},       {"train_loss", r.train_loss},
                              {"train_accuracy", r.train_accuracy}, {"test_accuracy", test_json},
                              {"lr", r.lr},             {"seconds", r.seconds},
                              {"images_per_second", r.images_per_second}, {"data_wait_seconds", r.data_wait}}
                   .dump() +
               "\n";
    }
    write_file_atomic(c.out + "/metrics.csv", csv);
    write_file_atomic(c.out + "/metrics.jsonl", jsonl);
    write_file_atomic(c.out + "/curves.svg", curves_svg(rows, c.model + " on " + c.dataset));
  };

  // ---- training ----
  TrainResult r;
  const int64_t end_step = c.max_steps > 0 ? std::min(total_steps, step + c.max_steps) : total_steps;
  const double wait_at_start = loader.wait_seconds();
  int64_t images_this_run = 0;
  double train_seconds = 0;
  model->train();
  const bool profiling_before = profiling();  // EDL_PROFILE=1, or a caller's set_profiling
  const bool profile = c.profile || c.profile_shapes || profiling_before;
  const bool shapes_before = profile_shapes();
  set_profiling(profile);
  set_profile_shapes(c.profile_shapes || shapes_before);
  const int64_t first_step = step;
  while (step < end_step) {
    const int64_t epoch = step / steps_per_epoch;
    const auto t_epoch = Clock::now();
    const double wait_epoch = loader.wait_seconds();
    double loss_sum = 0, correct = 0, seen = 0;  // this epoch, in this invocation
    double win_loss = 0, win_correct = 0, win_seen = 0;  // since the last progress line
    auto last_report = Clock::now();
    bool interrupted = false;
    for (int64_t i = step % steps_per_epoch; i < steps_per_epoch && step < end_step; ++i) {
      Batch b = loader.get(epoch, i);
      opt->set_lr(schedule.lr(step));
      if (stem_bias_steps >= 0) fast->stem->bias.set_requires_grad(step < stem_bias_steps);
      Tensor logits = (*model)(b.images);
      Tensor loss = cross_entropy(logits, b.targets.defined() ? b.targets : b.labels, c.label_smoothing);
      opt->zero_grad();
      loss.backward();
      {
        const auto t_opt = Clock::now();
        opt->step();
        if (profiling()) profile_add("(optimizer step)", "", "", seconds_since(t_opt), 0);
      }
      ++step;
      if (lookahead && step >= lookahead_first && step % kLookaheadEvery == 0)
        lookahead->update(step == lookahead_first ? 0.0 : lookahead_decay(step, total_steps));
      if (profile && step == first_step + 1) profile_reset();  // the first step allocates: leave it out

      const double l = loss.item(), n = static_cast<double>(b.labels.dim(0));
      EDL_CHECK(std::isfinite(l), "training diverged at step {}: the loss is {} (try a lower --lr)", step, l);
      const double ok = static_cast<double>(count_correct(logits, b.labels));
      loss_sum += l * n, correct += ok, seen += n;
      win_loss += l * n, win_correct += ok, win_seen += n;
      images_this_run += b.labels.dim(0);

      interrupted = stop && stop->load();
      const bool epoch_end = i + 1 == steps_per_epoch || step == end_step;
      const int64_t tenth = std::max<int64_t>(1, steps_per_epoch / 10);
      const bool due = live ? seconds_since(last_report) >= 0.5 : (i + 1) % tenth == 0 && !epoch_end;
      if (due || epoch_end || interrupted) {
        const double el = seconds_since(t_epoch), ips = seen / std::max(el, 1e-9);
        const double eta = static_cast<double>(end_step - step) * static_cast<double>(c.batch_size) / ips;
        // A live line redrawn in place on a terminal; in a log file, a line every tenth of an epoch.
        if (live || !epoch_end)
          log << fmt::format("{}epoch {}/{}  step {}/{}  loss {:.4f}  acc {:5.1f}%  lr {:.4f}  {:.0f} img/s  ETA {}{}",
                             live ? "\r" : "", epoch + 1, c.epochs, i + 1, steps_per_epoch, win_loss / win_seen,
                             100 * win_correct / win_seen, schedule.lr(step - 1), ips, format_duration(eta),
                             live ? "   " : "\n")
              << std::flush;
        win_loss = win_correct = win_seen = 0;
        last_report = Clock::now();
      }
      if (interrupted) break;
    }
    // Once it has started, airbench ends every epoch on the slow weights (an update with decay 1).
    if (lookahead && step >= lookahead_first && step % steps_per_epoch == 0) lookahead->update(1.0);
    const double epoch_seconds = seconds_since(t_epoch);
    train_seconds += epoch_seconds;
    if (live) log << "\n";
    if (interrupted) {
      save_last(step);
      log << fmt::format("stopped at step {} (epoch {}, batch {}); wrote {}: continue with --resume\n", step, epoch + 1,
                         step % steps_per_epoch, last_path);
      r.interrupted = true;
      break;
    }
    if (step % steps_per_epoch != 0) break;  // --max-steps ended the run inside an epoch

    // End of an epoch: evaluate (every eval_every epochs and after the last), record, checkpoint.
    const bool last_epoch = step == total_steps;
    const bool evaluate = last_epoch || (c.eval_every > 0 && (epoch + 1) % c.eval_every == 0);
    double acc = std::nan("");
    double eval_seconds = 0;
    if (evaluate) {
      set_profiling(false);  // the table is about training steps
      const auto t_eval = Clock::now();
      acc = evaluate_model(*model, test_set, mean, stddev, n_test, false, tta).top1;
      eval_seconds = seconds_since(t_eval);
      set_profiling(profile);
      model->train();
    }
    rows.push_back({epoch + 1, loss_sum / seen, correct / seen, acc, schedule.lr(step - 1), epoch_seconds,
                    seen / epoch_seconds, loader.wait_seconds() - wait_epoch});
    const bool best = evaluate && acc > best_acc;
    if (best) {
      best_acc = acc;
      save_safetensors(best_path, model->state_dict(),
                       {{"epoch", std::to_string(epoch + 1)}, {"test_accuracy", fmt::format("{:.6f}", acc)},
                        {"model", c.model}, {"dataset", c.dataset}});
    }
    save_last(step);
    write_metrics();
    const std::string tta_part = tta == Tta::none ? "" : fmt::format(" (tta {}, {:.0f}s)", c.tta, eval_seconds);
    const std::string test_part = evaluate ? fmt::format("test acc {:5.2f}%{}{}", 100 * acc, tta_part, best ? " (best)" : "")
                                           : std::string("(not evaluated)");
    log << fmt::format("epoch {:>3}/{}  train loss {:.4f}  train acc {:5.2f}%  {}  {:.0f}s  "
                       "({:.0f} img/s, waited {:.1f}s for data)\n",
                       epoch + 1, c.epochs, loss_sum / seen, 100 * correct / seen, test_part, epoch_seconds,
                       seen / epoch_seconds, loader.wait_seconds() - wait_epoch)
        << std::flush;
  }

  r.steps = step;
  r.epochs_done = step / steps_per_epoch;
  if (!rows.empty()) {
    r.train_loss = rows.back().train_loss;
    r.train_accuracy = rows.back().train_accuracy;
    for (auto it = rows.rbegin(); it != rows.rend(); ++it)  // the last evaluated epoch (--eval-every)
      if (!std::isnan(it->test_accuracy)) {
        r.test_accuracy = it->test_accuracy;
        break;
      }
  }
  r.best_test_accuracy = best_acc;
  r.seconds = seconds_since(t_start);
  r.train_images_per_second = static_cast<double>(images_this_run) / std::max(train_seconds, 1e-9);
  r.data_wait_seconds = loader.wait_seconds() - wait_at_start;
  if (!r.interrupted && step < total_steps && step % steps_per_epoch != 0) save_last(step);
  log << fmt::format("{}: {} steps ({} epochs) in {}; {:.0f} training images/s, {:.1f}s waiting for data; "
                     "last test acc {:.2f}%, best {:.2f}%; run folder {}\n",
                     r.interrupted ? "interrupted" : "done", r.steps, r.epochs_done, format_duration(r.seconds),
                     r.train_images_per_second, r.data_wait_seconds, 100 * r.test_accuracy, 100 * best_acc, c.out);
  if (profile) {
    log << fmt::format("\nwhere the time of steps {}..{} went (wall time per op, summed):\n{}", first_step + 2, step,
                       profile_report());
    profile_reset();  // printed: EDL_PROFILE's report at exit has nothing left to add
    set_profiling(profiling_before);
    set_profile_shapes(shapes_before);
  }
  return r;
}

}  // namespace edl
