// download.h — fetching CIFAR from its official address: download, checksum, unpack.
//
//   edl download --dataset cifar10 --data-dir data     (CLI, cli/main.cpp)
//
// 1. If <dir>/<folder> already holds the dataset's files, there is nothing to do.
// 2. If <dir>/<archive> exists (a previous download, or a copy made by hand on a machine
//    without internet) and its MD5 is right, it is used as it is.
// 3. Otherwise the archive is downloaded (libcurl) to <dir>/<archive>.part with progress, its
//    MD5 is checked against the one published on https://www.cs.toronto.edu/~kriz/cifar.html,
//    and only then renamed to <archive>: an interrupted or corrupt download never looks done.
// 4. The .tar.gz is unpacked (zlib + a small tar reader that refuses paths outside the folder)
//    into a scratch folder, and <folder>/ with the .bin files that data/cifar.h reads is moved
//    into <dir> once complete: an interrupted unpack never looks finished.
//
// With no network the error says so, and how to finish by hand (step 2).
//
// Tested by tests/test_cifar.cpp ([download]): archives in the official layout made by the
// test, served from file:// addresses.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace edl {

struct DownloadSpec {
  std::string title;    // "CIFAR-10"
  std::string url;      // where to get the archive
  std::string archive;  // file name of the archive, "cifar-10-binary.tar.gz"
  std::string md5;      // its published MD5, lowercase hex
  std::string folder;   // what unpacking creates, "cifar-10-batches-bin"
  std::string check_file;  // a file in folder whose presence means "already unpacked"
};

// The official archive of "cifar10" or "cifar100" (throws for another name).
DownloadSpec cifar_download_spec(const std::string& dataset);

// Called during a download with bytes received so far and the total (0 when unknown).
using DownloadProgress = std::function<void(int64_t done, int64_t total)>;

// Steps 1-4 above. Returns the folder that holds the data (<dir>/<folder>). Throws edl::Error
// with a message naming the problem: no network, an HTTP error, a checksum mismatch (expected
// and actual), an archive that is not a tar.gz, an unsafe path inside it.
std::string download_dataset(const DownloadSpec& spec, const std::string& dir, const DownloadProgress& progress = {});

// MD5 of bytes / of a file, as 32 lowercase hex digits (RFC 1321).
std::string md5_hex(const void* data, size_t size);
std::string md5_file(const std::string& path);

// Unpacks a .tar.gz (regular files and directories; other entries are skipped) into dir.
void extract_tar_gz(const std::string& archive, const std::string& dir);

}  // namespace edl
