// conv2d_winograd.cpp — the Winograd convolutions F(2×2, 3×3) and F(4×4, 3×3) declared in
// conv2d_winograd.h: one implementation, templated on the output tile size M.
#include "kernels/conv2d/conv2d_winograd.h"

#include <omp.h>

#include <algorithm>
#include <span>
#include <type_traits>
#include <vector>

#include "engine/error.h"
#include "engine/threads.h"
#include "kernels/common/gemm.h"
#include "kernels/common/gemm_ukernel.h"
#include "kernels/common/prefetch.h"
#include "kernels/conv2d/conv2d_im2col.h"

namespace edl {

namespace {

// The transforms of F(m×m, 3×3), m = 2 or 4 (Lavin & Gray's matrices): an m×m output tile reads
// an α×α input patch, α = m + 2, and the product has α² positions ξ.
//   Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A        Bᵀ: α×α, G: α×3, Aᵀ: m×α
template <int M>
struct Winograd;

template <>
struct Winograd<2> {
  static constexpr int kAlpha = 4;
  static constexpr float BT[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
  static constexpr float G[4][3] = {{1, 0, 0}, {0.5f, 0.5f, 0.5f}, {0.5f, -0.5f, 0.5f}, {0, 0, 1}};
  static constexpr float AT[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
};

// F(4×4, 3×3): 36 multiplies for 16 outputs instead of 144 (4×), at the price of larger
// constants (up to 8 and 1/24) in the transforms and so larger rounding errors.
template <>
struct Winograd<4> {
  static constexpr int kAlpha = 6;
  static constexpr float BT[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                                     {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
  static constexpr float G[6][3] = {{1.0f / 4, 0, 0},
                                    {-1.0f / 6, -1.0f / 6, -1.0f / 6},
                                    {-1.0f / 6, 1.0f / 6, -1.0f / 6},
                                    {1.0f / 24, 1.0f / 12, 1.0f / 6},
                                    {1.0f / 24, -1.0f / 12, 1.0f / 6},
                                    {0, 0, 1}};
  static constexpr float AT[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
};

// out[r] = Σ_k mat[r][k] · in[k·stride] for a constant matrix (or its transpose, mat[k][r]):
// the loops unroll, the coefficients become constants and the zero terms drop out at compile
// time (a multiply by 0 could not be folded away otherwise: 0·∞ is NaN), leaving the handful of
// additions and scalings a hand-written transform would have.
template <bool kTransposed, int R, int K, class V, int Rows, int Cols>
inline void apply(const float (&mat)[Rows][Cols], const V* in, int64_t in_stride, V* out, int64_t out_stride) {
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    V acc(0.0f);
    bool first = true;  // the first term starts the sum (0 + x is not x for x = -0, so no fold)
#pragma GCC unroll 8
    for (int k = 0; k < K; ++k) {
      const float c = kTransposed ? mat[k][r] : mat[r][k];
      if (c != 0.0f) {
        acc = first ? c * in[k * in_stride] : acc + c * in[k * in_stride];
        first = false;
      }
    }
    out[r * out_stride] = acc;
  }
}

// The transforms apply the same matrices to many tiles at once: the values of one patch
// position for consecutive tiles (and lanes) lie side by side in memory, so they run on
// vectors of kVecLanes of them (xsimd's batch; plain floats where xsimd has no SIMD), with
// `apply` unchanged: V is float or Vec. (Left to itself the compiler kept them scalar: the
// transforms write in place, which it cannot prove safe to vectorize.)
#if defined(XSIMD_NO_SUPPORTED_ARCHITECTURE)
using Vec = float;
constexpr int64_t kVecLanes = 1;
#else
using Vec = xsimd::batch<float>;
constexpr int64_t kVecLanes = static_cast<int64_t>(Vec::size);
#endif
template <class V>
inline V load_as(const float* p) {
  if constexpr (std::is_same_v<V, float>) return *p;
  else return V::load_unaligned(p);
}
// The kVecLanes floats base[idx[0]], base[idx[1]], ... (one float for V = float).
template <class V>
inline V gather_as(const float* base, const int32_t* idx) {
  if constexpr (std::is_same_v<V, float>) return base[idx[0]];
  else return V::gather(base, xsimd::batch<int32_t, typename V::arch_type>::load_unaligned(idx));
}
// base[idx[0]] = v[0], base[idx[1]] = v[1], ... (v itself for V = float).
template <class V>
inline void scatter_as(float* base, const int32_t* idx, const V& v) {
  if constexpr (std::is_same_v<V, float>) base[idx[0]] = v;
  else v.scatter(base, xsimd::batch<int32_t, typename V::arch_type>::load_unaligned(idx));
}
template <class V>
inline void store_to(float* p, const V& v) {
  if constexpr (std::is_same_v<V, float>) *p = v;
  else v.store_unaligned(p);
}
// body<V>(e) for e = 0 .. n-1: kVecLanes values at a time as a Vec, the rest one float at a time.
template <class Body>
inline void for_each_lane(int64_t n, Body body) {
  int64_t e = 0;
  for (; e + kVecLanes <= n; e += kVecLanes) body.template operator()<Vec>(e);
  for (; e < n; ++e) body.template operator()<float>(e);
}

// The map is cut into tiles of M×M outputs: tile (i, j) computes output rows M·i .. M·i+M-1
// and as many columns (those past the edge of a map that M does not divide are dropped) and
// reads the α×α input patch from row M·i - 1 and column M·j - 1 on (padding 1: reads outside
// the image are 0). Tiles are numbered across the batch, row after row: tile t is image
// t / per_image.
struct Tiling {
  int64_t rows, cols, per_image, total;
};
Tiling tiling(const Conv2dShape& s, int64_t M) {
  const int64_t rows = (s.OH + M - 1) / M, cols = (s.OW + M - 1) / M;
  return {rows, cols, rows * cols, s.N * rows * cols};
}

// A chunk of tiles is at most kMaxChunk tiles (16 panels of NR).
constexpr int64_t kMaxChunk = 16 * kGemmNR;

// The chunk's tiles as runs along rows of tiles: tiles (i, j0 .. j0+len-1) of image n, the
// first of them the chunk's tile col.
struct TileRun {
  int64_t n, i, j0, len, col;
};
// Writes them to runs (room for t1 - t0 of them: every run has a tile), returns how many.
int64_t tile_runs(const Tiling& tl, int64_t t0, int64_t t1, TileRun* runs) {
  int64_t count = 0;
  for (int64_t t = t0; t < t1;) {
    const int64_t n = t / tl.per_image, i = (t % tl.per_image) / tl.cols, j0 = t % tl.cols;
    const int64_t len = std::min(tl.cols - j0, t1 - t);
    runs[count++] = {n, i, j0, len, t - t0};
    t += len;
  }
  return count;
}

// At most how many runs a chunk of `tiles` tiles has: one per row of tiles it touches.
int64_t max_runs(const Tiling& tl, int64_t tiles) {
  return std::min(tiles, (tiles + tl.cols - 2) / tl.cols + 1);
}

// Every thread's scratch for the parallel loops below: one buffer of the calling thread, cut
// into a slice per thread, allocated before the loop — an exception (bad_alloc) thrown inside
// a parallel region could not reach the caller (gemm.cpp does the same). Slices are whole
// cache lines, so each keeps the 64-byte alignment the micro-kernel's loads need.
struct ThreadSlices {
  float* base;
  int64_t floats;    // per thread
  TileRun* runs;     // max_runs per thread
  int64_t max_runs;
  int32_t* offsets;  // `ints` per thread
  int64_t ints;
  float* floats_of(int thread) const { return base + thread * floats; }
  TileRun* runs_of(int thread) const { return runs + thread * max_runs; }
  int32_t* offsets_of(int thread) const { return offsets + thread * ints; }
};
ThreadSlices thread_slices(int64_t floats, int64_t max_runs, int64_t ints) {
  static thread_local ScratchBuffer buffer;
  static thread_local std::vector<TileRun> runs;
  static thread_local std::vector<int32_t> offsets;
  const int threads = omp_get_max_threads();
  floats = (floats + 15) / 16 * 16;
  runs.resize(static_cast<size_t>(threads * max_runs));
  offsets.resize(static_cast<size_t>(threads * ints));
  return {buffer.get(threads * floats), floats, runs.data(), max_runs, offsets.data(), ints};
}

// ---- the transforms ----
// Each is a 1-D transform down the columns, then along the rows (apply above). Those of the
// images work on a whole chunk at a time: copy the rows the chunk's patches read into strips
// (below), then transform with loops across the tiles, on vectors of tiles gathered from the
// strips (for_each_lane above: tiles are the long dimension; a row of 7×7 maps has only 4 tiles
// of 2×2).

// U = G g Gᵀ of one 3×3 filter g (row-major); u[ξ] = U[ξ / α][ξ % α].
template <int M>
void transform_filter(const float* g, float* u) {
  using W = Winograd<M>;
  constexpr int A = W::kAlpha;
  float t[A][3];  // G g, column by column
  for (int c = 0; c < 3; ++c) apply<false, A, 3>(W::G, g + c, 3, &t[0][c], 3);
  for (int r = 0; r < A; ++r) apply<false, A, 3>(W::G, t[r], 1, u + r * A, 1);  // (G g) Gᵀ, row by row
}

// The strips below copy, channel after channel, a few short rows of each plane: streams too
// short for the hardware prefetcher, so on maps larger than the caches every row waits for
// memory. With `prefetch` they ask for the same rows kPrefetchPlanes channels on; only for
// tensors above kPrefetchBytes, whose rows the caches do not keep between passes, on maps of at
// least kPrefetchMinPlane pixels (the history of both follows).
// AVX-512 machine, 2 threads, bench/compare.py 3 rounds, against no prefetch: ResNet-18's
// 64- and 128-channel layers (32 and 16 MB), dw 1.48× and 1.40× (F(4×4)), 1.41× and 1.30×
// (F(2×2)), forward and dx 0.99-1.09×; airbench's 24 -> 64 and 64 -> 256 layers, dx 1.18-1.44×,
// dw 1.23-1.33×. Prefetching on every tensor made ResNet-20's layers (2 and 4 MB) and
// ResNet-18's 256-channel layer (8 MB) 0.91-1.03× as fast (with the threshold, 0.95-1.03×:
// noise); in training too, a 1 MB threshold took ResNet-20's Winograd backward from 2.34 and
// 2.36 s to 2.42 and 2.51 s over 39 steps (edl train --profile, two alternating pairs).
// Later, with the strips, training finds every tensor out of cache (bench/README.md, "Warm or
// cold caches") and asking pays on maps of 16×16 and up once the tensor outgrows a core's L2:
// ResNet-20's 32-channel 16×16 layers (4 MB), backward 1151/1118/1103 and 1165/1110/1135 ->
// 1048/1036/982 and 1027/1032/1050 ms over 39 steps, forward 0.93-1.00× as long (edl train
// --profile-shapes, six alternating pairs); on 8×8 maps and smaller, where a 4 KB page holds
// 16 or more planes and the hardware prefetcher keeps up, it bought nothing (ResNet-20's 64
// channels) or lost a little (ResNet-18's 256 channels 1.00-1.08× as long in three pairs, its
// 512 on 4×4 maps 0.98-1.16×).
constexpr int64_t kPrefetchPlanes = 4;
constexpr int64_t kPrefetchBytes = 2 << 20;
constexpr int64_t kPrefetchMinPlane = 16 * 16;
bool prefetch_planes(int64_t floats, int64_t plane) {
  return floats * static_cast<int64_t>(sizeof(float)) > kPrefetchBytes && plane >= kPrefetchMinPlane;
}

// The transforms read the tiles' patches (and dy's blocks) from strips: the rows of the chunk's
// runs of tiles, copied whole, one after another, S floats apart. Run number r's `rows` rows
// start at strip + rows·r·S; its tile j0 + jj reads value (k, q) of its patch or block at
// strip[rows·r·S + M·jj + k·S + q]. The transforms gather a vector of tiles' values of one
// position (k, q) with one instruction, from the offsets strip_offsets computes once per chunk
// (the runs are the same in every channel). They replaced a scalar load and store per value:
// AVX-512, 2 threads, bench/compare.py 3 rounds, ResNet-20's 32- and 64-channel layers
// 1.07-1.28× as fast (dw the most), ResNet-18's 1.02-1.14× (0.95-1.13× on its 64 channels,
// whose passes wait on memory); ResNet-20's Winograd passes in training 3.43 -> 3.18 s over 39
// steps (edl train --profile, two alternating pairs).
template <int M>
int64_t strip_stride(const Tiling& tl, int64_t max_len, int64_t border) {
  return M * std::min(tl.cols, max_len) + border;
}
// idx[t·lanes + l] = rows·r·S + M·jj + l·ls for the tiles t of the runs (t = r.col + jj): where
// lane l of tile t reads in the strips, whose lanes (channels) are ls floats apart.
template <int M>
void strip_offsets(std::span<const TileRun> runs, int64_t rows, int64_t S, int64_t lanes, int64_t ls, int32_t* idx) {
  for (size_t r = 0; r < runs.size(); ++r)
    for (int64_t jj = 0; jj < runs[r].len; ++jj)
      for (int64_t l = 0; l < lanes; ++l)
        idx[(runs[r].col + jj) * lanes + l] =
            static_cast<int32_t>(rows * static_cast<int64_t>(r) * S + M * jj + l * ls);
}

// The input strips of channel plane `plane` of image 0 (images `image` floats apart): per run,
// the α rows of its patches, from row M·i - 1 and column M·j0 - 1, padding written out as zeros.
template <int M>
void fill_patch_strips(const float* plane, int64_t image, const Conv2dShape& s, std::span<const TileRun> runs,
                       float* strip, int64_t S, bool prefetch) {
  constexpr int A = Winograd<M>::kAlpha;
  for (const TileRun& r : runs) {
    const float* x = plane + r.n * image;
    for (int k = 0; k < A; ++k, strip += S) {
      const int64_t ih = M * r.i - 1 + k, first = M * r.j0 - 1, width = M * r.len + 2;
      const int64_t lo = std::max<int64_t>(first, 0), hi = std::min(first + width, s.W);
      if (ih < 0 || ih >= s.H || lo >= hi) {
        std::fill_n(strip, width, 0.0f);
        continue;
      }
      std::fill(strip, strip + (lo - first), 0.0f);
      std::copy(x + ih * s.W + lo, x + ih * s.W + hi, strip + (lo - first));
      std::fill(strip + (hi - first), strip + width, 0.0f);
      if (prefetch) prefetch_floats(x + kPrefetchPlanes * s.H * s.W + ih * s.W + lo, hi - lo);
    }
  }
}

// The strips of channel plane `plane` of dy: per run, the M rows of its blocks, from row M·i
// and column M·j0, zeros past the map's edge.
template <int M>
void fill_block_strips(const float* plane, int64_t image, const Conv2dShape& s, std::span<const TileRun> runs,
                       float* strip, int64_t S, bool prefetch) {
  for (const TileRun& r : runs)
    for (int k = 0; k < M; ++k, strip += S) {
      const int64_t oh = M * r.i + k, width = oh < s.OH ? std::min(M * r.len, s.OW - M * r.j0) : 0;
      const float* src = plane + r.n * image + oh * s.OW + M * r.j0;
      if (width > 0) std::copy_n(src, width, strip);
      if (width > 0 && prefetch) prefetch_floats(src + kPrefetchPlanes * s.OH * s.OW, width);
      std::fill(strip + width, strip + M * r.len, 0.0f);
    }
}

// The loader of a transform: the values e .. e + lanes - 1 of position (k, q), from strips and
// the offsets of strip_offsets.
struct StripLoader {
  const float* strip;
  int64_t S;
  const int32_t* idx;
  template <class V>
  V operator()(int k, int q, int64_t e) const {
    return gather_as<V>(strip + k * S + q, idx + e);
  }
};

// v = Bᵀ d B elementwise over n values (a multiple of NR) per position: d(k, q, e) → v(ξ, e0),
// where the NR values of position ξ for e0 .. e0+NR-1 go (a row of a panel of the GEMM's B
// operand). in.template operator()<V>(k, q, e) loads the values e .. of patch position (k, q);
// d (α²·n floats) holds Bᵀ d between the two passes.
template <int M, class In, class Out>
void transform_patches(In in, float* d, int64_t n, Out v) {
  using W = Winograd<M>;
  constexpr int A = W::kAlpha;
  for (int q = 0; q < A; ++q)  // Bᵀ d, down each column q of the patches
    for_each_lane(n, [&]<class V>(int64_t e) {
      V col_in[A], col[A];
      for (int k = 0; k < A; ++k) col_in[k] = in.template operator()<V>(k, q, e);
      apply<false, A, A>(W::BT, col_in, 1, col, 1);
      for (int r = 0; r < A; ++r) store_to(d + (A * r + q) * n + e, col[r]);
    });
  for (int64_t e0 = 0; e0 < n; e0 += kGemmNR)
    for (int r = 0; r < A; ++r) {  // (Bᵀ d) B, along each row r: V[r][c] = Σ_q (Bᵀ d)[r][q] · Bᵀ[c][q]
      float* out[A];
      for (int c = 0; c < A; ++c) out[c] = v(A * r + c, e0);
      for (int64_t l = 0; l < kGemmNR; l += kVecLanes) {  // NR is a multiple of the lanes
        Vec row_in[A], row[A];
        for (int q = 0; q < A; ++q) row_in[q] = load_as<Vec>(d + (A * r + q) * n + e0 + l);
        apply<false, A, A>(W::BT, row_in, 1, row, 1);
        for (int c = 0; c < A; ++c) store_to(out[c] + l, row[c]);
      }
    }
}

// The M×M outputs Aᵀ m A of tiles 0 .. T-1, m[ξ·ms + tile] the product's α×α tiles: output
// row r, column c of tile t goes to out(r, c, t, value) (for vectors of tiles at once).
template <int M, class Out>
void transform_products(const float* m, int64_t ms, int64_t T, Out out) {
  using W = Winograd<M>;
  constexpr int A = W::kAlpha;
  for_each_lane(T, [&]<class V>(int64_t t) {
    V in[A][A], rows[M][A];  // the products' α×α tiles; Aᵀ m, column by column
    for (int k = 0; k < A; ++k)
      for (int q = 0; q < A; ++q) in[k][q] = load_as<V>(m + (A * k + q) * ms + t);
    for (int q = 0; q < A; ++q) apply<false, M, A>(W::AT, &in[0][q], A, &rows[0][q], A);
    for (int r = 0; r < M; ++r) {  // (Aᵀ m) A
      V o[M];
      apply<false, M, A>(W::AT, rows[r], 1, o, 1);
      for (int c = 0; c < M; ++c) out(r, c, t, o[c]);
    }
  });
}

// The outputs go to strips, as the inputs come from them: per run, M rows of M·len floats
// (S apart), tile j0 + jj's output (r, c) at strip[M·run·S + M·jj + r·S + c], each vector of
// tiles stored with one scatter; the offsets are strip_offsets'. Then write_outputs copies the
// rows into the channel's plane of y (plane, images `image` floats apart): y = (accumulate ? y :
// 0) + strip + bias, within the map. (Tiles past the chunk's last scatter to a row after the
// strips that nothing reads.) Against a scalar store per value: AVX-512, 2 threads,
// bench/compare.py 3 rounds, forward and dx of ResNet-20's 32 and 64 channels 1.10-1.19×,
// ResNet-18's 1.04-1.12×; ResNet-20's Winograd forward in training 865 -> 769-782 ms over 39
// steps (edl train --profile, two alternating pairs).
struct StripStorer {
  float* strip;
  int64_t S;
  const int32_t* idx;
  template <class V>
  void operator()(int r, int c, int64_t t, const V& v) const {
    scatter_as(strip + r * S + c, idx + t, v);
  }
};
// With `next`, each row asks for the same row of the next channel's plane for writing, which
// the call for that channel writes next (each plane its own pages: every row would otherwise
// wait to read its lines in before writing them). ResNet-20 (edl train --profile-shapes, 39
// steps, six alternating pairs, ms): 32-channel forward 470-504 -> 457-478, backward (whose dx
// writes here) 1006-1071 -> 988-1031; 64 channels 0.97-1.00× as long.
template <int M>
void write_outputs(const float* strip, int64_t S, std::span<const TileRun> runs, float bias, float* plane,
                   int64_t image, const Conv2dShape& s, bool accumulate, bool next) {
  for (const TileRun& r : runs) {
    const int64_t width = std::min(M * r.len, s.OW - M * r.j0);
    for (int k = 0; k < M; ++k, strip += S) {
      if (M * r.i + k >= s.OH) continue;
      float* y = plane + r.n * image + (M * r.i + k) * s.OW + M * r.j0;
      if (next) prefetch_floats_for_write(y + s.OH * s.OW, width);
      if (accumulate)
        for (int64_t q = 0; q < width; ++q) y[q] += strip[q] + bias;
      else
        for (int64_t q = 0; q < width; ++q) y[q] = strip[q] + bias;
    }
  }
}

// z = A blk Aᵀ elementwise over n values per position (the weight gradient's transform of the
// blocks of dy, A = (Aᵀ)ᵀ): blk(r, c, e) → z(ξ)[e], blk as `in` of transform_patches.
template <int M, class In, class Out>
void transform_blocks(In blk, int64_t n, Out z) {
  using W = Winograd<M>;
  constexpr int A = W::kAlpha;
  for_each_lane(n, [&]<class V>(int64_t e) {
    V b[M][M], cols[A][M];  // the blocks; A blk, column by column
    for (int k = 0; k < M; ++k)
      for (int c = 0; c < M; ++c) b[k][c] = blk.template operator()<V>(k, c, e);
    for (int c = 0; c < M; ++c) apply<true, A, M>(W::AT, &b[0][c], M, &cols[0][c], M);
    for (int r = 0; r < A; ++r) {  // (A blk) Aᵀ
      V row[A];
      apply<true, A, M>(W::AT, cols[r], 1, row, 1);
      for (int c = 0; c < A; ++c) store_to(z(A * r + c) + e, row[c]);
    }
  });
}

// dg (3×3) += Gᵀ du G: the weight gradient of one filter from its α×α transformed gradient.
template <int M>
void untransform_filter_grad(const float* du, float* dg) {
  using W = Winograd<M>;
  constexpr int A = W::kAlpha;
  float t[3][A];  // Gᵀ du, column by column
  for (int c = 0; c < A; ++c) apply<true, 3, A>(W::G, du + c, A, &t[0][c], A);
  for (int r = 0; r < 3; ++r) {  // (Gᵀ du) G
    float row[3];
    apply<true, 3, A>(W::G, t[r], 1, row, 1);
    for (int c = 0; c < 3; ++c) dg[3 * r + c] += row[c];
  }
}

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// Tiles per chunk: a multiple of NR (at most kMaxChunk) whose buffers — α²·(C + OC) floats a
// tile — take about `bytes`. The forward pass keeps its chunk (the transformed input and the
// products) in L2 from one step to the next: 512 KB. The weight gradient's chunk is the depth
// of its products, each of which loads and stores an MR×NR tile of dU (α²·OC·C floats), so
// deeper chunks amortize that better, while shallower ones stay in L2 between their transforms
// and their products. Which wins depends on the machine (kWgradChunkBytes).
int64_t chunk_tiles(int64_t positions, int64_t C, int64_t OC, int64_t bytes) {
  const int64_t tiles = bytes / (positions * (C + OC) * static_cast<int64_t>(sizeof(float)));
  return std::clamp<int64_t>(tiles / kGemmNR, 1, kMaxChunk / kGemmNR) * kGemmNR;
}

// The weight gradient's chunk, a thread's share of the transformed tiles at a time:
// - with AVX2 (an AMD EPYC, 512 KB of L2 per core): 8 MB a thread. With
//   2 MB, F(4×4) on 256 channels had chunks of 16 tiles, and its products on airbench's 7×7
//   layer took 58 ms instead of 33 (1 thread);
// - with AVX-512 (an Intel Xeon, 2 MB of L2 per core; one thread reads 17-20 GB/s from 4-16 MB
//   buffers, 10 from 64 MB): 512 KB, the forward pass's size, one panel of 32 tiles from 64
//   channels on: bench/compare.py, 3 rounds, dw on 2 threads, against 8 MB: ResNet-20's 32 and
//   64 channels 4.40 -> 3.37 and 4.37 -> 3.34 ms (at 1 MB; 512 KB another 1.04-1.13×),
//   ResNet-18's 64, 128 and 256 channels 1.36×, 1.24×, 1.34×, airbench's 64 and 256 channels
//   1.56×, 1.42×; 2 MB ran at 0.66-0.98× the speed of 1 MB.
//   In training the difference is larger than in the benchmark, which reads the same layer's
//   data again and again: ResNet-20's Winograd backward took 4.08-4.29 s of 39 steps with 8 MB,
//   2.71-3.01 s with 1 MB and 2.72-2.85 s with 512 KB (edl train --profile, two alternating
//   pairs each).
#if XSIMD_WITH_AVX512F
constexpr int64_t kWgradChunkBytes = 512 * 1024;
#else
constexpr int64_t kWgradChunkBytes = 8192 * 1024;
#endif

// With stats: the PlaneStats of y too, where every chunk holds whole images (conv2d_winograd.h).
template <int M>
void forward(const float* x, const float* w, const float* b, float* y, const Conv2dShape& s, bool accumulate,
             PlaneStatsOut* stats = nullptr) {
  EDL_CHECK(conv2d_winograd_applies(s), "conv2d winograd: needs a 3x3 kernel, stride 1, padding 1 and groups 1");
  constexpr int64_t kXi = Winograd<M>::kAlpha * Winograd<M>::kAlpha;
  const int64_t C = s.C, OC = s.OC, OCP = round_up(OC, kGemmMR);

  // U[ξ] (OC × C) at up + ξ·us, packed as the micro-kernel's A operand: panels of MR output
  // channels, each holding for every input channel c the MR values U[ξ][oc][c] (gemm_pack_a's
  // layout; zero rows past OC), written by the filter transforms as they come. One cache line
  // more than a block needs: the transforms write α² streams a block apart, which a multiple of
  // 4 KB would put in the same set of the L1 cache (as in vs and ms below). Against transforming
  // into an unpadded U and packing it (AVX-512, 2 threads, bench/compare.py 3 rounds): forward
  // and dx of ResNet-18's 256 channels 1.24×, of its 512 (F(2×2)) 1.29-1.35×, ResNet-20's 64
  // channels 1.10-1.13×; ResNet-18's ops in training 11.47 and 11.21 -> 10.79 and 10.48 s over
  // 7 steps (edl train --profile, two alternating pairs).
  static thread_local ScratchBuffer up_buffer;  // reused: a fresh buffer would page-fault every call
  const int64_t us = OCP * C + 16;
  float* up = up_buffer.get(kXi * us);
#pragma omp parallel for schedule(static) if (kXi * OC * C >= kParallelMin)
  for (int64_t o0 = 0; o0 < OCP; o0 += kGemmMR)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t r = 0; r < kGemmMR; ++r) {
        float f[kXi] = {};
        if (o0 + r < OC) transform_filter<M>(w + ((o0 + r) * C + c) * 9, f);
        for (int64_t xi = 0; xi < kXi; ++xi) up[xi * us + o0 * C + c * kGemmMR + r] = f[xi];
      }

  const Tiling tl = tiling(s, M);
  const int64_t T = chunk_tiles(kXi, C, OC, 512 * 1024), panels = T / kGemmNR, chunks = (tl.total + T - 1) / T;
  const int64_t P = s.OH * s.OW;
  const bool whole_images = stats && tl.per_image > 0 && T % tl.per_image == 0;
  // The positions' blocks of vp and m, one cache line more than they need: blocks a multiple
  // of 4 KB apart would put the streams a transform reads or writes at once in the same sets of
  // the L1 cache, which evict each other (measured: the output transform of ResNet-20's
  // 16-channel layers took 30% of the time with blocks 16 KB apart).
  const int64_t vs = panels * C * kGemmNR + 16, ms = OC * T + 16;
  const bool prefetch = prefetch_planes(s.N * C * s.H * s.W, s.H * s.W);
  constexpr int64_t A = Winograd<M>::kAlpha;
  const int64_t S = strip_stride<M>(tl, T, 2), strip_floats = max_runs(tl, T) * A * S;
  const int64_t So = strip_stride<M>(tl, T, 0), out_floats = (max_runs(tl, T) + 1) * M * So;
  const ThreadSlices scratch = thread_slices(kXi * (vs + ms + T) + strip_floats + out_floats, T, 2 * T);
#pragma omp parallel for schedule(static)
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    // vp: V[ξ] of the chunk as the micro-kernel's B operand, panels of NR tiles:
    // vp[ξ·vs + (panel·C + c)·NR + lane]. m: the products, M[ξ] (OC × T) at m + ξ·ms.
    // d: Bᵀ d of one channel's patches; strip: their strips; out: one channel's outputs.
    const int thread = omp_get_thread_num();
    float* vp = scratch.floats_of(thread);
    float* m = vp + kXi * vs;
    float* d = m + kXi * ms;
    float* strip = d + kXi * T;
    float* out = strip + strip_floats;
    const int64_t t0 = chunk * T, t1 = std::min(tl.total, t0 + T);
    TileRun* run_buffer = scratch.runs_of(thread);
    const std::span<const TileRun> runs(run_buffer, static_cast<size_t>(tile_runs(tl, t0, t1, run_buffer)));
    int32_t* idx = scratch.offsets_of(thread);
    strip_offsets<M>(runs, A, S, 1, 0, idx);
    std::fill(idx + (t1 - t0), idx + T, 0);  // tiles past the last read the first's patch: columns no output reads
    const StripLoader patches{strip, S, idx};
    int32_t* out_idx = idx + T;
    strip_offsets<M>(runs, M, So, 1, 0, out_idx);
    std::fill(out_idx + (t1 - t0), out_idx + T, static_cast<int32_t>(runs.size() * M * So));
    const StripStorer outputs{out, So, out_idx};
    for (int64_t c = 0; c < C; ++c) {
      fill_patch_strips<M>(x + c * s.H * s.W, C * s.H * s.W, s, runs, strip, S, prefetch);
      transform_patches<M>(patches, d, T,
                           [&](int64_t xi, int64_t t) { return vp + xi * vs + (t / kGemmNR * C + c) * kGemmNR; });
    }
    for (int64_t xi = 0; xi < kXi; ++xi)
      for (int64_t o0 = 0; o0 < OC; o0 += kGemmMR) {
        const float* a = up + xi * us + o0 * C;  // panel o0 / MR: MR×C
        for (int64_t p = 0; p < panels; ++p) {
          const float* bp = vp + xi * vs + p * C * kGemmNR;
          gemm_tile_rows<true>(C, a, [bp](int64_t k) { return bp + k * kGemmNR; }, m + xi * ms + o0 * T + p * kGemmNR,
                               T, std::min<int64_t>(kGemmMR, OC - o0), kGemmNR, false);
        }
      }
    for (int64_t oc = 0; oc < OC; ++oc) {
      transform_products<M>(m + oc * T, ms, T, outputs);
      write_outputs<M>(out, So, runs, b ? b[oc] : 0.0f, y + oc * P, OC * P, s, accumulate, oc + 1 < OC);
      // The chunk's planes of channel oc are complete: their statistics while they are in L1.
      if (whole_images)
        for (int64_t n = t0 / tl.per_image; n < (t1 + tl.per_image - 1) / tl.per_image; ++n)
          plane_mean_m2_simd(y + (n * OC + oc) * P, P, stats->mean[n * OC + oc], stats->m2[n * OC + oc]);
    }
  }
  if (stats) stats->done = whole_images;
}

template <int M>
void backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db, const Conv2dShape& s,
              bool add_dx) {
  EDL_CHECK(conv2d_winograd_applies(s), "conv2d winograd: needs a 3x3 kernel, stride 1, padding 1 and groups 1");
  constexpr int64_t kXi = Winograd<M>::kAlpha * Winograd<M>::kAlpha;
  const int64_t C = s.C, OC = s.OC, P = s.OH * s.OW;
  if (db) conv2d_bias_backward(dy, db, s);

  // dx is the convolution of dy with wt (C, OC, 3, 3), wt[c][oc][kh][kw] = w[oc][c][2-kh][2-kw],
  // padding 3 - 1 - 1 = 1: the forward kernel.
  if (dx) {
    static thread_local ScratchBuffer wt_buffer;
    float* wt = wt_buffer.get(C * OC * 9);
    for (int64_t oc = 0; oc < OC; ++oc)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t k = 0; k < 9; ++k) wt[(c * OC + oc) * 9 + 8 - k] = w[(oc * C + c) * 9 + k];
    Conv2dShape t = s;
    t.C = OC, t.OC = C, t.H = s.OH, t.W = s.OW, t.OH = s.H, t.OW = s.W;
    forward<M>(dy, wt, nullptr, dx, t, /*accumulate=*/add_dx);
  }
  const Tiling tl = tiling(s, M);
  if (!dw || tl.total == 0) return;

