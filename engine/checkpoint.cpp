// checkpoint.cpp — the safetensors writer (atomic), the validating reader, load_state_dict.
//
// Format: https://github.com/huggingface/safetensors (README, "Format"); the checks of the
// reader follow the reference implementation (safetensors/src/tensor.rs, read_metadata and
// Metadata::validate): header at most 100 MB, byte ranges sorted by offset must tile the data
// section exactly, each range must hold exactly numel × dtype size bytes. One difference on
// writing: the reference writer reorders tensors (by dtype alignment, then name); we keep the
// order given, which the format allows, so that a file reads in the order of the model.
//
// Tests: ctest --test-dir build -R checkpoint
#include "engine/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <system_error>

namespace edl {

namespace fs = std::filesystem;

// The data section is copied byte for byte between the file and memory, which is right only
// on a little-endian machine. x86-64 and ARM64 (every PC and Mac a student has) are.
static_assert(std::endian::native == std::endian::little,
              "checkpoint.cpp copies little-endian tensor data as is; add byte swapping for this CPU");

namespace {

// MAX_HEADER_SIZE of the reference implementation: a larger header is a corrupt length field.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DTypeName {
  DType dtype;
  const char* name;
};
constexpr DTypeName kDTypeNames[] = {{DType::f32, "F32"}, {DType::f64, "F64"}, {DType::s8, "I8"},
                                     {DType::u8, "U8"},   {DType::s32, "I32"}, {DType::s64, "I64"}};
constexpr const char* kSupported = "F32 F64 I8 U8 I32 I64";

bool dtype_from_safetensors(const std::string& name, DType* out) {
  for (const DTypeName& d : kDTypeNames)
    if (name == d.name) {
      *out = d.dtype;
      return true;
    }
  return false;
}

std::string errno_message() { return std::error_code(errno, std::generic_category()).message(); }

// ---- writing --------------------------------------------------------------------------------

// A file descriptor to a temporary file that is deleted unless commit() renamed it into place.
class TempFile {
 public:
  TempFile(std::string tmp_path, std::string target, const char* who)
      : tmp_(std::move(tmp_path)), target_(std::move(target)), who_(who) {
    // O_EXCL: never reuse (and clobber) a file that happens to have our temporary name.
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    EDL_CHECK(fd_ >= 0, "{}: {}: cannot create the temporary file {}: {}", who_, target_, tmp_,
              errno_message());
  }
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  void write(const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {  // write() may write less than asked (signals, pipes): loop until done
      ssize_t k = ::write(fd_, p, n);
      if (k < 0 && errno == EINTR) continue;
      EDL_CHECK(k > 0, "{}: {}: writing {} failed: {}", who_, target_, tmp_, errno_message());
      p += k;
      n -= static_cast<size_t>(k);
    }
  }

  // fsync makes the bytes durable before the rename makes them visible: without it, a crash
  // soon after the rename can leave a file of the right name and size full of zeros.
  // (On macOS, fsync reaches the drive but not its cache; fcntl(F_FULLFSYNC) would.)
  void commit() {
    EDL_CHECK(::fsync(fd_) == 0, "{}: {}: fsync of {} failed: {}", who_, target_, tmp_, errno_message());
    int rc = ::close(fd_);
    fd_ = -1;
    EDL_CHECK(rc == 0, "{}: {}: closing {} failed: {}", who_, target_, tmp_, errno_message());
    EDL_CHECK(::rename(tmp_.c_str(), target_.c_str()) == 0, "{}: {}: renaming {} to it failed: {}",
              who_, target_, tmp_, errno_message());
    committed_ = true;
  }

