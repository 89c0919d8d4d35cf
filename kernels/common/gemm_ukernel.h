// gemm_ukernel.h — the GEMM micro-kernel: one MR×NR tile of C, kept in registers.
//
// The packed operands arrive as micro-panels (gemm.cpp lays them out):
//   a: MR values of one column of A per k, for k = 0..kc-1     (MR×kc, column after column)
//   b: NR values of one row of B per k, for k = 0..kc-1        (kc×NR, row after row)
// Each k is one rank-1 update of the tile:
//
//                 b[k][0 .. NR-1]   (NV vector loads)
//                 +--------------+
//   a[k][0]    -> | c00 ...  c0N |      c[i][:] += broadcast(a[k][i]) * b[k][:]
//   a[k][1]    -> | c10 ...  c1N |
//     ...         |      ...     |      MR × NV accumulator registers, each an FMA per k:
//   a[k][MR-1] -> | cM0 ...  cMN |      MR*NV FMAs per MR + NV loads
//                 +--------------+
//
// The tile is sized so that all accumulators, the NV vectors of b and one broadcast of a fit
// in the register file (AVX2: 16 registers, 6×16 floats = 12 accumulators + 2 + 1), and so
// that the loads per FMA are few enough for the FMA units to stay busy.
//
// Written once on xsimd::batch<float> (AVX-512, AVX2, SSE, NEON from the same source); a
// scalar kernel of the same shape serves machines xsimd has no SIMD for.
#pragma once

#include <cstdint>
#include <string>

#include <xsimd/xsimd.hpp>