  // dU[ξ] (OC × C) = Σ over tiles of Z[ξ] (OC × tiles) · V[ξ]ᵀ (tiles × C), the tiles being the
  // product's depth. The tiles are split into a fixed number of slabs (not one per thread, so
  // that the sums do not depend on the thread count); each slab sums its chunks into its own
  // dU, and the slabs are added in order at the end: at most 8 (2·8 threads or fewer keep
  // busy), of at least 256 tiles each, so that adding the slabs' dU (α²·OC·C floats each: 4 MB
  // for 256 channels with F(2×2), 9 MB with F(4×4)) costs little next to their products
  // (α²·OC·C multiply-adds per tile).
  // Chunks of equal size (whole panels), no larger than chunk_tiles allows: on ResNet-20's 8×8
  // maps (512 tiles of 4×4, 64 channels) chunks of the largest size were 448 + 64 tiles, and of
  // its two slabs one did 7 times the other's work (2 threads no faster than 1).
  const int64_t largest = chunk_tiles(kXi, C, OC, kWgradChunkBytes), chunks = (tl.total + largest - 1) / largest;
  const int64_t T = round_up((tl.total + chunks - 1) / chunks, kGemmNR);
  // Tiles per copy-and-transform step: d (α²·NR floats a tile) at most 96 KB, and a multiple
  // of a row of tiles where a row fits, so that the steps cut the chunk's runs of tiles (which
  // are copied row by row: short runs cost more) no more often than the chunk's own edges do.
  // d in L1 (24 KB) paid while its values were placed one by one; with the strips, larger steps
  // (fewer, longer runs) do: AVX-512, 2 threads, bench/compare.py 3 rounds, dw of ResNet-18's
  // 64- to 512-channel layers 1.03-1.21×, airbench's 1.03-1.28×, ResNet-20's 1.00-1.18×
  // against 24 KB; ResNet-18's Winograd backward in training 3.30 + 1.54 and 3.31 + 1.35 s ->
  // 3.08 + 1.41 and 3.08 + 1.32 s over 7 steps; 192 KB was no faster.
  const int64_t budget = std::max<int64_t>(1, 24576 / (kXi * kGemmNR));
  const int64_t sub = std::min(T, tl.cols <= budget ? budget / tl.cols * tl.cols : budget);
  const int64_t OP = (OC + kGemmMR - 1) / kGemmMR, CP = (C + kGemmNR - 1) / kGemmNR;
  const int64_t slabs = std::clamp<int64_t>(tl.total / 256, 1, std::min<int64_t>(8, chunks));
  const int64_t filters = OC * C;
  static thread_local ScratchBuffer du_buffer;  // reused: a fresh vector would page-fault every call
  float* du = du_buffer.get(slabs * kXi * filters);
  std::fill_n(du, slabs * kXi * filters, 0.0f);
  const int64_t zs = OP * T * kGemmMR + 16, vts = CP * T * kGemmNR + 16;  // + a cache line: see the forward pass
  const bool prefetch_x = prefetch_planes(s.N * C * s.H * s.W, s.H * s.W), prefetch_dy = prefetch_planes(s.N * OC * P, P);
  // The strips of a panel of NR input channels (patch_strips floats each) and of MR output
  // channels of dy (block_strips each), and the offsets where each (tile, channel) reads them.
  constexpr int64_t A = Winograd<M>::kAlpha;
  const int64_t sp = strip_stride<M>(tl, sub, 2), sb = strip_stride<M>(tl, sub, 0);
  const int64_t patch_strips = max_runs(tl, sub) * A * sp, block_strips = max_runs(tl, sub) * M * sb;
  const ThreadSlices scratch = thread_slices(
      kXi * (zs + vts + sub * kGemmNR) + kGemmNR * patch_strips + kGemmMR * block_strips, sub, sub * (kGemmNR + kGemmMR));
#pragma omp parallel for schedule(static)
  for (int64_t slab = 0; slab < slabs; ++slab) {
    // zp: Z[ξ] as the micro-kernel's A operand, zp[ξ][oc panel][tile][MR];
    // vt: V[ξ]ᵀ as its B operand, vt[ξ][c panel][tile][NR].
    const int thread = omp_get_thread_num();
    float* zp = scratch.floats_of(thread);
    float* vt = zp + kXi * zs;
    // d: Bᵀ d of a panel of NR input channels' patches side by side, d[position][tile][lane].
    // In a last, partial panel the strips of the lanes past the last channel hold another
    // panel's rows (zeros at first): they only reach rows and columns of dU that gemm_tile_rows
    // drops.
    float* d = vt + kXi * vts;
    float* x_strips = d + kXi * sub * kGemmNR;
    float* dy_strips = x_strips + kGemmNR * patch_strips;
    std::fill_n(x_strips, kGemmNR * patch_strips + kGemmMR * block_strips, 0.0f);
    int32_t* x_idx = scratch.offsets_of(thread);
    int32_t* dy_idx = x_idx + sub * kGemmNR;
    float* dus = du + slab * kXi * filters;
    for (int64_t chunk = slab * chunks / slabs; chunk < (slab + 1) * chunks / slabs; ++chunk) {
      const int64_t t0 = chunk * T, t1 = std::min(tl.total, t0 + T);
      // The transforms write the panels: tiles are the rows of a panel and its channels the
      // lanes, so each value e of a position is lane e % NR of tile e / NR (MR for Z). A few
      // tiles at a time (sub, above), so that d and the strips stay in L1 or L2 between the
      // copies and the transforms: over the whole chunk they would not (ResNet-18's 64-channel
      // layer: 256 KB of d), and the input transform took longer than the products.
      TileRun* run_buffer = scratch.runs_of(thread);
      for (int64_t s0 = t0; s0 < t1; s0 += sub) {
        const int64_t n = std::min(sub, t1 - s0);
        const std::span<const TileRun> runs(run_buffer, static_cast<size_t>(tile_runs(tl, s0, s0 + n, run_buffer)));
        const int64_t e0 = s0 - t0;  // the sub-chunk's first tile in the chunk's panels
        strip_offsets<M>(runs, A, sp, kGemmNR, patch_strips, x_idx);
        strip_offsets<M>(runs, M, sb, kGemmMR, block_strips, dy_idx);
        for (int64_t cp = 0; cp < CP; ++cp) {
          for (int64_t c = cp * kGemmNR; c < std::min(C, (cp + 1) * kGemmNR); ++c)
            fill_patch_strips<M>(x + c * s.H * s.W, C * s.H * s.W, s, runs, x_strips + c % kGemmNR * patch_strips, sp,
                                 prefetch_x);
          transform_patches<M>(StripLoader{x_strips, sp, x_idx}, d, n * kGemmNR,
                               [&](int64_t xi, int64_t e) { return vt + xi * vts + (cp * T + e0) * kGemmNR + e; });
        }
        for (int64_t op = 0; op < OP; ++op) {
          for (int64_t oc = op * kGemmMR; oc < std::min(OC, (op + 1) * kGemmMR); ++oc)
            fill_block_strips<M>(dy + oc * P, OC * P, s, runs, dy_strips + oc % kGemmMR * block_strips, sb, prefetch_dy);
          transform_blocks<M>(StripLoader{dy_strips, sb, dy_idx}, n * kGemmMR,
                              [&](int64_t xi) { return zp + xi * zs + (op * T + e0) * kGemmMR; });
        }
      }
      const int64_t kc = t1 - t0;  // the chunk's tiles; a short last chunk leaves the rest of the panels unread
      for (int64_t xi = 0; xi < kXi; ++xi)
        for (int64_t op = 0; op < OP; ++op) {
          const float* a = zp + xi * zs + op * T * kGemmMR;
          for (int64_t cp = 0; cp < CP; ++cp) {
            const float* bp = vt + xi * vts + cp * T * kGemmNR;
            gemm_tile_rows<true>(kc, a, [bp](int64_t k) { return bp + k * kGemmNR; },
                                 dus + (xi * OC + op * kGemmMR) * C + cp * kGemmNR, C,
                                 std::min<int64_t>(kGemmMR, OC - op * kGemmMR), std::min<int64_t>(kGemmNR, C - cp * kGemmNR),
                                 true);
          }
        }
    }
  }
#pragma omp parallel for schedule(static) if (slabs * kXi * filters >= kParallelMin)
  for (int64_t e = 0; e < kXi * filters; ++e)
    for (int64_t slab = 1; slab < slabs; ++slab) du[e] += du[slab * kXi * filters + e];
#pragma omp parallel for schedule(static) if (kXi * filters >= kParallelMin)
  for (int64_t oc = 0; oc < OC; ++oc)
    for (int64_t c = 0; c < C; ++c) {
      float f[kXi];
      for (int64_t xi = 0; xi < kXi; ++xi) f[xi] = du[(xi * OC + oc) * C + c];
      untransform_filter_grad<M>(f, dw + (oc * C + c) * 9);
    }
}

}  // namespace

bool conv2d_winograd_applies(const Conv2dShape& s) {
  return s.KH == 3 && s.KW == 3 && s.stride == 1 && s.padding == 1 && s.groups == 1;
}

void conv2d_forward_winograd(const float* x, const float* w, const float* b, float* y, const Conv2dShape& s) {
  forward<2>(x, w, b, y, s, /*accumulate=*/false);
}
void conv2d_backward_winograd(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                              const Conv2dShape& s) {
  backward<2>(x, w, dy, dx, dw, db, s, /*add_dx=*/false);
}
void conv2d_backward_winograd_add_dx(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                                     const Conv2dShape& s) {
  backward<2>(x, w, dy, dx, dw, db, s, /*add_dx=*/true);
}
void conv2d_forward_winograd4(const float* x, const float* w, const float* b, float* y, const Conv2dShape& s) {
  forward<4>(x, w, b, y, s, /*accumulate=*/false);
}
void conv2d_forward_winograd_stats(const float* x, const float* w, const float* b, float* y, const Conv2dShape& s,
                                   PlaneStatsOut* stats) {
  forward<2>(x, w, b, y, s, /*accumulate=*/false, stats);
}
void conv2d_forward_winograd4_stats(const float* x, const float* w, const float* b, float* y, const Conv2dShape& s,
                                    PlaneStatsOut* stats) {
  forward<4>(x, w, b, y, s, /*accumulate=*/false, stats);
}
void conv2d_backward_winograd4(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                               const Conv2dShape& s) {
  backward<4>(x, w, dy, dx, dw, db, s, /*add_dx=*/false);
}
void conv2d_backward_winograd4_add_dx(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                                      const Conv2dShape& s) {
  backward<4>(x, w, dy, dx, dw, db, s, /*add_dx=*/true);
}

}  // namespace edl
