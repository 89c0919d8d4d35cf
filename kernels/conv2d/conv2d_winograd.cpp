// conv2d_winograd.cpp — the Winograd F(2×2, 3×3) convolution declared in conv2d_winograd.h.
#include "kernels/conv2d/conv2d_winograd.h"

#include <algorithm>
#include <vector>

#include "engine/error.h"
#include "engine/threads.h"
#include "kernels/common/gemm.h"
#include "kernels/common/gemm_ukernel.h"

namespace edl {

namespace {

constexpr int64_t kXi = 16;  // positions ξ of a transformed 4×4 tile

// The map is cut into tiles of 2×2 outputs: tile (i, j) computes output rows 2i, 2i+1 and
// columns 2j, 2j+1 (the second row or column falls off an odd map and is dropped) and reads the
// 4×4 input patch at rows 2i-1 .. 2i+2, columns 2j-1 .. 2j+2 (padding 1: reads outside are 0).
// Tiles are numbered across the batch, row after row: tile t is image t / per_image.
struct Tiling {
  int64_t rows, cols, per_image, total;
};
Tiling tiling(const Conv2dShape& s) {
  const int64_t rows = (s.OH + 1) / 2, cols = (s.OW + 1) / 2;
  return {rows, cols, rows * cols, s.N * rows * cols};
}

// The chunk's tiles as runs along rows of tiles: tiles (i, j0 .. j0+len-1) of image n, the
// first of them the chunk's tile col. Runs are cut at kMaxRun tiles (the row buffers below).
constexpr int64_t kMaxRun = 256;
struct TileRun {
  int64_t n, i, j0, len, col;
};
void tile_runs(const Tiling& tl, int64_t t0, int64_t t1, std::vector<TileRun>& runs) {
  runs.clear();
  for (int64_t t = t0; t < t1;) {
    const int64_t n = t / tl.per_image, i = t % tl.per_image / tl.cols, j0 = t % tl.cols;
    const int64_t len = std::min({tl.cols - j0, t1 - t, kMaxRun});
    runs.push_back({n, i, j0, len, t - t0});
    t += len;
  }
}

// ---- the transforms ----
// Each is a 1-D transform down the columns, then along the rows. Those of the images work on
// a whole chunk at a time, one channel at a time: gather the chunk's patches into an array per
// patch position (d[position][tile]), then transform with loops across the tiles, which the
// compiler vectorizes (tiles are the long dimension; a row of 7×7 maps has only 4).

// U = G g Gᵀ of one 3×3 filter g (row-major); u(ξ) receives U[ξ / 4][ξ % 4].
template <class Out>
void transform_filter(const float* g, Out u) {
  float t[4][3];  // G g, down the columns
  for (int c = 0; c < 3; ++c) {
    t[0][c] = g[c];
    t[1][c] = 0.5f * (g[c] + g[3 + c] + g[6 + c]);
    t[2][c] = 0.5f * (g[c] - g[3 + c] + g[6 + c]);
    t[3][c] = g[6 + c];
  }
  for (int r = 0; r < 4; ++r) {  // (G g) Gᵀ, along the rows
    u(4 * r + 0) = t[r][0];
    u(4 * r + 1) = 0.5f * (t[r][0] + t[r][1] + t[r][2]);
    u(4 * r + 2) = 0.5f * (t[r][0] - t[r][1] + t[r][2]);
    u(4 * r + 3) = t[r][2];
  }
}

// d[(4r + q)·n + (col + jj)·ls] = x[2i-1+r][2(j0+jj)-1+q], the 4×4 input patch of each tile of
// the runs, from channel plane `plane` of image 0 (images `image` floats apart); 0 in the
// padding. Each position's tiles are n floats long, ls apart: ls = 1 for one channel, ls = NR
// for a panel of NR channels side by side (d then points at the channel's lane).
void gather_patches(const float* plane, int64_t image, const Conv2dShape& s, const std::vector<TileRun>& runs,
                    float* d, int64_t n, int64_t ls) {
  for (const TileRun& r : runs) {
    const float* x = plane + r.n * image;
    for (int k = 0; k < 4; ++k) {
      const int64_t ih = 2 * r.i - 1 + k, first = 2 * r.j0 - 1, width = 2 * r.len + 2;
      float seg[2 * kMaxRun + 2];  // the patches' columns of this row, padding written out
      const int64_t lo = std::max<int64_t>(first, 0), hi = std::min(first + width, s.W);
      std::fill_n(seg, width, 0.0f);
      if (ih >= 0 && ih < s.H)
        for (int64_t q = lo; q < hi; ++q) seg[q - first] = x[ih * s.W + q];
      for (int q = 0; q < 4; ++q) {
        float* dst = d + (4 * k + q) * n + r.col * ls;
        for (int64_t jj = 0; jj < r.len; ++jj) dst[jj * ls] = seg[2 * jj + q];
      }
    }
  }
}

// v = Bᵀ d B elementwise over n values (a multiple of NR) per position: d[position·n + e] →
// v(ξ, e0), where the NR values of position ξ for e0 .. e0+NR-1 go (a row of a panel of the
// GEMM's B operand). d is overwritten with Bᵀ d.
template <class Out>
void transform_patches(float* d, int64_t T, Out v) {
  for (int q = 0; q < 4; ++q) {  // Bᵀ d, down each column q of the patches
    float *d0 = d + q * T, *d1 = d + (4 + q) * T, *d2 = d + (8 + q) * T, *d3 = d + (12 + q) * T;
    for (int64_t t = 0; t < T; ++t) {
      const float r0 = d0[t] - d2[t], r1 = d1[t] + d2[t], r2 = d2[t] - d1[t], r3 = d1[t] - d3[t];
      d0[t] = r0, d1[t] = r1, d2[t] = r2, d3[t] = r3;
    }
  }
  for (int64_t t0 = 0; t0 < T; t0 += kGemmNR)
    for (int r = 0; r < 4; ++r) {  // (Bᵀ d) B, along each row r
      const float *c0 = d + 4 * r * T + t0, *c1 = c0 + T, *c2 = c0 + 2 * T, *c3 = c0 + 3 * T;
      float *v0 = v(4 * r, t0), *v1 = v(4 * r + 1, t0), *v2 = v(4 * r + 2, t0), *v3 = v(4 * r + 3, t0);
      for (int l = 0; l < kGemmNR; ++l) {
        v0[l] = c0[l] - c2[l];
        v1[l] = c1[l] + c2[l];
        v2[l] = c2[l] - c1[l];
        v3[l] = c1[l] - c3[l];
      }
    }
}

// The 2×2 outputs Aᵀ m A of tiles 0 .. T-1, m[ξ·ms + tile] the product's 4×4 tiles:
// o[2r + c][tile] is output row r, column c of the tile.
void transform_products(const float* m, int64_t ms, int64_t T, float* o) {
  for (int64_t t = 0; t < T; ++t) {
    const float* p = m + t;
    float r0[4], r1[4];  // the rows of Aᵀ m: m's rows 0 + 1 + 2 and 1 - 2 - 3
    for (int q = 0; q < 4; ++q) {
      r0[q] = p[q * ms] + p[(4 + q) * ms] + p[(8 + q) * ms];
      r1[q] = p[(4 + q) * ms] - p[(8 + q) * ms] - p[(12 + q) * ms];
    }
    o[t] = r0[0] + r0[1] + r0[2];  // (Aᵀ m) A
    o[T + t] = r0[1] - r0[2] - r0[3];
    o[2 * T + t] = r1[0] + r1[1] + r1[2];
    o[3 * T + t] = r1[1] - r1[2] - r1[3];
  }
}

// Writes the tiles' outputs o (transform_products) into channel plane `plane` of image 0
// (images `image` floats apart): y = (accumulate ? y : 0) + o + bias, within the map (an odd map
// drops the last row or column of its last tiles).
void scatter_outputs(const float* o, int64_t T, const std::vector<TileRun>& runs, float bias, float* plane,
                     int64_t image, const Conv2dShape& s, bool accumulate) {
  for (const TileRun& r : runs) {
    const int64_t width = std::min(2 * r.len, s.OW - 2 * r.j0);
    for (int k = 0; k < 2 && 2 * r.i + k < s.OH; ++k) {
      float seg[2 * kMaxRun];
      const float *even = o + 2 * k * T + r.col, *odd = even + T;
      for (int64_t jj = 0; jj < r.len; ++jj) {
        seg[2 * jj] = even[jj] + bias;
        seg[2 * jj + 1] = odd[jj] + bias;
      }
      float* y = plane + r.n * image + (2 * r.i + k) * s.OW + 2 * r.j0;
      if (accumulate)
        for (int64_t q = 0; q < width; ++q) y[q] += seg[q];
      else
        std::copy_n(seg, width, y);
    }
  }
}

// g[(2r + c)·n + tile·ls] = dy[2i+r][2j+c], the 2×2 block of each tile of the runs in channel
// plane `plane` of image 0 of dy (images `image` floats apart); 0 past an odd map's edge. n
// and ls as in gather_patches.
void gather_blocks(const float* plane, int64_t image, const Conv2dShape& s, const std::vector<TileRun>& runs, float* g,
                   int64_t n, int64_t ls) {
  for (const TileRun& r : runs)
    for (int k = 0; k < 2; ++k) {
      const int64_t oh = 2 * r.i + k, width = std::min(2 * r.len, s.OW - 2 * r.j0);
      float seg[2 * kMaxRun] = {};
      if (oh < s.OH) std::copy_n(plane + r.n * image + oh * s.OW + 2 * r.j0, width, seg);
      float *even = g + 2 * k * n + r.col * ls, *odd = even + n;
      for (int64_t jj = 0; jj < r.len; ++jj) {
        even[jj * ls] = seg[2 * jj];
        odd[jj * ls] = seg[2 * jj + 1];
      }
    }
}

// z = A g Aᵀ elementwise over n values per position (the weight gradient's transform of dy):
// g[(2r + c)·n + e] → z(ξ)[e].
template <class Out>
void transform_blocks(const float* g, int64_t n, Out z) {
  for (int64_t e = 0; e < n; ++e) {
    float a[4][2];  // A g: rows g0, g0 + g1, g0 - g1, -g1, for each column c
    for (int c = 0; c < 2; ++c) {
      const float g0 = g[c * n + e], g1 = g[(2 + c) * n + e];
      a[0][c] = g0, a[1][c] = g0 + g1, a[2][c] = g0 - g1, a[3][c] = -g1;
    }
    for (int r = 0; r < 4; ++r) {  // (A g) Aᵀ
      z(4 * r)[e] = a[r][0];
      z(4 * r + 1)[e] = a[r][0] + a[r][1];
      z(4 * r + 2)[e] = a[r][0] - a[r][1];
      z(4 * r + 3)[e] = -a[r][1];
    }
  }
}

// dg (3×3) += Gᵀ du G: the weight gradient of one filter from its 4×4 transformed gradient.
void untransform_filter_grad(const float* du, float* dg) {
  float t[3][4];  // Gᵀ du
  for (int c = 0; c < 4; ++c) {
    t[0][c] = du[c] + 0.5f * (du[4 + c] + du[8 + c]);
    t[1][c] = 0.5f * (du[4 + c] - du[8 + c]);
    t[2][c] = 0.5f * (du[4 + c] + du[8 + c]) + du[12 + c];
  }
  for (int r = 0; r < 3; ++r) {  // (Gᵀ du) G
    dg[3 * r + 0] += t[r][0] + 0.5f * (t[r][1] + t[r][2]);
    dg[3 * r + 1] += 0.5f * (t[r][1] - t[r][2]);
    dg[3 * r + 2] += 0.5f * (t[r][1] + t[r][2]) + t[r][3];
  }
}

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// Tiles per chunk: a multiple of NR (at most 16 panels) whose buffers — 16·(C + OC) floats a
// tile — take about `bytes`. The forward pass keeps its chunk (the transformed input and the
// products) in L2 from one step to the next: 512 KB. The weight gradient's chunk is the depth
// of its products, each of which loads and stores an MR×NR tile of dU: deeper chunks amortize
// that better, at 2 MB (from L3). Measured on the benchmark's layers: other sizes (from a
// quarter to 16 times these) were no faster, within this machine's noise.
int64_t chunk_tiles(int64_t C, int64_t OC, int64_t bytes) {
  const int64_t tiles = bytes / (kXi * (C + OC) * static_cast<int64_t>(sizeof(float)));
  return std::clamp<int64_t>(tiles / kGemmNR, 1, 16) * kGemmNR;
}

}  // namespace

bool conv2d_winograd_applies(const Conv2dShape& s) {
  return s.KH == 3 && s.KW == 3 && s.stride == 1 && s.padding == 1 && s.groups == 1;
}

void conv2d_forward_winograd(const float* x, const float* w, const float* b, float* y, const Conv2dShape& s,
                             bool accumulate) {
  EDL_CHECK(conv2d_winograd_applies(s), "conv2d winograd: needs a 3x3 kernel, stride 1, padding 1 and groups 1");
  const int64_t C = s.C, OC = s.OC, OCP = round_up(OC, kGemmMR);

  // U[ξ] (OC × C), packed as the micro-kernel's A operand: panels of MR output channels, each
  // holding for every input channel c the MR values U[ξ][oc][c] (gemm_pack_a's layout).
  static thread_local ScratchBuffer u_buffer, up_buffer;  // reused: fresh buffers would page-fault every call
  float* u = u_buffer.get(kXi * OC * C);
  float* up = up_buffer.get(kXi * OCP * C);
#pragma omp parallel for schedule(static) if (kXi * OC * C >= kParallelMin)
  for (int64_t oc = 0; oc < OC; ++oc)
    for (int64_t c = 0; c < C; ++c)
      transform_filter(w + (oc * C + c) * 9, [&](int xi) -> float& { return u[(xi * OC + oc) * C + c]; });
  for (int64_t xi = 0; xi < kXi; ++xi)
    gemm_pack_a(MatrixView{u + xi * OC * C, C, 1}, 0, 0, OC, C, up + xi * OCP * C);

  const Tiling tl = tiling(s);
  const int64_t T = chunk_tiles(C, OC, 512 * 1024), panels = T / kGemmNR, chunks = (tl.total + T - 1) / T;
  // The 16 positions' blocks of vp and m, one cache line more than they need: blocks a multiple
  // of 4 KB apart would put the 16 streams a transform reads or writes at once in the same
  // sets of the L1 cache, which evict each other (measured: the output transform of ResNet-20's
  // 16-channel layers took 30% of the time with blocks 16 KB apart).
  const int64_t vs = panels * C * kGemmNR + 16, ms = OC * T + 16;
#pragma omp parallel for schedule(static)
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    // vp: V[ξ] of the chunk as the micro-kernel's B operand, panels of NR tiles:
    // vp[ξ·vs + (panel·C + c)·NR + lane]. m: the products, M[ξ] (OC × T) at m + ξ·ms.
    // d: one channel's patches, or outputs.
    static thread_local ScratchBuffer vp_buffer, m_buffer, d_buffer;
    static thread_local std::vector<TileRun> runs;
    float* vp = vp_buffer.get(kXi * vs);
    float* m = m_buffer.get(kXi * ms);
    float* d = d_buffer.get(kXi * T);
    const int64_t t0 = chunk * T, t1 = std::min(tl.total, t0 + T);
    tile_runs(tl, t0, t1, runs);
    if (t1 - t0 < T) std::fill_n(d, kXi * T, 0.0f);  // tiles past the last: zeros, not garbage
    for (int64_t c = 0; c < C; ++c) {
      gather_patches(x + c * s.H * s.W, C * s.H * s.W, s, runs, d, T, 1);
      transform_patches(d, T, [&](int xi, int64_t t) { return vp + xi * vs + (t / kGemmNR * C + c) * kGemmNR; });
    }
    for (int64_t xi = 0; xi < kXi; ++xi)
      for (int64_t o0 = 0; o0 < OC; o0 += kGemmMR) {
        const float* a = up + xi * OCP * C + o0 * C;  // panel o0 / MR: MR×C
        for (int64_t p = 0; p < panels; ++p) {
          const float* bp = vp + xi * vs + p * C * kGemmNR;
          gemm_tile_rows<true>(C, a, [bp](int64_t k) { return bp + k * kGemmNR; }, m + xi * ms + o0 * T + p * kGemmNR,
                               T, std::min<int64_t>(kGemmMR, OC - o0), kGemmNR, false);
        }
      }
    for (int64_t oc = 0; oc < OC; ++oc) {
      transform_products(m + oc * T, ms, T, d);
      scatter_outputs(d, T, runs, b ? b[oc] : 0.0f, y + oc * s.OH * s.OW, OC * s.OH * s.OW, s, accumulate);
    }
  }
}

