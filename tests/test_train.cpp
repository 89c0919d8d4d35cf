// test_train.cpp — augmentation properties, the batch loader, and the training loop end to end
// on small CIFAR-10 files in the official layout (generated here): resume equals continuous,
// bad flags fail clearly, and (when the real data is present) a short run learns.
#include <catch2/catch.hpp>

#include <functional>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "data/augment.h"
#include "data/cifar.h"
#include "data/loader.h"
#include "engine/checkpoint.h"
#include "engine/evaluation.h"
#include "engine/optim.h"
#include "models/zoo.h"
#include "engine/trainer.h"

using namespace edl;
namespace fs = std::filesystem;

namespace {

// A scratch folder removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() / fmt::format("edl_test_train_{}_{}", static_cast<long>(getpid()), counter++);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

// CIFAR-10 files in the official layout with `per_file` random records each; the label is
// encoded in the image (the mean brightness of the red plane grows with it), so that a network
// can learn it.
void write_fake_cifar10(const fs::path& dir, int per_file) {
  Rng rng(42);
  auto write = [&](const std::string& name) {
    std::ofstream f(dir / name, std::ios::binary);
    for (int r = 0; r < per_file; ++r) {
      const int label = static_cast<int>(rng.integer(10));
      f.put(static_cast<char>(label));
      for (int i = 0; i < 3072; ++i) {
        const int base = i < 1024 ? label * 25 : 128;
        f.put(static_cast<char>(std::clamp<int>(base + static_cast<int>(rng.integer(30)), 0, 255)));
      }
    }
  };
  for (int b = 1; b <= 5; ++b) write(fmt::format("data_batch_{}.bin", b));
  write("test_batch.bin");
}

// The training images of write_fake_cifar10(dir, per_file), read back, and the pool of all of them.
struct FakeTrainingSet {
  CifarSet set;
  std::vector<int64_t> pool;
};
FakeTrainingSet fake_training_set(const fs::path& dir, int per_file) {
  write_fake_cifar10(dir, per_file);
  FakeTrainingSet f{load_cifar(dir.string(), "cifar10", true), std::vector<int64_t>(5 * per_file)};
  std::iota(f.pool.begin(), f.pool.end(), 0);
  return f;
}

Tensor random_u8_images(int64_t n, uint64_t seed) {
  Rng rng(seed);
  Tensor t = Tensor::empty({n, 3, 32, 32}, DType::u8);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<uint8_t>()[i] = static_cast<uint8_t>(rng.integer(256));
  return t;
}

}  // namespace

TEST_CASE("augment: crop without padding and flip mirrors rows exactly", "[augment]") {
  Tensor x = random_u8_images(64, 1);
  Rng rng(3);
  Tensor y = random_crop_flip(x, 0, true, rng);
  REQUIRE(y.shape() == x.shape());
  int mirrored = 0;
  for (int64_t n = 0; n < 64; ++n) {
    const uint8_t* a = x.data<uint8_t>() + n * 3072;
    const uint8_t* b = y.data<uint8_t>() + n * 3072;
    bool same = true, flipped = true;
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t h = 0; h < 32; ++h)
        for (int64_t w = 0; w < 32; ++w) {
          same &= b[(c * 32 + h) * 32 + w] == a[(c * 32 + h) * 32 + w];
          flipped &= b[(c * 32 + h) * 32 + w] == a[(c * 32 + h) * 32 + 31 - w];
        }
    CHECK((same || flipped));
    mirrored += flipped;
  }
  CHECK(mirrored > 16);  // about half of 64 (a binomial: 16..48 with overwhelming probability)
  CHECK(mirrored < 48);
}

