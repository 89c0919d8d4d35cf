// test_checkpoint.cpp — safetensors save/load (engine/checkpoint.h) and load_state_dict.
//
// What is checked: exact round trips of every dtype; the bytes of a tiny file against the
// format (https://github.com/huggingface/safetensors); that truncated and corrupt files, and
// entries with a wrong dtype, shape or offsets, are reported with the file, the tensor and the
// problem; that saving is atomic; that load_state_dict lists every mismatch and changes nothing.
//
// Run: ctest --test-dir build -R checkpoint   (or build/tests/edl_tests "[checkpoint]")
#include <catch2/catch.hpp>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "engine/checkpoint.h"

namespace fs = std::filesystem;
using namespace edl;
using Catch::Contains;

namespace {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// A fresh directory under the system's temp directory, removed with everything in it.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() / fmt::format("edl_test_checkpoint_{}_{}", static_cast<long>(getpid()), counter++);
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(path)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
};

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// A hand-made file: the 8-byte length of `header`, `header` as given (no padding), then
// `data_bytes` bytes of data.
void write_raw(const std::string& path, const std::string& header, size_t data_bytes) {
  std::vector<uint8_t> bytes(8);
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<uint8_t>(header.size() >> (8 * i));
  bytes.insert(bytes.end(), header.begin(), header.end());
  bytes.resize(bytes.size() + data_bytes, 0);
  write_bytes(path, bytes);
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

Tensor s64_tensor(const std::vector<int64_t>& values) {  // int64 extremes do not survive a double
  Tensor t = Tensor::empty({static_cast<int64_t>(values.size())}, DType::s64);
  std::copy(values.begin(), values.end(), t.data<int64_t>());
  return t;
}

}  // namespace

// ---- round trip and byte layout -------------------------------------------------------------------

TEST_CASE("checkpoint: every dtype round-trips exactly, in order, with metadata", "[checkpoint]") {
  TempDir dir;
  const double inf = std::numeric_limits<double>::infinity();
  NamedTensors tensors = {
      {"conv.weight", Tensor::from({2, 1, 2, 2}, {1.5, -2.25, 3.4e38, 1e-45, -0.0, inf, -inf, 0.1}, DType::f32)},
      {"f64", Tensor::from({3}, {M_PI, -1e308, 5e-324}, DType::f64)},
      {"s8", Tensor::from({4}, {-128, 127, 0, -1}, DType::s8)},
      {"u8", Tensor::from({2, 2}, {0, 255, 128, 7}, DType::u8)},
      {"s32", Tensor::from({3}, {-2147483648.0, 2147483647.0, -5}, DType::s32)},
      {"s64", s64_tensor({std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(), 42})},
      {"bn.num_batches_tracked", Tensor::scalar(391, DType::s64)},  // shape (): one element
      {"empty", Tensor::zeros({0, 3}, DType::f32)},                   // zero elements, zero bytes
      {"a.b", Tensor::from({1}, {std::nan("")}, DType::f32)},        // NaN: compared as bytes
  };
  const std::map<std::string, std::string> metadata = {
      {"epoch", "30"}, {"quote\"and\\slash", "ü ∑ \n tab\t"}, {"empty", ""}};
  const std::string path = dir.file("model.safetensors");
  save_safetensors(path, tensors, metadata);

  std::map<std::string, std::string> loaded_metadata = {{"stale", "entry"}};
  NamedTensors loaded = load_safetensors(path, &loaded_metadata);
  REQUIRE(loaded.size() == tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    INFO(tensors[i].first);
    CHECK(loaded[i].first == tensors[i].first);
    CHECK(same_bytes(loaded[i].second, tensors[i].second));
  }
  CHECK(loaded_metadata == metadata);
  CHECK(loaded[6].second.shape().empty());

  // Without metadata the file has no "__metadata__" entry, and loading reports none.
  save_safetensors(path, {{"x", Tensor::ones({2})}});
  loaded = load_safetensors(path, &loaded_metadata);
  CHECK(loaded_metadata.empty());
  CHECK(loaded.size() == 1);
}

