// trainer.cpp — the training loop behind `edl train`.
#include "engine/trainer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <numeric>
#include <ostream>

#include "data/cifar.h"
#include "engine/autograd.h"
#include "engine/checkpoint.h"
#include "engine/optim.h"
#include "models/zoo.h"

namespace edl {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string format_duration(double s) {
  int64_t t = static_cast<int64_t>(s + 0.5);
  return t >= 3600 ? fmt::format("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60) : fmt::format("{}:{:02}", t / 60, t % 60);
}

// Rows `idx` of a u8 image set, normalized to f32, and their labels.
std::pair<Tensor, Tensor> make_batch(const CifarSet& set, const std::vector<int64_t>& idx, int64_t begin, int64_t end,
                                     const std::array<float, 3>& mean, const std::array<float, 3>& stddev) {
  const int64_t n = end - begin, image_bytes = set.images.numel() / set.images.dim(0);
  Tensor images = Tensor::empty({n, set.images.dim(1), set.images.dim(2), set.images.dim(3)}, DType::u8);
  Tensor labels = Tensor::empty({n}, DType::s32);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = idx[static_cast<size_t>(begin + i)];
    std::memcpy(images.data<uint8_t>() + i * image_bytes, set.images.data<uint8_t>() + k * image_bytes,
                static_cast<size_t>(image_bytes));
    labels.data<int32_t>()[i] = set.labels.data<int32_t>()[k];
  }
  return {normalize_images(images, mean, stddev), labels};
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
  EDL_CHECK(c.steps >= 1, "--steps must be at least 1, got {}", c.steps);
  EDL_CHECK(c.batch_size >= 2, "--batch-size must be at least 2 (batch normalization needs two images), got {}",
            c.batch_size);
  EDL_CHECK(c.lr > 0, "--lr must be positive, got {}", c.lr);
  EDL_CHECK(c.subset >= 0 && c.eval_size >= 0, "--subset and --eval-size must not be negative");
  EDL_CHECK(c.warmup_steps >= 0 && c.warmup_steps < c.steps, "--warmup ({}) must be less than --steps ({})",
            c.warmup_steps, c.steps);
  EDL_CHECK(c.dataset == "cifar10" || c.dataset == "cifar100", "unknown dataset '{}' (known: cifar10, cifar100)",
            c.dataset);
}

nlohmann::json config_json(const TrainConfig& c) {
  return {{"model", c.model},       {"dataset", c.dataset},   {"steps", c.steps},
          {"batch_size", c.batch_size}, {"optimizer", c.optimizer}, {"lr", c.lr},
          {"momentum", c.momentum}, {"nesterov", c.nesterov}, {"weight_decay", c.weight_decay},
          {"schedule", c.schedule}, {"warmup_steps", c.warmup_steps}, {"label_smoothing", c.label_smoothing},
          {"seed", c.seed},         {"subset", c.subset},     {"eval_size", c.eval_size}};
}

}  // namespace