TEST_CASE("augment: a crop is a shift with zero fill, and the same seed gives the same batch", "[augment]") {
  Tensor x = random_u8_images(8, 2);
  Rng r1(9), r2(9);
  Tensor a = random_crop_flip(x, 4, false, r1), b = random_crop_flip(x, 4, false, r2);
  CHECK(a.to_vector() == b.to_vector());
  // Each output image equals the input shifted by some (dy, dx) in [-4, 4]^2, zeros outside.
  for (int64_t n = 0; n < 8; ++n) {
    bool found = false;
    for (int dy = -4; dy <= 4 && !found; ++dy)
      for (int dx = -4; dx <= 4 && !found; ++dx) {
        bool ok = true;
        for (int64_t c = 0; c < 3 && ok; ++c)
          for (int64_t h = 0; h < 32 && ok; ++h)
            for (int64_t w = 0; w < 32 && ok; ++w) {
              const int64_t sh = h + dy, sw = w + dx;
              const uint8_t want = (sh >= 0 && sh < 32 && sw >= 0 && sw < 32) ? x.data<uint8_t>()[((n * 3 + c) * 32 + sh) * 32 + sw] : 0;
              ok = a.data<uint8_t>()[((n * 3 + c) * 32 + h) * 32 + w] == want;
            }
        found = ok;
      }
    CHECK(found);
  }
}

TEST_CASE("augment: translate is a shift by up to 2 pixels with reflected borders", "[augment]") {
  Tensor x = random_u8_images(8, 3);
  Rng rng(4);
  Tensor a = random_crop_flip(x, 2, false, rng, /*reflect=*/true);
  auto reflect = [](int64_t i) { return i < 0 ? -i : (i > 31 ? 62 - i : i); };
  int shifted = 0;
  for (int64_t n = 0; n < 8; ++n) {
    bool found = false;
    for (int dy = -2; dy <= 2 && !found; ++dy)
      for (int dx = -2; dx <= 2 && !found; ++dx) {
        bool ok = true;
        for (int64_t c = 0; c < 3 && ok; ++c)
          for (int64_t h = 0; h < 32 && ok; ++h)
            for (int64_t w = 0; w < 32 && ok; ++w)
              ok = a.data<uint8_t>()[((n * 3 + c) * 32 + h) * 32 + w] ==
                   x.data<uint8_t>()[((n * 3 + c) * 32 + reflect(h + dy)) * 32 + reflect(w + dx)];
        found = ok;
        shifted += ok && (dy != 0 || dx != 0);
      }
    CHECK(found);
  }
  CHECK(shifted >= 4);  // 24 of the 25 offsets move the image
  const AugmentConfig t = AugmentConfig::parse("translate,flip");
  CHECK((t.crop && t.crop_reflect && t.crop_padding == 2 && t.flip));
  CHECK(t.str() == "translate,flip");
  CHECK_THROWS_WITH(AugmentConfig::parse("crop,translate"), Catch::Contains("crop and translate are exclusive"));
}

TEST_CASE("augment: mixup and cutmix keep one unit of label mass per image", "[augment]") {
  Tensor labels = Tensor::from({6}, {0, 1, 2, 3, 4, 5}, DType::s32);
  for (bool cut : {false, true}) {
    Tensor x = Tensor::ones({6, 3, 32, 32});
    Tensor t = one_hot(labels, 10);
    Rng rng(5);
    const double lambda = cut ? cutmix_(x, t, 1.0, rng) : mixup_(x, t, 0.4, rng);
    CHECK(lambda >= 0);
    CHECK(lambda <= 1);
    for (int64_t n = 0; n < 6; ++n) {
      double mass = 0;
      for (int64_t k = 0; k < 10; ++k) mass += t.at(n * 10 + k);
      CHECK(mass == Approx(1.0).epsilon(1e-6));
      CHECK(t.at(n * 10 + n) >= std::min(lambda, 1 - lambda) - 1e-6);  // own label keeps its weight
    }
  }
}

TEST_CASE("augment: Beta samples have the right mean; cutout zeroes a square; names parse", "[augment]") {
  Rng rng(11);
  double s = 0;
  for (int i = 0; i < 20000; ++i) s += sample_beta(2.0, rng);
  CHECK(s / 20000 == Approx(0.5).margin(0.01));  // Beta(a, a) has mean 1/2
  Tensor x = Tensor::ones({4, 3, 32, 32});
  cutout_(x, 16, rng);
  for (int64_t n = 0; n < 4; ++n) {
    int64_t zeros = 0;
    for (int64_t i = 0; i < 3072; ++i) zeros += x.at(n * 3072 + i) == 0;
    CHECK(zeros > 0);
    CHECK(zeros <= 3 * 16 * 16);
  }
  CHECK(AugmentConfig::parse("crop,flip").str() == "crop,flip");
  CHECK_THROWS_WITH(AugmentConfig::parse("crop,rotate"), Catch::Contains("unknown augmentation 'rotate'"));
  CHECK_THROWS_WITH(AugmentConfig::parse("mixup,cutmix"), Catch::Contains("exclusive"));
}