 private:
  std::string tmp_, target_;
  const char* who_;
  int fd_ = -1;
  bool committed_ = false;
};

// Makes the rename itself durable by syncing the directory entry. Best effort: some file
// systems do not allow it, and the checkpoint is already complete under its name.
void sync_directory(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::fsync(fd);
  ::close(fd);
}

// Writes a file through `write(TempFile&)` under a temporary name in the same directory (rename
// is atomic only within one file system), makes it durable, then renames it over `path`.
template <typename WriteFn>
void write_atomically(const std::string& path, const char* who, WriteFn&& write) {
  static std::atomic<int> counter{0};
  fs::path target(path);
  std::string tmp = fmt::format("{}.tmp.{}.{}", path, static_cast<long>(::getpid()), counter++);
  TempFile file(tmp, path, who);
  write(file);
  file.commit();
  sync_directory(target.has_parent_path() ? target.parent_path() : fs::path("."));
}

// ---- reading --------------------------------------------------------------------------------

// One tensor as the header describes it, before its data is read.
struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;  // [begin, end) in the data section
};

template <typename... Args>
[[noreturn]] void fail(const std::string& path, fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format("load_safetensors: {}: {}", path, fmt::format(format, std::forward<Args>(args)...)));
}

// Checks and converts one header entry {"dtype": .., "shape": [..], "data_offsets": [b, e]}.
Entry parse_entry(const std::string& path, const std::string& name, const nlohmann::ordered_json& info) {
  if (!info.is_object()) fail(path, "tensor '{}': entry is {}, expected a JSON object", name, info.dump());
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!info.contains(key)) fail(path, "tensor '{}': entry has no \"{}\" ({})", name, key, info.dump());

  Entry e;
  e.name = name;
  const auto& dtype = info["dtype"];
  if (!dtype.is_string()) fail(path, "tensor '{}': \"dtype\" is {}, expected a string", name, dtype.dump());
  if (!dtype_from_safetensors(dtype.get<std::string>(), &e.dtype))
    fail(path, "tensor '{}': dtype {} is not supported (edl reads {}; convert it to F32 before saving)", name,
         dtype.get<std::string>(), kSupported);

  // Sizes are checked against this bound as they are multiplied, so that a corrupt shape such
  // as [2^40, 2^40] is reported instead of overflowing.
  constexpr uint64_t kMaxBytes = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  const auto& shape = info["shape"];
  if (!shape.is_array()) fail(path, "tensor '{}': \"shape\" is {}, expected a list of sizes", name, shape.dump());
  uint64_t numel = 1;
  for (const auto& d : shape) {
    // nlohmann stores non-negative JSON integers as unsigned, negative ones as signed.
    if (!d.is_number_unsigned())
      fail(path, "tensor '{}': \"shape\" {} holds {}, expected non-negative integers", name, shape.dump(), d.dump());
    uint64_t size = d.get<uint64_t>();
    if (size != 0 && numel > kMaxBytes / dtype_size(e.dtype) / size)
      fail(path, "tensor '{}': shape {} is impossibly large", name, shape.dump());
    numel *= size;
    e.shape.push_back(static_cast<int64_t>(size));
  }

  const auto& offsets = info["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned() || offsets[0].get<uint64_t>() > offsets[1].get<uint64_t>())
    fail(path, "tensor '{}': \"data_offsets\" is {}, expected [begin, end] with 0 <= begin <= end", name,
         offsets.dump());
  e.begin = offsets[0].get<uint64_t>();
  e.end = offsets[1].get<uint64_t>();

  uint64_t nbytes = numel * dtype_size(e.dtype);
  if (e.end - e.begin != nbytes)
    fail(path, "tensor '{}': shape {} of {} needs {} bytes, but data_offsets [{}, {}] hold {} bytes", name,
         shape_str(e.shape), dtype.get<std::string>(), nbytes, e.begin, e.end, e.end - e.begin);
  return e;
}

}  // namespace

const char* safetensors_dtype_name(DType t) {
  for (const DTypeName& d : kDTypeNames)
    if (d.dtype == t) return d.name;
  throw Error(fmt::format("safetensors has no dtype for edl's {}", dtype_name(t)));
}