TEST_CASE("checkpoint: the bytes of a tiny file follow the safetensors format", "[checkpoint]") {
  TempDir dir;
  const std::string path = dir.file("tiny.safetensors");
  save_safetensors(path,
                   {{"a", Tensor::from({2}, {1.0, -2.0}, DType::f32)}, {"b", Tensor::from({1, 3}, {1, 2, 3}, DType::u8)}},
                   {{"k", "v"}});
  const std::vector<uint8_t> bytes = read_bytes(path);

  // The header: compact JSON, "__metadata__" first, tensors in the order given; 134 bytes,
  // padded with 2 spaces to 136 so that the data starts at byte 8 + 136 = 144, a multiple of 8.
  const std::string json =
      R"({"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"U8","shape":[1,3],"data_offsets":[8,11]}})";
  REQUIRE(json.size() == 134);
  const std::vector<uint8_t> length = {136, 0, 0, 0, 0, 0, 0, 0};  // little-endian u64
  const std::vector<uint8_t> data = {0x00, 0x00, 0x80, 0x3f,        // 1.0f
                                     0x00, 0x00, 0x00, 0xc0,        // -2.0f
                                     1,    2,    3};                // u8
  std::vector<uint8_t> expected = length;
  expected.insert(expected.end(), json.begin(), json.end());
  expected.push_back(' ');
  expected.push_back(' ');
  expected.insert(expected.end(), data.begin(), data.end());

  REQUIRE(bytes.size() == 8 + 136 + 11);
  for (size_t i = 0; i < bytes.size(); ++i) {
    INFO("byte " << i);
    REQUIRE(bytes[i] == expected[i]);
  }
}

TEST_CASE("checkpoint: reader accepts a valid hand-written file with its tensors in any header order", "[checkpoint]") {
  // The header is a JSON object, so its key order means nothing; tensors come back in the
  // order of their data. Unpadded headers are valid too.
  TempDir dir;
  const std::string path = dir.file("hand.safetensors");
  write_raw(path,
            R"({"second":{"dtype":"I32","shape":[1],"data_offsets":[4,8]},)"
            R"("first":{"data_offsets":[0,4],"shape":[],"dtype":"I32"}})",
            8);
  NamedTensors loaded = load_safetensors(path);
  REQUIRE(loaded.size() == 2);
  CHECK(loaded[0].first == "first");
  CHECK(loaded[0].second.shape() == Shape{});
  CHECK(loaded[1].first == "second");

  // The example file of the reference implementation's documentation (SafeTensors::deserialize
  // in safetensors/src/tensor.rs): "<\0\0\0\0\0\0\0" (60), 60 bytes of JSON, 16 zero bytes.
  write_raw(path, R"({"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}})", 16);
  REQUIRE(read_bytes(path)[0] == '<');
  loaded = load_safetensors(path);
  REQUIRE(loaded.size() == 1);
  CHECK(loaded[0].first == "test");
  CHECK(loaded[0].second.dtype() == DType::s32);
  CHECK(loaded[0].second.shape() == Shape{2, 2});
  CHECK(loaded[0].second.to_vector() == std::vector<double>(4, 0.0));
}

// ---- damaged files ----------------------------------------------------------------------------

TEST_CASE("checkpoint: a file cut anywhere is reported as truncated", "[checkpoint]") {
  TempDir dir;
  const std::string good = dir.file("good.safetensors"), cut = dir.file("cut.safetensors");
  save_safetensors(good, {{"w", Tensor::ones({4, 4})}, {"b", Tensor::zeros({4})}});
  const std::vector<uint8_t> bytes = read_bytes(good);
  const size_t header_end = 8 + (bytes[0] | bytes[1] << 8);

  for (size_t at : {size_t{0}, size_t{3}, size_t{7}, size_t{8}, size_t{20}, header_end - 1, header_end,
                    header_end + 5, bytes.size() - 1}) {
    INFO("file cut after " << at << " of " << bytes.size() << " bytes");
    write_bytes(cut, std::vector<uint8_t>(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(at)));
    REQUIRE_THROWS_WITH(load_safetensors(cut), Contains(cut) && Contains("truncated"));
  }
  CHECK(load_safetensors(good).size() == 2);
}