TEST_CASE("loader: batches are a pure function of (seed, epoch, index), prefetched or not", "[loader]") {
  TempDir dir;
  const auto [set, pool] = fake_training_set(dir.path, 20);  // 100 images
  BatchLoader a(set, pool, 16, AugmentConfig::parse("crop,flip,cutout"), kCifar10Mean, kCifar10Std, 7, true, true);
  BatchLoader b(set, pool, 16, AugmentConfig::parse("crop,flip,cutout"), kCifar10Mean, kCifar10Std, 7, true, true);
  CHECK(a.batches_per_epoch() == 6);
  Batch a1 = a.get(1, 0), a2 = a.get(1, 1);  // sequential: the second was prefetched
  Batch b2 = b.get(1, 1);                    // direct
  CHECK(a2.images.to_vector() == b2.images.to_vector());
  CHECK(a2.labels.to_vector() == b2.labels.to_vector());
  CHECK(a1.labels.to_vector() != a.make(2, 0).labels.to_vector());  // another epoch, another order
}

TEST_CASE("augment: altflip shows each image both ways in any two epochs in a row", "[augment][loader]") {
  TempDir dir;
  const auto [set, pool] = fake_training_set(dir.path, 20);  // 100 images
  const AugmentConfig altflip = AugmentConfig::parse("altflip");
  CHECK(altflip.str() == "altflip");
  CHECK_THROWS_WITH(AugmentConfig::parse("flip,altflip"), Catch::Contains("exclusive"));
  BatchLoader loader(set, pool, 20, altflip, kCifar10Mean, kCifar10Std, 3, true, true);
  const Tensor plain = normalize_images(set.images, kCifar10Mean, kCifar10Std);
  const Tensor mirrored = [&] {  // every image mirrored, by hand
    Tensor m = plain.clone();
    for (int64_t r = 0; r < m.numel() / 32; ++r) std::reverse(m.data<float>() + r * 32, m.data<float>() + (r + 1) * 32);
    return m;
  }();
  // orientation[e][k]: +1 if epoch e showed image k as it is, -1 mirrored; each image must
  // appear once per epoch and match one of the two exactly.
  auto orientations = [&](int64_t epoch) {
    std::vector<int> o(100, 0);
    for (int64_t b = 0; b < loader.batches_per_epoch(); ++b) {
      const Batch batch = loader.make(epoch, b);
      for (int64_t i = 0; i < 20; ++i) {
        const float* img = batch.images.data<float>() + i * 3072;
        int found = 0;
        for (int64_t k = 0; k < 100 && !found; ++k) {
          if (std::equal(img, img + 3072, plain.data<float>() + k * 3072)) found = 1, o[static_cast<size_t>(k)] += 1;
          else if (std::equal(img, img + 3072, mirrored.data<float>() + k * 3072)) found = 1, o[static_cast<size_t>(k)] -= 1;
        }
        CHECK(found);
      }
    }
    return o;
  };
  const std::vector<int> e0 = orientations(0), e1 = orientations(1), e2 = orientations(2);
  int mirrored_in_e0 = 0;
  for (size_t k = 0; k < 100; ++k) {
    CHECK(std::abs(e0[k]) == 1);
    CHECK(e1[k] == -e0[k]);  // the other way in the next epoch
    CHECK(e2[k] == e0[k]);
    mirrored_in_e0 += e0[k] < 0;
  }
  CHECK(mirrored_in_e0 > 30);  // a fair coin per image: 50 ± 5 expected
  CHECK(mirrored_in_e0 < 70);
}

