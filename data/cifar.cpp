// cifar.cpp — reading the binary CIFAR-10/100 files (layout in cifar.h and on
// https://www.cs.toronto.edu/~kriz/cifar.html), finding them on disk, normalizing images.
//
// Every file is checked before it is trusted: its size must be a whole number of records and
// every label byte must be in range. Both checks catch the usual accidents (a download cut
// short, the CIFAR-100 folder given for CIFAR-10) with a message instead of garbage training.
//
// Tests: ctest --test-dir build -R cifar
#include "data/cifar.h"

#include <algorithm>

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace edl {

namespace fs = std::filesystem;

namespace {

// What differs between the two datasets.
struct Layout {
  const char* title;   // "CIFAR-10"
  const char* folder;  // the folder the official archive unpacks to
  const char* url;     // the official archive
  std::vector<std::string> train_files, test_files;
  int64_t label_bytes;  // CIFAR-10: 1 (label); CIFAR-100: 2 (coarse, fine)
};

constexpr int64_t kImageBytes = 3 * 32 * 32;

const Layout& layout_of(const std::string& dataset) {
  static const Layout cifar10{"CIFAR-10",
                              "cifar-10-batches-bin",
                              "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
                              {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
                               "data_batch_5.bin"},
                              {"test_batch.bin"},
                              1};
  static const Layout cifar100{"CIFAR-100",
                               "cifar-100-binary",
                               "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
                               {"train.bin"},
                               {"test.bin"},
                               2};
  if (dataset == "cifar10") return cifar10;
  if (dataset == "cifar100") return cifar100;
  throw Error(fmt::format("unknown dataset '{}' (known: cifar10, cifar100)", dataset));
}

// The paragraph every "not found" error ends with.
std::string how_to_get(const Layout& L) {
  return fmt::format(
      "To get {0}: run `edl download --dataset {4} --data-dir data` (it fetches {1}, checks its MD5 and "
      "unpacks it into data/{3}/; without internet, copy {2} into data/ by hand first). Then pass "
      "--data-dir <folder>, or set the environment variable EDL_DATA_DIR to it.",
      L.title, L.url, fs::path(L.url).filename().string(), L.folder, std::string_view(L.title) == "CIFAR-10" ? "cifar10" : "cifar100");
}

// A directory "holds" a dataset if any of its .bin files is there; load_cifar then checks
// each file it needs and names the one that is missing.
bool holds_dataset(const fs::path& dir, const Layout& L) {
  std::error_code ec;
  for (const auto* files : {&L.train_files, &L.test_files})
    for (const std::string& f : *files)
      if (fs::is_regular_file(dir / f, ec)) return true;
  return false;
}

// The source tree (the project's checkout). The tests get it as a compile definition; the
// library finds it from this file's own path, data/cifar.cpp, which CMake passes to the
// compiler as an absolute path.
fs::path source_dir() {
#ifdef EDL_SOURCE_DIR
  return fs::path(EDL_SOURCE_DIR);
#else
  return fs::path(__FILE__).parent_path().parent_path();
#endif
}

std::string absolute_str(const fs::path& p) {
  std::error_code ec;
  fs::path a = fs::absolute(p, ec);
  return (ec ? p : a).lexically_normal().string();
}

// Class names, one per line; blank lines (the official files end with some) are skipped.
std::vector<std::string> read_names(const fs::path& file, int64_t expected) {
  std::vector<std::string> names;
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) return names;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    if (!line.empty()) names.push_back(line);
  }
  EDL_CHECK(static_cast<int64_t>(names.size()) == expected, "load_cifar: {}: {} class names, expected {}",
            file.string(), names.size(), expected);
  return names;
}

}  // namespace

// ---- load_cifar -------------------------------------------------------------------------------