TrainResult train(const TrainConfig& c, std::ostream& log, bool live) {
  validate(c);
  // Everything that can fail on bad flags fails before the (slow) data loading.
  manual_seed(c.seed);
  const int64_t num_classes = c.dataset == "cifar10" ? 10 : 100;
  std::shared_ptr<Module> model = make_model(c.model, num_classes);
  std::unique_ptr<Optimizer> opt = make_optimizer(c, model->parameters());
  LrScheduleOptions so;
  so.kind = lr_kind_from_name(c.schedule);
  so.base_lr = c.lr;
  so.total_steps = c.steps;
  so.warmup_steps = so.kind == LrKind::onecycle ? 0 : c.warmup_steps;
  if (so.kind == LrKind::step) {  // x0.1 at 1/2 and 3/4 of the steps after warm-up
    const int64_t T = c.steps - so.warmup_steps;
    so.milestones = {std::max<int64_t>(1, T / 2), std::max<int64_t>(2, T * 3 / 4)};
  }
  LrSchedule schedule(so);

  const std::string dir = find_cifar_dir(c.dataset, c.data_dir);
  log << fmt::format("data: {} from {}\n", c.dataset, dir);
  const CifarSet train_set = load_cifar(dir, c.dataset, true), test_set = load_cifar(dir, c.dataset, false);
  const auto mean = c.dataset == "cifar10" ? kCifar10Mean : kCifar100Mean;
  const auto stddev = c.dataset == "cifar10" ? kCifar10Std : kCifar100Std;

  // The training images: all, or a seeded random subset (the course labs train on subsets).
  Rng rng(c.seed);
  std::vector<int64_t> pool(static_cast<size_t>(train_set.images.dim(0)));
  std::iota(pool.begin(), pool.end(), 0);
  auto shuffle = [&rng](std::vector<int64_t>& v) {  // Fisher-Yates with our portable generator
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[static_cast<size_t>(rng.integer(static_cast<int64_t>(i)))]);
  };
  if (c.subset > 0) {
    EDL_CHECK(c.subset <= static_cast<int64_t>(pool.size()), "--subset {} exceeds the {} training images", c.subset,
              pool.size());
    shuffle(pool);
    pool.resize(static_cast<size_t>(c.subset));
  }
  EDL_CHECK(c.batch_size <= static_cast<int64_t>(pool.size()), "--batch-size {} exceeds the {} training images",
            c.batch_size, pool.size());
  log << fmt::format("model: {} ({} parameters), {} training images, batch {}, {} steps, {} lr {} ({})\n", c.model,
                     model->num_parameters(), pool.size(), c.batch_size, c.steps, c.optimizer, c.lr, c.schedule);

  // ---- training ----
  TrainResult r;
  model->train();
  std::vector<int64_t> order = pool;
  shuffle(order);
  int64_t pos = 0, images_seen = 0;
  double window_loss = 0, window_correct = 0, window_images = 0;  // since the last report
  double tail_loss = 0, tail_correct = 0, tail_images = 0, tail_steps = 0;  // last 10% of steps
  const auto t0 = Clock::now();
  auto last_report = t0;
  for (int64_t step = 0; step < c.steps; ++step) {
    if (pos + c.batch_size > static_cast<int64_t>(order.size())) {  // next epoch
      shuffle(order);
      pos = 0;
    }
    auto [x, y] = make_batch(train_set, order, pos, pos + c.batch_size, mean, stddev);
    pos += c.batch_size;

    opt->set_lr(schedule.lr(step));
    Tensor logits = (*model)(x);
    Tensor loss = cross_entropy(logits, y, c.label_smoothing);
    opt->zero_grad();
    loss.backward();
    opt->step();

    const double l = loss.item();
    const int64_t correct = count_correct(logits, y);
    EDL_CHECK(std::isfinite(l), "training diverged at step {}: loss is {} (try a lower --lr)", step + 1, l);
    images_seen += c.batch_size;
    window_loss += l * static_cast<double>(c.batch_size), window_correct += static_cast<double>(correct),
        window_images += static_cast<double>(c.batch_size);
    if (step >= c.steps - std::max<int64_t>(1, c.steps / 10))
      tail_loss += l, tail_correct += static_cast<double>(correct), tail_images += static_cast<double>(c.batch_size),
          ++tail_steps;

    const bool last = step + 1 == c.steps;
    const bool due = live ? seconds_since(last_report) >= 0.5 : (step + 1) % std::max<int64_t>(1, c.steps / 10) == 0;
    if (due || last) {
      const double elapsed = seconds_since(t0), ips = static_cast<double>(images_seen) / elapsed;
      const double eta = static_cast<double>(c.steps - step - 1) * static_cast<double>(c.batch_size) / ips;
      log << fmt::format("{}step {:>{}}/{}  loss {:.4f}  acc {:5.1f}%  lr {:.4f}  {:.0f} img/s  ETA {}{}",
                         live ? "\r" : "", step + 1, std::to_string(c.steps).size(), c.steps,
                         window_loss / window_images, 100.0 * window_correct / window_images, schedule.lr(step), ips,
                         format_duration(eta), live ? "   " : "\n");
      log.flush();
      window_loss = window_correct = window_images = 0;
      last_report = Clock::now();
    }
  }
  if (live) log << "\n";
  r.seconds = seconds_since(t0);
  r.images_per_second = static_cast<double>(images_seen) / r.seconds;
  r.final_train_loss = tail_loss / tail_steps;
  r.final_train_accuracy = tail_correct / tail_images;

  // ---- evaluation on the test set ----
  model->eval();
  NoGradGuard no_grad;
  const int64_t n_test = c.eval_size > 0 ? std::min(c.eval_size, test_set.images.dim(0)) : test_set.images.dim(0);
  std::vector<int64_t> test_idx(static_cast<size_t>(n_test));
  std::iota(test_idx.begin(), test_idx.end(), 0);
  int64_t correct = 0;
  for (int64_t b = 0; b < n_test; b += 500) {
    auto [x, y] = make_batch(test_set, test_idx, b, std::min(n_test, b + 500), mean, stddev);
    correct += count_correct((*model)(x), y);
  }
  r.test_images = n_test;
  r.test_accuracy = static_cast<double>(correct) / static_cast<double>(n_test);
  log << fmt::format("done: {} steps in {} ({:.0f} img/s); train loss {:.4f}, train acc {:.1f}% (last 10% of steps); "
                     "test acc {:.2f}% on {} images\n",
                     c.steps, format_duration(r.seconds), r.images_per_second, r.final_train_loss,
                     100 * r.final_train_accuracy, 100 * r.test_accuracy, n_test);

  if (!c.out.empty()) {
    std::filesystem::create_directories(c.out);
    nlohmann::json j = config_json(c);
    j["result"] = {{"test_accuracy", r.test_accuracy}, {"test_images", r.test_images},
                   {"train_loss", r.final_train_loss}, {"train_accuracy", r.final_train_accuracy},
                   {"seconds", r.seconds},             {"images_per_second", r.images_per_second}};
    std::ofstream(c.out + "/config.json") << j.dump(2) << "\n";
    save_safetensors(c.out + "/model.safetensors", model->state_dict(),
                     {{"model", c.model}, {"dataset", c.dataset}, {"steps", std::to_string(c.steps)}});
    log << fmt::format("wrote {0}/config.json and {0}/model.safetensors\n", c.out);
  }
  return r;
}

}  // namespace edl