// The set with every image's pixels rearranged: out[h][w] = in[map(h, w)].
static CifarSet remapped(const CifarSet& set, const std::function<std::pair<int64_t, int64_t>(int64_t, int64_t)>& map) {
  CifarSet out = set;
  out.images = Tensor::empty(set.images.shape(), DType::u8);
  const int64_t planes = set.images.dim(0) * set.images.dim(1);
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t h = 0; h < 32; ++h)
      for (int64_t w = 0; w < 32; ++w) {
        const auto [sh, sw] = map(h, w);
        out.images.data<uint8_t>()[(p * 32 + h) * 32 + w] = set.images.data<uint8_t>()[(p * 32 + sh) * 32 + sw];
      }
  return out;
}

TEST_CASE("eval: test-time augmentation averages the logits of the mirrored and moved images", "[train]") {
  CifarSet set;
  set.images = random_u8_images(7, 5);
  set.labels = Tensor::from({7}, {0, 1, 2, 3, 4, 5, 6}, DType::s32);
  set.num_classes = 10;
  auto reflect = [](int64_t i) { return i < 0 ? -i : (i > 31 ? 62 - i : i); };
  auto mirror = [](int64_t h, int64_t w) { return std::pair<int64_t, int64_t>{h, 31 - w}; };
  // Moved one pixel down-right (out[h][w] = in[h-1][w-1]) and up-left, borders reflected; and mirrored.
  auto up_left = [&](int64_t h, int64_t w) { return std::pair<int64_t, int64_t>{reflect(h - 1), reflect(w - 1)}; };
  auto down_right = [&](int64_t h, int64_t w) { return std::pair<int64_t, int64_t>{reflect(h + 1), reflect(w + 1)}; };
  auto mirrored_then = [&](auto shift) {
    // The mirror image of the moved image: out[h][w] = moved[h][31 - w].
    return [&, shift](int64_t h, int64_t w) { return shift(h, 31 - w); };
  };
  manual_seed(3);
  auto net = make_model("small_cnn", 10);
  const std::array<float, 3> mean{0.5f, 0.4f, 0.3f}, stddev{0.2f, 0.25f, 0.3f};
  auto logits_of = [&](const CifarSet& s) { return evaluate_model(*net, s, mean, stddev, 0, true).logits; };
  const Tensor plain = logits_of(set), flipped = logits_of(remapped(set, mirror));
  const Tensor a = logits_of(remapped(set, up_left)), a_flipped = logits_of(remapped(set, mirrored_then(up_left)));
  const Tensor b = logits_of(remapped(set, down_right)), b_flipped = logits_of(remapped(set, mirrored_then(down_right)));
  const Evaluation tta = evaluate_model(*net, set, mean, stddev, 0, true, Tta::flip);
  const Evaluation tta2 = evaluate_model(*net, set, mean, stddev, 0, true, Tta::translate);
  REQUIRE(tta.logits.shape() == Shape{7, 10});
  REQUIRE(tta2.logits.shape() == Shape{7, 10});
  for (int64_t i = 0; i < 70; ++i) {
    const double want = 0.5 * (plain.at(i) + flipped.at(i));
    CHECK(tta.logits.at(i) == Approx(want).margin(1e-6));
    CHECK(std::abs(plain.at(i) - flipped.at(i)) > 0);  // the mirror is a different input
    const double want2 = 0.5 * want + 0.125 * (a.at(i) + a_flipped.at(i) + b.at(i) + b_flipped.at(i));
    CHECK(tta2.logits.at(i) == Approx(want2).margin(1e-6));
    CHECK(std::abs(a.at(i) - plain.at(i)) > 0);
  }
  CHECK(tta_from_name("translate") == Tta::translate);
  CHECK_THROWS_WITH(tta_from_name("rotate"), Catch::Contains("unknown test-time augmentation 'rotate'"));
}

