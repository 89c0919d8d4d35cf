// download.cpp — download (libcurl), MD5, and .tar.gz unpacking (zlib) for download.h.
#include "data/download.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <vector>

#include <curl/curl.h>
#include <fmt/format.h>
#include <zlib.h>

#include "engine/error.h"

namespace fs = std::filesystem;

namespace edl {

DownloadSpec cifar_download_spec(const std::string& dataset) {
  // Addresses and MD5s as published on https://www.cs.toronto.edu/~kriz/cifar.html ("binary
  // version", suitable for C programs).
  if (dataset == "cifar10")
    return {"CIFAR-10", "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz", "cifar-10-binary.tar.gz",
            "c32a1d4ab5d03f1284b67883e8d87530", "cifar-10-batches-bin", "test_batch.bin"};
  if (dataset == "cifar100")
    return {"CIFAR-100", "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz", "cifar-100-binary.tar.gz",
            "03b5dce01913d631647c71ecec9e9cb8", "cifar-100-binary", "test.bin"};
  throw Error(fmt::format("unknown dataset '{}' (known: cifar10, cifar100)", dataset));
}

// ---- MD5 (RFC 1321) ---------------------------------------------------------------------------
//
// 64-byte blocks, each mixed into a 128-bit state by 64 steps in four rounds. MD5 is broken as
// a defence against forgery but is what the CIFAR page publishes; here it only detects a
// truncated or corrupt download.

namespace {

class Md5 {
 public:
  void update(const uint8_t* p, size_t n) {
    bytes_ += n;
    while (n > 0) {
      const size_t take = std::min(n, sizeof(buf_) - fill_);
      std::memcpy(buf_ + fill_, p, take);
      fill_ += take, p += take, n -= take;
      if (fill_ == sizeof(buf_)) block(buf_), fill_ = 0;
    }
  }

  std::string hex() {
    const uint64_t bits = bytes_ * 8;
    const uint8_t one = 0x80, zero = 0;
    update(&one, 1);
    while (fill_ != 56) update(&zero, 1);
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(bits >> (8 * i));
    update(len, 8);  // completes the last block
    std::string out;
    for (uint32_t word : s_)
      for (int i = 0; i < 4; ++i) out += fmt::format("{:02x}", (word >> (8 * i)) & 0xff);
    return out;
  }

 private:
  void block(const uint8_t* p) {
    // K[i] = floor(|sin(i + 1)| * 2^32), the RFC's table; r = the rotation of each step.
    static const std::array<uint32_t, 64> K = [] {
      std::array<uint32_t, 64> k{};
      for (int i = 0; i < 64; ++i) k[i] = static_cast<uint32_t>(std::floor(std::fabs(std::sin(i + 1.0)) * 4294967296.0));
      return k;
    }();
    static constexpr int r[64] = {7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
                                  5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20,
                                  4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
                                  6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21};
    uint32_t m[16];
    for (int i = 0; i < 16; ++i)  // little-endian words
      m[i] = uint32_t(p[4 * i]) | uint32_t(p[4 * i + 1]) << 8 | uint32_t(p[4 * i + 2]) << 16 | uint32_t(p[4 * i + 3]) << 24;
    uint32_t a = s_[0], b = s_[1], c = s_[2], d = s_[3];
    for (int i = 0; i < 64; ++i) {
      uint32_t f;
      int g;
      if (i < 16) f = (b & c) | (~b & d), g = i;
      else if (i < 32) f = (d & b) | (~d & c), g = (5 * i + 1) % 16;
      else if (i < 48) f = b ^ c ^ d, g = (3 * i + 5) % 16;
      else f = c ^ (b | ~d), g = (7 * i) % 16;
      f += a + K[i] + m[g];
      a = d, d = c, c = b;
      b += (f << r[i]) | (f >> (32 - r[i]));
    }
    s_[0] += a, s_[1] += b, s_[2] += c, s_[3] += d;
  }

  uint32_t s_[4] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476};
  uint64_t bytes_ = 0;
  uint8_t buf_[64];
  size_t fill_ = 0;
};

}  // namespace

std::string md5_hex(const void* data, size_t size) {
  Md5 h;
  h.update(static_cast<const uint8_t*>(data), size);
  return h.hex();
}

std::string md5_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EDL_CHECK(in.good(), "cannot read {}", path);
  Md5 h;
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    h.update(reinterpret_cast<const uint8_t*>(buf.data()), static_cast<size_t>(in.gcount()));
  }
  return h.hex();
}