void conv2d_backward_winograd(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                              const Conv2dShape& s) {
  EDL_CHECK(conv2d_winograd_applies(s), "conv2d winograd: needs a 3x3 kernel, stride 1, padding 1 and groups 1");
  const int64_t C = s.C, OC = s.OC, P = s.OH * s.OW;
  if (db) {
#pragma omp parallel for schedule(static) if (s.N * OC * P >= kParallelMin)
    for (int64_t oc = 0; oc < OC; ++oc)
      for (int64_t n = 0; n < s.N; ++n) {
        const float* d = dy + (n * OC + oc) * P;
        float sum = 0.0f;
        for (int64_t p = 0; p < P; ++p) sum += d[p];
        db[oc] += sum;
      }
  }

  // dx is the convolution of dy with wt (C, OC, 3, 3), wt[c][oc][kh][kw] = w[oc][c][2-kh][2-kw],
  // padding 3 - 1 - 1 = 1: the forward kernel, accumulating.
  if (dx) {
    static thread_local ScratchBuffer wt_buffer;
    float* wt = wt_buffer.get(C * OC * 9);
    for (int64_t oc = 0; oc < OC; ++oc)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t t = 0; t < 9; ++t) wt[(c * OC + oc) * 9 + 8 - t] = w[(oc * C + c) * 9 + t];
    Conv2dShape t = s;
    t.C = OC, t.OC = C, t.H = s.OH, t.W = s.OW, t.OH = s.H, t.OW = s.W;
    conv2d_forward_winograd(dy, wt, nullptr, dx, t, /*accumulate=*/true);
  }
  if (!dw) return;

  // dU[ξ] (OC × C) = Σ over tiles of Z[ξ] (OC × tiles) · V[ξ]ᵀ (tiles × C), the tiles being the
  // product's depth. The tiles are split into a fixed number of slabs (not one per thread, so
  // that the sums do not depend on the thread count); each slab sums its chunks into its own
  // dU, and the slabs are added in order at the end.
  const Tiling tl = tiling(s);
  const int64_t T = chunk_tiles(C, OC, 2048 * 1024), chunks = (tl.total + T - 1) / T;
  const int64_t OP = (OC + kGemmMR - 1) / kGemmMR, CP = (C + kGemmNR - 1) / kGemmNR;
  const int64_t slabs = std::clamp<int64_t>(tl.total / 256, 1, std::min<int64_t>(8, chunks));
  const int64_t filters = OC * C;
  static thread_local ScratchBuffer du_buffer;  // reused: a fresh vector would page-fault every call
  float* du = du_buffer.get(slabs * kXi * filters);
  std::fill_n(du, slabs * kXi * filters, 0.0f);