TEST_CASE("checkpoint: corrupt headers are reported", "[checkpoint]") {
  TempDir dir;
  const std::string path = dir.file("bad.safetensors");

  REQUIRE_THROWS_WITH(load_safetensors(dir.file("nothing.safetensors")),
                      Contains("nothing.safetensors") && Contains("file not found"));
  REQUIRE_THROWS_WITH(load_safetensors(dir.path.string()), Contains("is a directory"));

  write_raw(path, "{not json at all", 0);
  REQUIRE_THROWS_WITH(load_safetensors(path), Contains(path) && Contains("not valid JSON"));

  write_raw(path, R"([{"dtype":"F32"}])", 0);
  REQUIRE_THROWS_WITH(load_safetensors(path), Contains("not a JSON object"));

  // A wrong header length: shorter cuts the JSON, longer swallows data bytes into it.
  save_safetensors(path, {{"w", Tensor::full({4}, 3.0)}});
  std::vector<uint8_t> bytes = read_bytes(path);
  for (int delta : {-10, +5}) {
    INFO("header length changed by " << delta);
    std::vector<uint8_t> changed = bytes;
    changed[0] = static_cast<uint8_t>(changed[0] + delta);
    write_bytes(path, changed);
    REQUIRE_THROWS_WITH(load_safetensors(path), Contains("not valid JSON"));
  }
  // An absurd length (a corrupt field, or not a safetensors file at all).
  std::vector<uint8_t> absurd = bytes;
  absurd[5] = 1;  // 2^40 + ...
  write_bytes(path, absurd);
  REQUIRE_THROWS_WITH(load_safetensors(path), Contains("100 MB limit"));
}

TEST_CASE("checkpoint: bad entries name the tensor and the problem", "[checkpoint]") {
  TempDir dir;
  const std::string path = dir.file("bad.safetensors");
  struct Case {
    std::string header;
    size_t data_bytes;
    std::vector<std::string> expected;  // substrings of the message
  };
  const std::vector<Case> cases = {
      {R"({"w":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}})", 4, {"tensor 'w'", "BF16 is not supported"}},
      {R"({"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", 4, {"tensor 'w'", "F16 is not supported"}},
      {R"({"w":{"dtype":7,"shape":[2],"data_offsets":[0,4]}})", 4, {"tensor 'w'", "\"dtype\" is 7"}},
      {R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})",
       20,
       {"tensor 'w': shape (2,3) of F32 needs 24 bytes, but data_offsets [0, 20] hold 20 bytes"}},
      {R"({"w":{"shape":[2],"data_offsets":[0,8]}})", 8, {"tensor 'w'", "no \"dtype\""}},
      {R"({"w":{"dtype":"F32","data_offsets":[0,8]}})", 8, {"tensor 'w'", "no \"shape\""}},
      {R"({"w":{"dtype":"F32","shape":[2]}})", 8, {"tensor 'w'", "no \"data_offsets\""}},
      {R"({"w":[1,2]})", 0, {"tensor 'w': entry is [1,2], expected a JSON object"}},
      {R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8, {"tensor 'w'", "non-negative"}},
      {R"({"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", 8, {"tensor 'w'", "non-negative integers"}},
      {R"({"w":{"dtype":"F64","shape":[1099511627776,1099511627776],"data_offsets":[0,8]}})",
       8,
       {"tensor 'w'", "impossibly large"}},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8, {"tensor 'w'", "data_offsets"}},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8, {"tensor 'w'", "data_offsets"}},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       12,
       {"'a' [0, 8) and 'b' [4, 12) overlap"}},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
       12,
       {"bytes [4, 8)", "before tensor 'b'", "hole"}},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8, {"bytes [0, 4)", "tensor 'a'", "hole"}},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 8, {"4 bytes belong to no tensor"}},
      {R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8, {"tensor 'a'", "truncated"}},
      {R"({"__metadata__":{"epoch":30}})", 0, {"__metadata__", "'epoch'", "expected a string"}},
      {R"({"__metadata__":"v1"})", 0, {"__metadata__", "expected an object"}},
  };
  for (const Case& c : cases) {
    INFO("header " << c.header);
    write_raw(path, c.header, c.data_bytes);
    try {
      load_safetensors(path);
      FAIL("no error");
    } catch (const Error& e) {
      const std::string message = e.what();
      INFO("message: " << message);
      CHECK_THAT(message, Contains(path));
      for (const std::string& part : c.expected) CHECK_THAT(message, Contains(part));
    }
  }
}