CifarSet load_cifar(const std::string& dir, const std::string& dataset, bool train, const std::string& label_kind) {
  const Layout& L = layout_of(dataset);
  const bool cifar100 = L.label_bytes == 2;
  if (cifar100)
    EDL_CHECK(label_kind == "fine" || label_kind == "coarse",
              "load_cifar: unknown CIFAR-100 label kind '{}' (known: fine, coarse)", label_kind);
  else
    EDL_CHECK(label_kind == "fine", "load_cifar: label kind '{}' applies to CIFAR-100 only; CIFAR-10 has one label",
              label_kind);
  const bool coarse = cifar100 && label_kind == "coarse";

  CifarSet set;
  set.num_classes = !cifar100 ? 10 : coarse ? 20 : 100;
  const int64_t record_bytes = L.label_bytes + kImageBytes;
  const std::vector<std::string>& files = train ? L.train_files : L.test_files;

  // 1. Every file must exist and be a whole number of records; this also counts the images.
  std::error_code ec;
  EDL_CHECK(fs::is_directory(dir, ec), "load_cifar: {} directory '{}' does not exist. {}", L.title,
            absolute_str(dir), how_to_get(L));
  std::string file_list;
  for (const std::string& name : files) file_list += (file_list.empty() ? "" : ", ") + name;
  int64_t total = 0;
  for (const std::string& name : files) {
    fs::path file = fs::path(dir) / name;
    EDL_CHECK(fs::is_regular_file(file, ec), "load_cifar: {} not found ({} {} data is {} in '{}'). {}",
              absolute_str(file), L.title, train ? "training" : "test", file_list, absolute_str(dir),
              how_to_get(L));
    auto size = static_cast<int64_t>(fs::file_size(file, ec));
    EDL_CHECK(!ec && size > 0 && size % record_bytes == 0,
              "load_cifar: {}: {} bytes is not a whole number of {}-byte records: truncated or not a {} file",
              file.string(), size, record_bytes, L.title);
    total += size / record_bytes;
  }

  // 2. Read the records: labels after checking them, pixels copied as they are (cifar.h).
  set.images = Tensor::empty({total, 3, 32, 32}, DType::u8);
  set.labels = Tensor::empty({total}, DType::s32);
  uint8_t* images = set.images.data<uint8_t>();
  int32_t* labels = set.labels.data<int32_t>();
  int64_t n = 0;
  std::vector<uint8_t> buffer;
  for (const std::string& name : files) {
    fs::path file = fs::path(dir) / name;
    buffer.resize(fs::file_size(file));
    std::ifstream in(file, std::ios::binary);
    in.read(reinterpret_cast<char*>(buffer.data()), static_cast<std::streamsize>(buffer.size()));
    EDL_CHECK(in.good(), "load_cifar: {}: read error", file.string());

    const int64_t records = static_cast<int64_t>(buffer.size()) / record_bytes;
    for (int64_t r = 0; r < records; ++r, ++n) {
      const uint8_t* record = buffer.data() + r * record_bytes;
      if (cifar100) {
        EDL_CHECK(record[0] < 20 && record[1] < 100,
                  "load_cifar: {}: record {} has coarse label {} and fine label {}, expected 0..19 and 0..99: "
                  "not a CIFAR-100 file",
                  file.string(), r, record[0], record[1]);
        labels[n] = coarse ? record[0] : record[1];
      } else {
        EDL_CHECK(record[0] < 10, "load_cifar: {}: record {} has label {}, expected 0..9: not a CIFAR-10 file",
                  file.string(), r, record[0]);
        labels[n] = record[0];
      }
      std::memcpy(images + n * kImageBytes, record + L.label_bytes, kImageBytes);
    }
  }

  // 3. Class names, when the names file is there.
  const char* names_file = !cifar100 ? "batches.meta.txt" : coarse ? "coarse_label_names.txt" : "fine_label_names.txt";
  set.class_names = read_names(fs::path(dir) / names_file, set.num_classes);
  return set;
}

// ---- find_cifar_dir ---------------------------------------------------------------------------

std::string find_cifar_dir(const std::string& dataset, const std::string& explicit_dir) {
  const Layout& L = layout_of(dataset);
  std::error_code ec;

  // 1. An explicit directory is a promise: if it is wrong, say so rather than look elsewhere.
  if (!explicit_dir.empty()) {
    EDL_CHECK(fs::is_directory(explicit_dir, ec), "find_cifar_dir: the data directory '{}' does not exist. {}",
              absolute_str(explicit_dir), how_to_get(L));
    if (!holds_dataset(explicit_dir, L) && holds_dataset(fs::path(explicit_dir) / L.folder, L))
      return absolute_str(fs::path(explicit_dir) / L.folder);
    return absolute_str(explicit_dir);  // load_cifar names any file that is missing
  }

  // 2-4. The usual places, in order.
  std::vector<fs::path> candidates;
  const char* env = std::getenv("EDL_DATA_DIR");
  if (env && *env) {
    candidates.push_back(env);
    candidates.push_back(fs::path(env) / L.folder);
  }
  for (const fs::path& base : {fs::current_path(ec), source_dir()}) {
    if (base.empty()) continue;
    candidates.push_back(base / "data" / L.folder);
    candidates.push_back(base / ".." / "shared" / "data" / L.folder);
  }
  std::string looked;
  std::vector<std::string> seen;  // the working directory is often the source tree: list each place once
  for (const fs::path& dir : candidates) {
    if (holds_dataset(dir, L)) return absolute_str(dir);
    const std::string where = absolute_str(dir);
    if (std::find(seen.begin(), seen.end(), where) != seen.end()) continue;
    seen.push_back(where);
    looked += "\n  " + where;
  }
  throw Error(fmt::format("find_cifar_dir: {} not found. Looked in ($EDL_DATA_DIR {}):{}\n{}", L.title,
                          env && *env ? fmt::format("= '{}'", env) : "is not set", looked, how_to_get(L)));
}

// ---- normalize_images -------------------------------------------------------------------------

Tensor normalize_images(const Tensor& u8_images, const std::array<float, 3>& mean, const std::array<float, 3>& stddev) {
  EDL_CHECK(u8_images.dtype() == DType::u8 && u8_images.ndim() == 4 && u8_images.dim(1) == 3,
            "normalize_images: expected u8 images (N,3,H,W), got {} {}", dtype_name(u8_images.dtype()),
            shape_str(u8_images.shape()));
  for (int c = 0; c < 3; ++c)
    EDL_CHECK(stddev[c] > 0, "normalize_images: stddev[{}] = {} must be positive", c, stddev[c]);

  // A pixel has only 256 values, so each channel's results are computed once into a table.
  // Same float operations as torchvision: x / 255, then (x - mean) / std.
  float table[3][256];
  for (int c = 0; c < 3; ++c)
    for (int v = 0; v < 256; ++v) table[c][v] = (static_cast<float>(v) / 255.0f - mean[c]) / stddev[c];

  const int64_t N = u8_images.dim(0), HW = u8_images.dim(2) * u8_images.dim(3);
  Tensor y = Tensor::empty(u8_images.shape(), DType::f32);
  const uint8_t* x = u8_images.data<uint8_t>();
  float* out = y.data<float>();
#pragma omp parallel for
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < 3; ++c) {
      const uint8_t* xc = x + (n * 3 + c) * HW;
      float* yc = out + (n * 3 + c) * HW;
      for (int64_t i = 0; i < HW; ++i) yc[i] = table[c][xc[i]];
    }
  return y;
}

}  // namespace edl