// ---- tar.gz -----------------------------------------------------------------------------------
//
// A tar file is a sequence of 512-byte headers, each followed by the entry's content padded to
// a multiple of 512 bytes, and ends with zero blocks. Header fields used here (POSIX ustar):
//   0   name (100)      124 size (12, octal)     148 checksum (8, octal)   156 type ('0' file, '5' dir)
//   257 "ustar" magic   345 prefix (155): the path is prefix/name when the prefix is set
// zlib's gzread undoes the gzip layer.

namespace {

uint64_t parse_octal(const char* p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n && p[i]; ++i)
    if (p[i] >= '0' && p[i] <= '7') v = v * 8 + static_cast<uint64_t>(p[i] - '0');
  return v;
}

// The entry's path inside dir, refusing absolute paths and ".." (a hostile archive must not
// write outside the folder).
fs::path safe_path(const std::string& dir, const std::string& name, const std::string& archive) {
  const fs::path rel(name);
  bool ok = !name.empty() && !rel.is_absolute();
  for (const auto& part : rel) ok = ok && part != "..";
  EDL_CHECK(ok, "{}: refusing to unpack '{}': the path leads outside {}", archive, name, dir);
  return fs::path(dir) / rel;
}

}  // namespace

void extract_tar_gz(const std::string& archive, const std::string& dir) {
  std::unique_ptr<gzFile_s, int (*)(gzFile)> gz(gzopen(archive.c_str(), "rb"), gzclose);
  EDL_CHECK(gz != nullptr, "cannot open {}", archive);
  auto read_exact = [&](char* p, size_t n) {
    size_t got = 0;
    while (got < n) {
      const int r = gzread(gz.get(), p + got, static_cast<unsigned>(std::min<size_t>(n - got, 1u << 30)));
      if (r <= 0) break;
      got += static_cast<size_t>(r);
    }
    return got;
  };

  std::vector<char> chunk(1 << 20);
  int64_t entries = 0;
  for (;;) {
    char h[512];
    const size_t got = read_exact(h, 512);
    EDL_CHECK(entries > 0 || got == 512, "{}: not a tar.gz archive (it holds only {} bytes)", archive, got);
    EDL_CHECK(got == 512 || got == 0, "{}: ends early (truncated download?), after {} entries", archive, entries);
    if (got == 0 || std::all_of(h, h + 512, [](char c) { return c == 0; })) break;  // end of archive

    // The checksum is the sum of the header's bytes with its own field read as spaces.
    uint64_t sum = 0;
    for (int i = 0; i < 512; ++i) sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(h[i]);
    EDL_CHECK(sum == parse_octal(h + 148, 8), "{}: not a tar.gz archive, or corrupt (bad header checksum at entry {})",
              archive, entries + 1);

    std::string name(h, strnlen(h, 100));
    // POSIX ustar ("ustar" NUL) has a path prefix at 345; GNU tar ("ustar  ") keeps times there.
    if (std::memcmp(h + 257, "ustar", 6) == 0 && h[345]) name = std::string(h + 345, strnlen(h + 345, 155)) + "/" + name;
    const uint64_t size = parse_octal(h + 124, 12), padded = (size + 511) / 512 * 512;
    const char type = h[156];
    ++entries;

    // The content, copied in chunks (a header's size is not trusted with a buffer that large);
    // only regular files are written. Other entries (links, pax headers) are not part of the
    // CIFAR archives: their content is skipped.
    std::ofstream out;
    fs::path out_path;
    if (type == '5') {
      fs::create_directories(safe_path(dir, name, archive));
    } else if (type == '0' || type == '\0') {
      out_path = safe_path(dir, name, archive);
      fs::create_directories(out_path.parent_path());
      out.open(out_path, std::ios::binary | std::ios::trunc);
      EDL_CHECK(out.is_open(), "cannot write {}", out_path.string());
    }
    for (uint64_t left = padded; left > 0;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(left, chunk.size()));
      EDL_CHECK(read_exact(chunk.data(), n) == n, "{}: ends inside '{}' (truncated download?)", archive, name);
      const uint64_t done = padded - left;  // bytes of this entry before the chunk
      if (out.is_open() && done < size) out.write(chunk.data(), static_cast<std::streamsize>(std::min<uint64_t>(n, size - done)));
      left -= n;
    }
    if (out.is_open()) {
      out.close();
      EDL_CHECK(!out.fail(), "cannot write {} (disk full?)", out_path.string());
    }
  }
}

// ---- download ---------------------------------------------------------------------------------

