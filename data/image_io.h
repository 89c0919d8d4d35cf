// image_io.h — writing pictures and arrays that other tools open: PNG images and NumPy .npy.
//
// Both formats are written by hand so that edl needs no image library:
//   PNG  (https://www.w3.org/TR/png/): signature, IHDR, one IDAT holding a zlib stream of
//        *stored* (uncompressed) deflate blocks, IEND; CRC-32 per chunk, Adler-32 per stream.
//        Larger than a compressed PNG, but every viewer reads it.
//   NPY  (numpy.lib.format, version 1.0): magic, a Python-dict header, raw little-endian data;
//        numpy.load reads it, so logits can be compared with another framework.
// Files are written atomically (see write_file_atomic).
#pragma once

#include <cstdint>
#include <string>

#include "engine/tensor.h"

namespace edl {

// rgb holds height rows of width pixels, 3 bytes (R, G, B) each.
void write_png(const std::string& path, const uint8_t* rgb, int64_t width, int64_t height);

// f32, f64, s32, s64, u8 or s8 tensors of any shape.
void write_npy(const std::string& path, const Tensor& t);

// The PNG of a grid of images: u8 (N,3,H,W) tiled `cols` per row with a `border`-pixel gap,
// each pixel repeated `scale` times in both directions.
void write_image_grid_png(const std::string& path, const Tensor& images, int64_t cols, int64_t border = 2,
                          int64_t scale = 2);

}  // namespace edl