TEST_CASE("train: resuming equals not stopping", "[train]") {
  TempDir dir;
  write_fake_cifar10(dir.path, 16);  // 80 training images: 5 steps of 16 per epoch
  TrainConfig c;
  c.model = "small_cnn";
  c.data_dir = dir.path.string();
  c.epochs = 2;
  c.batch_size = 16;
  c.lr = 0.05;
  c.warmup_epochs = 0.4;
  c.eval_size = 16;
  c.threads = 1;
  SECTION("small_cnn, the defaults") {}
  int64_t total_steps = 10;
  SECTION("airbench: whitening, Lookahead (slow weights in the checkpoint), BatchNorm lr scale, no evaluation") {
    // 6 steps per epoch: Lookahead starts at step 5 and resets the model at the end of each epoch.
    c.batch_size = 12;
    total_steps = 12;
    c.model = "airbench";
    c.lookahead = true;
    c.bn_lr_scale = 8;
    c.eval_every = 0;
    c.augment = "translate,flip";
    c.schedule = "linear";
    c.freeze_stem_bias = 1;  // frozen from step 6: before the stop at 7, and after the resume
  }
  std::ostringstream log;

  c.out = (dir.path / "continuous").string();
  TrainResult whole = train(c, log, false);
  CHECK(whole.steps == total_steps);

  c.out = (dir.path / "stopped").string();
  c.max_steps = 7;  // stop inside the second epoch
  TrainResult first = train(c, log, false);
  CHECK(first.steps == 7);
  c.max_steps = 0;
  c.resume = true;
  TrainResult second = train(c, log, false);
  CHECK(second.steps == total_steps);

  NamedTensors x = load_safetensors((dir.path / "continuous/last.safetensors").string());
  NamedTensors y = load_safetensors((dir.path / "stopped/last.safetensors").string());
  REQUIRE(x.size() == y.size());
  for (size_t i = 0; i < x.size(); ++i) {
    INFO(x[i].first);
    CHECK(x[i].first == y[i].first);
    CHECK(x[i].second.to_vector() == y[i].second.to_vector());
  }
}

TEST_CASE("train: --freeze-stem-bias stops training airbench's stem bias after that many epochs", "[train]") {
  TempDir dir;
  write_fake_cifar10(dir.path, 16);  // 80 training images: 6 steps of 12 per epoch (8 images left out)
  TrainConfig c;
  c.model = "airbench";
  c.data_dir = dir.path.string();
  c.epochs = 1;
  c.batch_size = 12;
  c.lr = 0.05;
  c.eval_every = 0;
  c.eval_size = 16;
  c.threads = 1;
  c.warmup_epochs = 0.5;
  c.freeze_stem_bias = 0.5;  // the first 3 steps
  std::ostringstream log;
  auto stem_bias_after = [&](const std::string& run, int64_t max_steps) {
    TrainConfig r = c;
    r.out = (dir.path / run).string();
    r.max_steps = max_steps;
    train(r, log, false);
    for (const auto& [name, t] : load_safetensors(r.out + "/last.safetensors"))
      if (name == "stem.bias") return t.to_vector();
    FAIL("no stem.bias in the checkpoint");
    return std::vector<double>{};
  };
  const std::vector<double> at3 = stem_bias_after("three", 3), at6 = stem_bias_after("six", 0);
  CHECK(at3 != std::vector<double>(24, 0.0));  // trained (airbench starts it at 0)
  CHECK(at6 == at3);                           // then frozen: no gradient, no weight decay, no momentum
  CHECK(log.str().find("bias trained for the first 3 steps (0.5 epochs), then frozen") != std::string::npos);
  TrainConfig resumed = c;  // resuming with another freeze would train a different run: refused
  resumed.out = (dir.path / "three").string();
  resumed.resume = true;
  resumed.freeze_stem_bias = 1;
  CHECK_THROWS_WITH(train(resumed, log, false), Catch::Contains("used freeze_stem_bias=0.5"));
  c.freeze_stem_bias = -1;
  CHECK(stem_bias_after("never", 0) != at3);
}

TEST_CASE("train: --bn-lr-scale scales exactly the BatchNorm parameters", "[train]") {
  auto net = make_model("resnet20", 10);
  SGD opt(net->parameters(), 0.1, 0.9, true, 5e-4);
  scale_batch_norm_params(*net, opt, 64);
  const NamedTensors named = net->named_parameters();
  REQUIRE(named.size() == opt.params().size());
  int64_t scaled = 0;
  for (size_t i = 0; i < named.size(); ++i) {
    INFO(named[i].first);
    const bool bn = named[i].first.find("bn") != std::string::npos;  // akamaster's names: bn1, layer1.0.bn2, ...
    CHECK(opt.lr_scale(i) == (bn ? 64.0 : 1.0));
    CHECK(opt.weight_decay_scale(i) == (bn ? 1.0 / 64 : 1.0));
    scaled += bn;
  }
  CHECK(scaled == 2 * 19);  // weight and bias of 19 BatchNorms
}