#pragma omp parallel for schedule(static)
  for (int64_t slab = 0; slab < slabs; ++slab) {
    // zp: Z[ξ] as the micro-kernel's A operand, zp[ξ][oc panel][tile][MR];
    // vt: V[ξ]ᵀ as its B operand, vt[ξ][c panel][tile][NR].
    static thread_local ScratchBuffer zp_buffer, vt_buffer, d_buffer, g_buffer;
    static thread_local std::vector<TileRun> runs;
    const int64_t zs = OP * T * kGemmMR + 16, vs = CP * T * kGemmNR + 16;  // + a cache line: see the forward pass
    float* zp = zp_buffer.get(kXi * zs);
    float* vt = vt_buffer.get(kXi * vs);
    // d: a panel of NR input channels' patches side by side, d[position][tile][lane];
    // g: the same for the 2×2 blocks of dy of a panel of MR output channels.
    float* d = d_buffer.get(kXi * T * kGemmNR);
    float* g = g_buffer.get(4 * T * kGemmMR);
    std::fill_n(d, kXi * T * kGemmNR, 0.0f);  // lanes past the last channel stay 0 (their columns
    std::fill_n(g, 4 * T * kGemmMR, 0.0f);    // and rows of dU are dropped; 0 keeps them finite)
    float* dus = du + slab * kXi * filters;
    for (int64_t chunk = slab * chunks / slabs; chunk < (slab + 1) * chunks / slabs; ++chunk) {
      const int64_t t0 = chunk * T, t1 = std::min(tl.total, t0 + T);
      tile_runs(tl, t0, t1, runs);
      // The transforms write the panels in place: tiles are the rows of a panel and its channels
      // the lanes, which is d's layout, so each panel's channels are gathered into their lanes
      // of d and transformed together. (Tiles past a short last chunk hold stale values; the
      // products below stop at the chunk's last tile.)
      for (int64_t cp = 0; cp < CP; ++cp) {
        for (int64_t c = cp * kGemmNR; c < std::min(C, (cp + 1) * kGemmNR); ++c)
          gather_patches(x + c * s.H * s.W, C * s.H * s.W, s, runs, d + c % kGemmNR, T * kGemmNR, kGemmNR);
        transform_patches(d, T * kGemmNR, [&](int xi, int64_t e) { return vt + xi * vs + cp * T * kGemmNR + e; });
      }
      for (int64_t op = 0; op < OP; ++op) {
        for (int64_t oc = op * kGemmMR; oc < std::min(OC, (op + 1) * kGemmMR); ++oc)
          gather_blocks(dy + oc * P, OC * P, s, runs, g + oc % kGemmMR, T * kGemmMR, kGemmMR);
        transform_blocks(g, T * kGemmMR, [&](int xi) { return zp + xi * zs + op * T * kGemmMR; });
      }
      const int64_t kc = t1 - t0;  // the chunk's tiles; a short last chunk leaves the rest of the panels unread
      for (int64_t xi = 0; xi < kXi; ++xi)
        for (int64_t op = 0; op < OP; ++op) {
          const float* a = zp + xi * zs + op * T * kGemmMR;
          for (int64_t cp = 0; cp < CP; ++cp) {
            const float* bp = vt + xi * vs + cp * T * kGemmNR;
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
      untransform_filter_grad(f, dw + (oc * C + c) * 9);
    }
}

}  // namespace edl