namespace {

size_t write_to_file(char* p, size_t size, size_t n, void* file) { return std::fwrite(p, size, n, static_cast<FILE*>(file)); }

int report_progress(void* fn, curl_off_t total, curl_off_t done, curl_off_t, curl_off_t) {
  const auto& progress = *static_cast<const DownloadProgress*>(fn);
  if (progress) progress(static_cast<int64_t>(done), static_cast<int64_t>(total));
  return 0;
}

// Fetches url into path; throws with the reason (and the way to finish by hand) on failure.
void fetch(const std::string& url, const std::string& path, const DownloadProgress& progress, const std::string& manual) {
  static std::once_flag init;
  std::call_once(init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "wb"), std::fclose);
  EDL_CHECK(file != nullptr, "cannot write {}: {}", path, std::strerror(errno));
  std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
  EDL_CHECK(curl != nullptr, "libcurl failed to start");
  char error[CURL_ERROR_SIZE] = "";
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);        // HTTP 404 and the like are errors
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 20L);    // no network: fail in seconds, not hang
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L); // stalled: under 1 KB/s for a minute
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_to_file);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, file.get());
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, report_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &progress);
  const CURLcode res = curl_easy_perform(c);
  const bool written = std::fflush(file.get()) == 0;
  if (res == CURLE_OK && written) return;

  std::string why = error[0] ? error : curl_easy_strerror(res);
  curl_off_t received = 0;
  curl_easy_getinfo(c, CURLINFO_SIZE_DOWNLOAD_T, &received);
  if (res == CURLE_OPERATION_TIMEDOUT && received > 0)
    why = fmt::format("the transfer stalled after {:.1f} MB: {}", static_cast<double>(received) / 1e6, why);
  else if (res == CURLE_COULDNT_RESOLVE_HOST || res == CURLE_COULDNT_CONNECT || res == CURLE_OPERATION_TIMEDOUT ||
           res == CURLE_COULDNT_RESOLVE_PROXY)
    why = "no connection (is this machine offline?): " + why;
  else if (res == CURLE_HTTP_RETURNED_ERROR) {
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    why = fmt::format("the server answered HTTP {}", code);
  } else if (res == CURLE_OK)
    why = fmt::format("writing {} failed (disk full?)", path);
  file.reset();
  std::error_code ec;
  fs::remove(path, ec);
  throw Error(fmt::format("download of {} failed: {}. {}", url, why, manual));
}

}  // namespace

std::string download_dataset(const DownloadSpec& spec, const std::string& dir, const DownloadProgress& progress) {
  const fs::path folder = fs::path(dir) / spec.folder, archive = fs::path(dir) / spec.archive;
  std::error_code ec;
  if (fs::is_regular_file(folder / spec.check_file, ec)) return folder.string();  // 1. already there
  fs::create_directories(dir, ec);
  EDL_CHECK(!ec, "cannot create the data folder {}: {}", dir, ec.message());
  const std::string manual = fmt::format(
      "To finish by hand: download {} on a machine with internet access, copy it to {}, and run this again "
      "(it checks the file's MD5 and unpacks it).",
      spec.url, archive.string());

  if (fs::is_regular_file(archive, ec)) {  // 2. downloaded before, or copied by hand
    const std::string md5 = md5_file(archive.string());
    EDL_CHECK(md5 == spec.md5,
              "{} exists but is not the official {} archive: its MD5 is {}, expected {}. Delete it (or replace it with "
              "the official file) and run this again.",
              archive.string(), spec.title, md5, spec.md5);
  } else {  // 3. download to .part, check, rename
    const std::string part = archive.string() + ".part";
    fetch(spec.url, part, progress, manual);
    const std::string md5 = md5_file(part);
    if (md5 != spec.md5) {
      fs::remove(part, ec);
      throw Error(fmt::format("the download of {} is corrupt: its MD5 is {}, expected {} (deleted it; try again). {}",
                              spec.url, md5, spec.md5, manual));
    }
    fs::rename(part, archive);
  }

  // 4. Unpack into a scratch folder and move the result into place only when complete, so that
  // an interrupted unpack never looks like data (step 1 would then skip it).
  const fs::path scratch = fs::path(dir) / (".unpacking-" + spec.folder);
  fs::remove_all(scratch, ec);
  fs::create_directories(scratch);
  extract_tar_gz(archive.string(), scratch.string());
  EDL_CHECK(fs::is_regular_file(scratch / spec.folder / spec.check_file, ec),
            "unpacking {} did not create {}/{}: not the {} archive?", archive.string(), spec.folder, spec.check_file,
            spec.title);
  fs::remove_all(folder, ec);  // an incomplete earlier copy (it has no check_file)
  fs::rename(scratch / spec.folder, folder);
  fs::remove_all(scratch, ec);
  return folder.string();
}

}  // namespace edl