// ---- save -------------------------------------------------------------------------------------

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  // 1. Check everything and build the header before touching the disk. ordered_json keeps
  //    keys in insertion order: "__metadata__" first (as the reference writer does), then the
  //    tensors in the order given.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    auto& m = header["__metadata__"] = nlohmann::ordered_json::object();
    for (const auto& [key, value] : metadata) m[key] = value;
  }
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    EDL_CHECK(name != "__metadata__", "save_safetensors: {}: \"__metadata__\" is reserved and cannot name a tensor",
              path);
    EDL_CHECK(seen.insert(name).second, "save_safetensors: {}: duplicate tensor name '{}'", path, name);
    EDL_CHECK(t.defined(), "save_safetensors: {}: tensor '{}' is undefined", path, name);
    EDL_CHECK(t.dtype() != DType::b1,
              "save_safetensors: {}: tensor '{}' has dtype b1 (bit-packed), which safetensors cannot store; "
              "save t.to(DType::s8) (+-1 values) or the packed bytes as a u8 tensor instead",
              path, name);
    uint64_t nbytes = t.nbytes();
    nlohmann::ordered_json entry;
    entry["dtype"] = safetensors_dtype_name(t.dtype());
    entry["shape"] = t.shape();
    entry["data_offsets"] = nlohmann::ordered_json::array({offset, offset + nbytes});
    header[name] = std::move(entry);
    offset += nbytes;
  }
  std::string text;
  try {
    text = header.dump();  // compact: {"a":{"dtype":"F32",...}}
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("save_safetensors: {}: tensor names and metadata must be valid UTF-8 ({})", path, e.what()));
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // pad so that the data starts 8-byte aligned

  // 2. Write a temporary file next to the target (rename is atomic only within one file
  //    system), make it durable, then rename it over the target.
  uint8_t n_le[8];
  for (int i = 0; i < 8; ++i) n_le[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));
  write_atomically(path, "save_safetensors", [&](TempFile& file) {
    file.write(n_le, sizeof n_le);
    file.write(text.data(), text.size());
    for (const auto& [name, t] : tensors) file.write(t.raw(), t.nbytes());
  });
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  write_atomically(path, "write_file_atomic", [&](TempFile& file) { file.write(contents.data(), contents.size()); });
}

// ---- load -------------------------------------------------------------------------------------

NamedTensors load_safetensors(const std::string& path, std::map<std::string, std::string>* metadata) {
  std::error_code ec;
  if (!fs::exists(path, ec)) fail(path, "file not found");
  if (fs::is_directory(path, ec)) fail(path, "is a directory, not a safetensors file");
  const uint64_t file_size = fs::file_size(path, ec);
  if (ec) fail(path, "cannot read the file size: {}", ec.message());
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open: {}", errno_message());

  // 1. The header length.
  if (file_size < 8)
    fail(path, "the file is {} bytes, shorter than the 8-byte header length: truncated or not a safetensors file",
         file_size);
  uint8_t n_le[8];
  in.read(reinterpret_cast<char*>(n_le), 8);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(n_le[i]) << (8 * i);
  if (n > kMaxHeaderBytes)
    fail(path, "header length {} is larger than the format's 100 MB limit: corrupt file or not a safetensors file", n);
  if (n > file_size - 8)
    fail(path, "header length {} is larger than the {} bytes after it: the file is truncated (or not a safetensors file)",
         n, file_size - 8);

  // 2. The header. JSON allows the trailing padding spaces, and nlohmann rejects invalid
  //    UTF-8, but it stops at a NUL byte as if the text ended there, so a header length that
  //    reaches into the data would pass unnoticed. NUL is never valid in JSON: reject it.
  std::string text(n, '\0');
  in.read(text.data(), static_cast<std::streamsize>(n));
  if (!in) fail(path, "read error in the header");
  if (size_t nul = text.find('\0'); nul != std::string::npos)
    fail(path, "the {}-byte header is not valid JSON (byte {} is NUL): corrupt file, wrong header length, or not a "
         "safetensors file", n, nul);
  nlohmann::ordered_json header;
  try {
    header = nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    fail(path, "the {}-byte header is not valid JSON ({}): corrupt file, wrong header length, or not a safetensors file",
         n, e.what());
  }
  if (!header.is_object()) fail(path, "the header is not a JSON object");

  // 3. Every entry, checked on its own.
  std::vector<Entry> entries;
  if (metadata) metadata->clear();
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") {
      if (!info.is_object()) fail(path, "\"__metadata__\" is {}, expected an object of strings", info.dump());
      for (const auto& [key, value] : info.items()) {
        if (!value.is_string()) fail(path, "\"__metadata__\" entry '{}' is {}, expected a string", key, value.dump());
        if (metadata) (*metadata)[key] = value.get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(path, name, info));
  }

  // 4. Together, the byte ranges must tile the data section [0, data_size) exactly. Sorting is
  //    stable, so tensors of zero bytes at the same offset keep the header's order.
  const uint64_t data_size = file_size - 8 - n;
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (const Entry& e : entries)  // checked first, so that a cut file is always called truncated
    if (e.end > data_size)
      fail(path, "tensor '{}' occupies bytes [{}, {}) of the data section, which has only {} bytes: the file is truncated",
           e.name, e.begin, e.end, data_size);
  uint64_t covered = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    if (e.begin < covered)
      fail(path, "tensors '{}' [{}, {}) and '{}' [{}, {}) overlap", entries[i - 1].name, entries[i - 1].begin,
           entries[i - 1].end, e.name, e.begin, e.end);
    if (e.begin > covered)
      fail(path, "bytes [{}, {}) of the data section, before tensor '{}', belong to no tensor (a hole)", covered,
           e.begin, e.name);
    covered = e.end;
  }
  if (covered != data_size)
    fail(path, "the tensors end at byte {} of the data section, but it has {} bytes: {} bytes belong to no tensor",
         covered, data_size, data_size - covered);

  // 5. The data, read straight into each tensor's storage.
  NamedTensors out;
  out.reserve(entries.size());
  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    in.read(static_cast<char*>(t.raw()), static_cast<std::streamsize>(e.end - e.begin));
    if (!in) fail(path, "read error in the data of tensor '{}'", e.name);
    out.emplace_back(e.name, std::move(t));
  }
  return out;
}

