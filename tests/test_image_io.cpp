// test_image_io.cpp — the PNG and NPY writers produce what the formats specify.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "data/image_io.h"

using namespace edl;
namespace fs = std::filesystem;

static std::string read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

TEST_CASE("image_io: a 2x1 PNG has the signature, IHDR, a stored-block IDAT and IEND", "[image_io]") {
  const fs::path path = fs::temp_directory_path() / fmt::format("edl_test_{}.png", static_cast<long>(getpid()));
  const uint8_t rgb[6] = {255, 0, 0, 0, 0, 255};
  write_png(path.string(), rgb, 2, 1);
  const std::string png = read_all(path);
  fs::remove(path);
  CHECK(png.substr(0, 8) == std::string("\x89PNG\r\n\x1a\n", 8));
  CHECK(png.substr(12, 4) == "IHDR");
  CHECK(png.substr(16, 8) == std::string("\0\0\0\x02\0\0\0\x01", 8));  // width 2, height 1
  // IDAT: zlib header, one final stored block of 7 bytes (filter byte + 6), the raw row, Adler-32.
  const size_t idat = png.find("IDAT");
  REQUIRE(idat != std::string::npos);
  CHECK(png.substr(idat + 4, 7) == std::string("\x78\x01\x01\x07\x00\xf8\xff", 7));
  CHECK(png.substr(idat + 11, 7) == std::string("\0\xff\0\0\0\0\xff", 7));
  // The IEND chunk and its well-known CRC.
  CHECK(png.substr(png.size() - 12) == std::string("\0\0\0\0IEND\xae\x42\x60\x82", 12));
}

TEST_CASE("image_io: NPY header is a 64-byte aligned dict followed by the raw data", "[image_io]") {
  const fs::path path = fs::temp_directory_path() / fmt::format("edl_test_{}.npy", static_cast<long>(getpid()));
  write_npy(path.string(), Tensor::from({2, 3}, {1, 2, 3, 4, 5, 6}));
  const std::string npy = read_all(path);
  fs::remove(path);
  CHECK(npy.substr(0, 8) == std::string("\x93NUMPY\x01\x00", 8));
  const size_t header_len = static_cast<uint8_t>(npy[8]) | (static_cast<uint8_t>(npy[9]) << 8);
  CHECK((10 + header_len) % 64 == 0);
  CHECK(npy.substr(10, header_len).find("{'descr': '<f4', 'fortran_order': False, 'shape': (2,3), }") == 0);
  CHECK(npy.size() == 10 + header_len + 6 * 4);
  float last;
  std::memcpy(&last, npy.data() + npy.size() - 4, 4);
  CHECK(last == 6.0f);
}