namespace edl {

#if defined(XSIMD_NO_SUPPORTED_ARCHITECTURE)

// Scalar fallback, 4×4: the same loops with plain floats.
inline constexpr int kGemmMR = 4, kGemmNR = 4;
inline const std::string kGemmUkernelName = "4x4 scalar";

template <bool kAligned, class BRow>
inline void gemm_ukernel_rows(int64_t kc, const float* a, BRow b_row, float* c, int64_t ldc, bool accumulate) {
  float acc[kGemmMR][kGemmNR] = {};
  for (int64_t k = 0; k < kc; ++k) {
    const float* b = b_row(k);
    for (int i = 0; i < kGemmMR; ++i)
      for (int j = 0; j < kGemmNR; ++j) acc[i][j] += a[k * kGemmMR + i] * b[j];
  }
  for (int i = 0; i < kGemmMR; ++i)
    for (int j = 0; j < kGemmNR; ++j) c[i * ldc + j] = (accumulate ? c[i * ldc + j] : 0.0f) + acc[i][j];
}

inline void gemm_ukernel_f32(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate) {
  gemm_ukernel_rows<true>(kc, a, [b](int64_t k) { return b + k * kGemmNR; }, c, ldc, accumulate);
}

#else

using GemmBatch = xsimd::batch<float>;
inline constexpr int kGemmLanes = static_cast<int>(GemmBatch::size);

// Tile shapes per register file: NV vectors of B per row, MR rows of A.
#if XSIMD_WITH_NEON64
inline constexpr int kGemmNV = 3, kGemmMR = 8;  // 32 registers: 24 accumulators + 3 + 1
#elif XSIMD_WITH_AVX512F
// 8 rows, not the 12 that 32 registers hold (24 accumulators): convolutions have 16, 32 or 64
// output channels, which tiles of 12 rows cover with 24, 36 and 72 rows (a third, a ninth, a
// ninth of the work thrown away). ResNet-20's 16 -> 16 layer on 32×32 (implicit, 2 threads,
// bench/compare.py 3 rounds): forward 3.41 -> 2.58 ms, dx 4.01 -> 3.09; square products lose a
// little (2048³ 0.91-0.93×).
inline constexpr int kGemmNV = 2, kGemmMR = 8;  // 16 accumulators + 2 + 1 of 32 registers
#else
inline constexpr int kGemmNV = 2, kGemmMR = 6;  // 16 registers: 12 accumulators + 2 + 1
#endif
inline constexpr int kGemmNR = kGemmNV * kGemmLanes;
// The tile and the instruction set xsimd chose, e.g. "6x16 avx2" (read by the benchmark report).
inline const std::string kGemmUkernelName =
    std::to_string(kGemmMR) + "x" + std::to_string(kGemmNR) + " " + xsimd::default_arch::name();

// c (MR×NR, leading dimension ldc) = (accumulate ? c : 0) + a·b over kc, where row k of b (NR
// floats) is at b_row(k): the packed panel of the driver, or (implicit convolution) a row of the
// image itself. kAligned says whether those rows are 64-byte aligned (packed panels are).
template <bool kAligned, class BRow>
inline void gemm_ukernel_rows(int64_t kc, const float* a, BRow b_row, float* c, int64_t ldc, bool accumulate) {
  GemmBatch acc[kGemmMR][kGemmNV];
  for (int i = 0; i < kGemmMR; ++i)
    for (int j = 0; j < kGemmNV; ++j) acc[i][j] = GemmBatch(0.0f);
  // The tile of c is read (or, when written, fetched for ownership) only after the k loop;
  // asking for its lines now lets the loop hide their latency from L3 or memory. AVX-512,
  // bench/compare.py 3 rounds: 1024³ 1.15× on 1 thread, 2048³ 1.32×, ResNet-18's im2col
  // products 1.1–2.0×; oneDNN's entries (the control) 0.95–1.03×.
  for (int i = 0; i < kGemmMR; ++i) {
    __builtin_prefetch(c + i * ldc, 1);
    __builtin_prefetch(c + i * ldc + kGemmNR - 1, 1);
  }

  for (int64_t k = 0; k < kc; ++k, a += kGemmMR) {
    const float* b = b_row(k);
    GemmBatch bv[kGemmNV];
    for (int j = 0; j < kGemmNV; ++j)
      bv[j] = kAligned ? GemmBatch::load_aligned(b + j * kGemmLanes) : GemmBatch::load_unaligned(b + j * kGemmLanes);
    for (int i = 0; i < kGemmMR; ++i) {
      const GemmBatch ai(a[i]);  // broadcast
      for (int j = 0; j < kGemmNV; ++j) acc[i][j] = xsimd::fma(ai, bv[j], acc[i][j]);
    }
  }

  for (int i = 0; i < kGemmMR; ++i)
    for (int j = 0; j < kGemmNV; ++j) {
      float* p = c + i * ldc + j * kGemmLanes;
      (accumulate ? acc[i][j] + GemmBatch::load_unaligned(p) : acc[i][j]).store_unaligned(p);
    }
}

// The micro-kernel of the GEMM driver: b is a packed micro-panel, its rows NR floats apart.
inline void gemm_ukernel_f32(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate) {
  gemm_ukernel_rows<true>(kc, a, [b](int64_t k) { return b + k * kGemmNR; }, c, ldc, accumulate);
}

#endif

// An mr×nr tile of c (mr <= MR, nr <= NR), the same sum: a whole tile goes straight to c; an edge
// tile is computed whole into a buffer (the packed operands are zero-padded, so the extra rows
// and columns are harmless) and only its valid part is added to c.
template <bool kAligned, class BRow>
inline void gemm_tile_rows(int64_t kc, const float* a, BRow b_row, float* c, int64_t ldc, int64_t mr, int64_t nr,
                           bool accumulate) {
  if (mr == kGemmMR && nr == kGemmNR) {
    gemm_ukernel_rows<kAligned>(kc, a, b_row, c, ldc, accumulate);
    return;
  }
  alignas(64) float tile[kGemmMR * kGemmNR];
  gemm_ukernel_rows<kAligned>(kc, a, b_row, tile, kGemmNR, false);
  for (int64_t i = 0; i < mr; ++i)
    for (int64_t j = 0; j < nr; ++j) c[i * ldc + j] = (accumulate ? c[i * ldc + j] : 0.0f) + tile[i * kGemmNR + j];
}

}  // namespace edl