TEST_CASE("train: bad flags and missing data give clear errors", "[train]") {
  TempDir dir;
  TrainConfig c;
  c.model = "small_cnn";
  c.out = (dir.path / "run").string();
  std::ostringstream log;
  TrainConfig bad = c;
  bad.model = "resnet1000";
  CHECK_THROWS_WITH(train(bad, log, false), Catch::Contains("unknown model 'resnet1000'"));
  bad = c;
  bad.optimizer = "rmsprop";
  CHECK_THROWS_WITH(train(bad, log, false), Catch::Contains("unknown optimizer 'rmsprop'"));
  bad = c;
  bad.schedule = "exponential";
  CHECK_THROWS_WITH(train(bad, log, false), Catch::Contains("unknown learning-rate schedule 'exponential'"));
  bad = c;
  bad.epochs = 0;
  CHECK_THROWS_WITH(train(bad, log, false), Catch::Contains("--epochs must be at least 1"));
  bad = c;
  bad.bn_lr_scale = 0;
  CHECK_THROWS_WITH(train(bad, log, false), Catch::Contains("--bn-lr-scale must be positive"));
  bad = c;
  bad.eval_every = -1;
  CHECK_THROWS_WITH(train(bad, log, false), Catch::Contains("--eval-every must not be negative"));
  bad = c;
  bad.freeze_stem_bias = 3;
  CHECK_THROWS_WITH(train(bad, log, false), Catch::Contains("--freeze-stem-bias applies to --model airbench"));
  bad.model = "airbench";
  bad.freeze_stem_bias = std::nan("");
  CHECK_THROWS_WITH(train(bad, log, false), Catch::Contains("--freeze-stem-bias must be -1 (never) or a number of epochs"));
  bad.freeze_stem_bias = -2;
  CHECK_THROWS_WITH(train(bad, log, false), Catch::Contains("--freeze-stem-bias must be -1 (never) or a number of epochs"));
  bad = c;
  bad.tta = "rotate";
  CHECK_THROWS_WITH(train(bad, log, false), Catch::Contains("--tta: unknown test-time augmentation 'rotate'"));
  bad = c;
  bad.data_dir = (dir.path / "nowhere").string();
  CHECK_THROWS_WITH(train(bad, log, false), Catch::Contains("nowhere"));
  bad = c;
  bad.resume = true;
  bad.batch_size = 4;
  write_fake_cifar10(dir.path, 4);
  bad.data_dir = dir.path.string();
  CHECK_THROWS_WITH(train(bad, log, false), Catch::Contains("no checkpoint to resume from"));
}

TEST_CASE("train: a few hundred steps on the real CIFAR-10 reach well above chance (skipped without it)", "[train]") {
  std::string dir;
  try {
    dir = find_cifar_dir("cifar10");  // --data-dir's search: $EDL_DATA_DIR, ./data, ../shared/data
  } catch (const Error&) {
    WARN("SKIPPED: the real CIFAR-10 is not on this machine; set EDL_DATA_DIR to run this test");
    return;
  }
  TempDir out;
  TrainConfig c;
  c.model = "small_cnn";
  c.data_dir = dir;
  c.subset = 300 * 64;  // one epoch of 300 steps on a seeded random 19200 training images
  c.batch_size = 64;
  c.epochs = 1;
  c.lr = 0.1;
  c.warmup_epochs = 0.1;
  c.eval_size = 2000;
  c.out = (out.path / "run").string();
  std::ostringstream log;
  TrainResult r = train(c, log, false);
  INFO(log.str());
  CHECK(r.steps == 300);
  CHECK(r.train_loss < 2.0);       // from ln(10) = 2.30 at the start (1.85 in a run here)
  CHECK(r.test_accuracy > 0.35);   // chance is 0.10 (43% in a run here)
}
