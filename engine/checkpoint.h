// checkpoint.h — saving and loading named tensors in the safetensors format, and copying a
// loaded checkpoint into a model's parameters.
//
// Why safetensors (https://github.com/huggingface/safetensors, format described in its
// README): it is the format PyTorch and Hugging Face use to exchange weights, it is trivially
// simple, and unlike pickle it cannot run code when loaded. A file is
//
//   bytes 0..7      N, the length of the header, unsigned 64-bit little-endian
//   bytes 8..8+N    the header: UTF-8 JSON, padded with spaces so that the data starts at a
//                   multiple of 8 bytes:
//                     {"__metadata__": {"epoch": "30"},
//                      "conv1.weight": {"dtype": "F32", "shape": [16,3,3,3],
//                                       "data_offsets": [0, 1728]}, ...}
//   bytes 8+N..     the data section: every tensor's raw little-endian bytes, row-major.
//                   data_offsets [begin, end) count from the start of the data section; the
//                   ranges of all tensors cover it exactly, with no hole and no overlap.
//
// Names follow PyTorch's state_dict ("layer1.0.conv1.weight"), so a file written here loads
// with safetensors.torch.load_file and the other way round.
//
// Tested by tests/test_checkpoint.cpp:  ctest --test-dir build -R checkpoint
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace edl {

// Named tensors are a vector of (name, tensor) pairs in a fixed order, like PyTorch's
// state_dict().items(): order matters for printing and for the layout of the file.

// Writes `tensors` (data in the order given) and the string `metadata` to `path`.
//
// dtypes: f32 F32, f64 F64, s8 I8, u8 U8, s32 I32, s64 I64. b1 (bit-packed) has no safetensors
// dtype and is rejected; so are duplicate names, undefined tensors and the reserved name
// "__metadata__".
//
// The write is atomic: the file is written under a temporary name in the same directory,
// flushed to disk (fsync), then renamed over `path`. rename() replaces a file in one step, so a
// crash at any moment leaves either the previous checkpoint or the new one, never a mixture
// (at worst a stray "<path>.tmp.<pid>.<n>" file), and a save that fails with an error leaves
// the previous file untouched and no temporary file behind.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Reads every tensor of a safetensors file, in the order of their data in the file; if
// `metadata` is given, it receives the "__metadata__" entries (empty when there are none).
// The file is validated completely before any data is read; every problem (missing file,
// truncated file, header that is not JSON, unknown dtype such as BF16, shape that does not
// match the byte range, holes or overlaps) throws edl::Error naming the file and the tensor.
std::vector<std::pair<std::string, Tensor>> load_safetensors(const std::string& path,
                                                             std::map<std::string, std::string>* metadata = nullptr);

// Copies each tensor of `from` into the tensor of the same name in `into`, in place: the
// tensors of `into` are handles to a model's parameters and buffers, so the model sees the
// new values. All names, shapes and dtypes are checked first; if anything does not match,
// one edl::Error lists every problem and nothing is modified.
//
//   strict = true   every name of `into` must be in `from` and the other way round
//                   (PyTorch's load_state_dict(strict=True));
//   strict = false  missing and unexpected names are skipped; shape and dtype mismatches
//                   of names present in both still fail.
void load_state_dict(std::vector<std::pair<std::string, Tensor>>& into,
                     const std::vector<std::pair<std::string, Tensor>>& from, bool strict = true);

// The safetensors dtype string of an edl dtype ("F32", ...); throws edl::Error for b1.
const char* safetensors_dtype_name(DType t);

// Writes `contents` to `path` atomically, as save_safetensors does (temporary file in the same
// folder, fsync, rename): for the small text files of a run (config, metrics, plots).
void write_file_atomic(const std::string& path, const std::string& contents);

}  // namespace edl