// ---- saving -----------------------------------------------------------------------------------

TEST_CASE("checkpoint: save rejects b1, duplicate and reserved names, undefined tensors", "[checkpoint]") {
  TempDir dir;
  const std::string path = dir.file("m.safetensors");
  Tensor bits = Tensor::ones({16}).to(DType::b1);
  REQUIRE_THROWS_WITH(save_safetensors(path, {{"binary.weight", bits}}),
                      Contains(path) && Contains("'binary.weight'") && Contains("b1 (bit-packed)"));
  REQUIRE_THROWS_WITH(save_safetensors(path, {{"w", Tensor::ones({1})}, {"w", Tensor::ones({1})}}),
                      Contains("duplicate tensor name 'w'"));
  REQUIRE_THROWS_WITH(save_safetensors(path, {{"__metadata__", Tensor::ones({1})}}), Contains("reserved"));
  REQUIRE_THROWS_WITH(save_safetensors(path, {{"w", Tensor()}}), Contains("'w' is undefined"));
  REQUIRE_THROWS_WITH(save_safetensors(dir.file("no/such/dir/m.safetensors"), {{"w", Tensor::ones({1})}}),
                      Contains("cannot create the temporary file"));
  CHECK(dir.listing().empty());  // nothing was written by any of them
}

TEST_CASE("checkpoint: saving is atomic: it replaces the file, and a failed save keeps it", "[checkpoint]") {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  save_safetensors(path, {{"w", Tensor::full({3}, 1.0)}});
  save_safetensors(path, {{"w", Tensor::full({3}, 2.0)}, {"b", Tensor::zeros({1})}});  // over the first
  NamedTensors loaded = load_safetensors(path);
  REQUIRE(loaded.size() == 2);
  CHECK(loaded[0].second.to_vector() == std::vector<double>{2, 2, 2});
  CHECK(dir.listing() == std::vector<std::string>{"model.safetensors"});

  // Saves that fail before writing leave the previous file as it was, and no temporary file.
  const std::vector<uint8_t> before = read_bytes(path);
  CHECK_THROWS_AS(save_safetensors(path, {{"w", Tensor::ones({3})}, {"bits", Tensor::ones({8}).to(DType::b1)}}), Error);
  CHECK_THROWS_AS(save_safetensors(path, {{"w", Tensor::ones({3})}, {"w", Tensor::ones({3})}}), Error);
  CHECK(read_bytes(path) == before);
  CHECK(dir.listing() == std::vector<std::string>{"model.safetensors"});

  // A save that fails after writing everything (the rename cannot replace a directory) removes
  // its temporary file.
  const std::string blocked = dir.file("blocked.safetensors");
  fs::create_directory(blocked);
  REQUIRE_THROWS_WITH(save_safetensors(blocked, {{"w", Tensor::ones({3})}}), Contains(blocked) && Contains("renaming"));
  CHECK(dir.listing() == std::vector<std::string>{"blocked.safetensors", "model.safetensors"});
  CHECK(fs::is_empty(blocked));
}

// ---- load_state_dict ----------------------------------------------------------------------------