// ---- load_state_dict -----------------------------------------------------------------------

void load_state_dict(NamedTensors& into, const NamedTensors& from, bool strict) {
  std::vector<std::string> problems;
  std::map<std::string, const Tensor*> source;
  for (const auto& [name, t] : from)
    if (!source.emplace(name, &t).second) problems.push_back(fmt::format("duplicate key in the checkpoint: {}", name));

  std::set<std::string> wanted;
  std::vector<std::pair<Tensor*, const Tensor*>> copies;  // (destination, source), done at the end
  for (auto& [name, dst] : into) {
    if (!wanted.insert(name).second) problems.push_back(fmt::format("duplicate key in the model: {}", name));
    auto it = source.find(name);
    if (it == source.end()) {
      if (strict) problems.push_back(fmt::format("missing key (in the model, not in the checkpoint): {}", name));
      continue;
    }
    const Tensor& src = *it->second;
    if (!dst.defined() || !src.defined()) {
      problems.push_back(fmt::format("{}: undefined tensor in the {}", name, dst.defined() ? "checkpoint" : "model"));
      continue;
    }
    bool ok = true;
    if (src.shape() != dst.shape()) {
      problems.push_back(fmt::format("{}: checkpoint has {}, model has {}", name, shape_str(src.shape()),
                                     shape_str(dst.shape())));
      ok = false;
    }
    if (src.dtype() != dst.dtype()) {
      problems.push_back(fmt::format("{}: checkpoint has dtype {}, model has {}", name, dtype_name(src.dtype()),
                                     dtype_name(dst.dtype())));
      ok = false;
    }
    if (ok) copies.emplace_back(&dst, &src);
  }
  if (strict)
    for (const auto& [name, t] : from)
      if (!wanted.count(name))
        problems.push_back(fmt::format("unexpected key (in the checkpoint, not in the model): {}", name));

  if (!problems.empty()) {
    std::string list;
    for (const std::string& p : problems) list += "\n  " + p;
    throw Error(fmt::format("load_state_dict: {} problem{}, nothing was loaded:{}", problems.size(),
                            problems.size() == 1 ? "" : "s", list));
  }
  for (auto& [dst, src] : copies) dst->copy_(*src);
}

}  // namespace edl
