// image_io.cpp — PNG and NPY writers (see image_io.h).
#include "data/image_io.h"

#include <array>

#include "engine/checkpoint.h"

namespace edl {

namespace {

uint32_t crc32(const std::string& bytes, size_t begin) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t n = 0; n < 256; ++n) {
      uint32_t c = n;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[n] = c;
    }
    return t;
  }();
  uint32_t c = 0xffffffffu;
  for (size_t i = begin; i < bytes.size(); ++i) c = table[(c ^ static_cast<uint8_t>(bytes[i])) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

void put_be32(std::string& s, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) s.push_back(static_cast<char>((v >> shift) & 0xff));
}

// A chunk: length, type, data, CRC of type + data.
void put_chunk(std::string& png, const char* type, const std::string& data) {
  put_be32(png, static_cast<uint32_t>(data.size()));
  const size_t start = png.size();
  png += type;
  png += data;
  put_be32(png, crc32(png, start));
}

}  // namespace

void write_png(const std::string& path, const uint8_t* rgb, int64_t width, int64_t height) {
  EDL_CHECK(width > 0 && height > 0, "write_png: {}: empty image {}x{}", path, width, height);
  // The raw scanlines: each row starts with filter type 0 (none).
  std::string raw;
  for (int64_t y = 0; y < height; ++y) {
    raw.push_back(0);
    raw.append(reinterpret_cast<const char*>(rgb + y * width * 3), static_cast<size_t>(width * 3));
  }
  // zlib stream: header (deflate, no preset dictionary), stored blocks of <= 65535 bytes, Adler-32.
  std::string z{"\x78\x01", 2};
  for (size_t pos = 0; pos < raw.size() || pos == 0;) {
    const size_t n = std::min<size_t>(65535, raw.size() - pos);
    const bool last = pos + n == raw.size();
    z.push_back(last ? 1 : 0);
    z.push_back(static_cast<char>(n & 0xff));
    z.push_back(static_cast<char>(n >> 8));
    z.push_back(static_cast<char>(~n & 0xff));
    z.push_back(static_cast<char>((~n >> 8) & 0xff));
    z.append(raw, pos, n);
    pos += n;
    if (last) break;
  }
  uint32_t a = 1, b = 0;
  for (char ch : raw) {
    a = (a + static_cast<uint8_t>(ch)) % 65521;
    b = (b + a) % 65521;
  }
  put_be32(z, (b << 16) | a);

  std::string png{"\x89PNG\r\n\x1a\n", 8};
  std::string ihdr;
  put_be32(ihdr, static_cast<uint32_t>(width));
  put_be32(ihdr, static_cast<uint32_t>(height));
  ihdr += std::string{"\x08\x02\x00\x00\x00", 5};  // 8 bits, RGB, deflate, adaptive filters, no interlace
  put_chunk(png, "IHDR", ihdr);
  put_chunk(png, "IDAT", z);
  put_chunk(png, "IEND", "");
  write_file_atomic(path, png);
}

void write_npy(const std::string& path, const Tensor& t) {
  const char* descr = nullptr;
  switch (t.dtype()) {
    case DType::f32: descr = "<f4"; break;
    case DType::f64: descr = "<f8"; break;
    case DType::s32: descr = "<i4"; break;
    case DType::s64: descr = "<i8"; break;
    case DType::u8: descr = "|u1"; break;
    case DType::s8: descr = "|i1"; break;
    case DType::b1: throw Error(fmt::format("write_npy: {}: bit-packed b1 tensors have no NumPy dtype", path));
  }
  std::string shape;
  for (int64_t d : t.shape()) shape += std::to_string(d) + ",";
  if (t.ndim() > 1) shape.pop_back();  // (N,) keeps its comma, (N,K) does not
  std::string header = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': ({}), }}", descr, shape);
  // magic (6) + version (2) + header length (2) + header + '\n', padded to a multiple of 64.
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::string out{"\x93NUMPY\x01\x00", 8};
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>(header.size() >> 8));
  out += header;
  out.append(static_cast<const char*>(t.raw()), t.nbytes());
  write_file_atomic(path, out);
}

void write_image_grid_png(const std::string& path, const Tensor& images, int64_t cols, int64_t border, int64_t scale) {
  EDL_CHECK(images.dtype() == DType::u8 && images.ndim() == 4 && images.dim(1) == 3,
            "write_image_grid_png: expected u8 (N,3,H,W) images, got {} {}", dtype_name(images.dtype()),
            shape_str(images.shape()));
  const int64_t N = images.dim(0), H = images.dim(2), W = images.dim(3);
  cols = std::max<int64_t>(1, std::min(cols, N));
  const int64_t rows = (N + cols - 1) / cols;
  const int64_t cw = W * scale + border, ch = H * scale + border;
  const int64_t width = cols * cw + border, height = rows * ch + border;
  std::vector<uint8_t> rgb(static_cast<size_t>(width * height * 3), 255);  // white gaps
  const uint8_t* x = images.data<uint8_t>();
  for (int64_t n = 0; n < N; ++n) {
    const int64_t x0 = border + (n % cols) * cw, y0 = border + (n / cols) * ch;
    for (int64_t y = 0; y < H * scale; ++y)
      for (int64_t xx = 0; xx < W * scale; ++xx)
        for (int64_t c = 0; c < 3; ++c)
          rgb[static_cast<size_t>(((y0 + y) * width + x0 + xx) * 3 + c)] = x[((n * 3 + c) * H + y / scale) * W + xx / scale];
  }
  write_png(path, rgb.data(), width, height);
}

}  // namespace edl