TEST_CASE("load_state_dict: copies into the model's tensors in place", "[checkpoint]") {
  TempDir dir;
  // The "model": handles to its parameters and buffers. A module keeps the same handles.
  Tensor weight = Tensor::zeros({2, 2}), bias = Tensor::zeros({2});
  Tensor tracked = Tensor::scalar(0, DType::s64);  // PyTorch's num_batches_tracked: int64, shape ()
  NamedTensors model = {{"fc.weight", weight}, {"fc.bias", bias}, {"bn.num_batches_tracked", tracked}};

  const std::string path = dir.file("ckpt.safetensors");
  save_safetensors(path, {{"bn.num_batches_tracked", Tensor::scalar(782, DType::s64)},  // order differs
                          {"fc.weight", Tensor::from({2, 2}, {1, 2, 3, 4})},
                          {"fc.bias", Tensor::from({2}, {-1, -2})}});
  load_state_dict(model, load_safetensors(path));
  CHECK(weight.to_vector() == std::vector<double>{1, 2, 3, 4});  // visible through the handles
  CHECK(bias.to_vector() == std::vector<double>{-1, -2});
  CHECK(tracked.dtype() == DType::s64);
  CHECK(tracked.item() == 782);
}

TEST_CASE("load_state_dict: lists every mismatch at once and changes nothing", "[checkpoint]") {
  Tensor conv = Tensor::zeros({16, 16, 3, 3}), bn = Tensor::zeros({16}), tracked = Tensor::scalar(0, DType::s64),
         fc = Tensor::zeros({10});
  NamedTensors model = {{"layer1.0.conv1.weight", conv},
                        {"layer1.0.bn1.weight", bn},
                        {"layer1.0.bn1.num_batches_tracked", tracked},
                        {"fc.bias", fc}};
  NamedTensors checkpoint = {{"layer1.0.conv1.weight", Tensor::ones({16, 3, 3, 3})},
                             {"layer1.0.bn1.weight", Tensor::ones({16})},  // fine, but must not be copied
                             {"layer1.0.bn1.num_batches_tracked", Tensor::scalar(5, DType::f64)},
                             {"linear.bias", Tensor::ones({10})}};
  try {
    load_state_dict(model, checkpoint);
    FAIL("no error");
  } catch (const Error& e) {
    const std::string message = e.what();
    INFO(message);
    CHECK_THAT(message, Contains("4 problems, nothing was loaded"));
    CHECK_THAT(message, Contains("layer1.0.conv1.weight: checkpoint has (16,3,3,3), model has (16,16,3,3)"));
    CHECK_THAT(message, Contains("layer1.0.bn1.num_batches_tracked: checkpoint has dtype f64, model has s64"));
    CHECK_THAT(message, Contains("missing key (in the model, not in the checkpoint): fc.bias"));
    CHECK_THAT(message, Contains("unexpected key (in the checkpoint, not in the model): linear.bias"));
  }
  CHECK(bn.to_vector() == std::vector<double>(16, 0.0));
  CHECK(tracked.item() == 0);
}

TEST_CASE("load_state_dict: non-strict skips missing and unexpected names, not mismatches", "[checkpoint]") {
  Tensor w = Tensor::zeros({2}), extra = Tensor::zeros({3});
  NamedTensors model = {{"w", w}, {"head.weight", extra}};
  NamedTensors checkpoint = {{"w", Tensor::ones({2})}, {"old_head.weight", Tensor::ones({5})}};
  load_state_dict(model, checkpoint, /*strict=*/false);
  CHECK(w.to_vector() == std::vector<double>{1, 1});
  CHECK(extra.to_vector() == std::vector<double>{0, 0, 0});

  NamedTensors wrong = {{"w", Tensor::ones({3})}};
  REQUIRE_THROWS_WITH(load_state_dict(model, wrong, false), Contains("w: checkpoint has (3), model has (2)"));
  REQUIRE_THROWS_WITH(load_state_dict(model, checkpoint, true),
                      Contains("2 problems") && Contains("head.weight") && Contains("old_head.weight"));
}
