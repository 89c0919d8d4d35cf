// conv2d_implicit.cpp — the implicit-GEMM convolution declared in conv2d_implicit.h.
#include "kernels/conv2d/conv2d_implicit.h"

#include <algorithm>
#include <functional>
#include <numeric>
#include <vector>

#include <omp.h>

#include "kernels/common/gemm.h"
#include "kernels/common/gemm_ukernel.h"
#include "kernels/common/prefetch.h"
#include "kernels/conv2d/conv2d_im2col.h"

namespace edl {

namespace {

constexpr int64_t kKC = 256;  // rows of (c, kh, kw) per packed panel: KC×NR floats fill half of L1

// Of len output pixels along one output row that read input row ih from column iw0 on (one
// tap of the kernel), those that fall inside the image: pixels lo .. hi-1 read input columns
// iw0 + t*stride; the others read padding. Empty (hi <= lo) when row ih itself is padding.
struct InsideRun {
  int64_t lo, hi;
};
inline InsideRun inside_image(const Conv2dShape& s, int64_t ih, int64_t iw0, int64_t len) {
  if (ih < 0 || ih >= s.H) return {0, 0};
  int64_t lo = 0, hi = len;
  while (lo < hi && iw0 + lo * s.stride < 0) ++lo;
  while (hi > lo && iw0 + (hi - 1) * s.stride >= s.W) --hi;
  return {lo, hi};
}

// Where the pixels of one panel read one tap (kh, kw) of the kernel, channel by channel: the
// panel's pixels j .. j+len-1 lie in one output row of one image; of them, j+lo .. j+hi-1 fall
// inside the image, pixel j+t reading x[c] at first + (t-lo)*stride; the rest read padding (0).
// These depend on the tap and the panel but not on the channel, so they are worked out once per
// panel, and packing a row of the panel is then a few copies.
struct TapRun {
  int64_t first, j, len, lo, hi;  // first: offset from the channel's plane in the plan's first image
};

// The runs of every tap for the nr pixels from p0, grouped by tap: runs[first[t] .. first[t+1]).
// Pixels are numbered across images (pixel p of image n is n*OH*OW + p, images counted from the
// plan's first image, the one pixel 0 lies in), so that a panel may end in the next image: on
// maps of 7×7 or 3×3 pixels, a panel per image would leave most of its NR columns empty.
struct PanelPlan {
  std::vector<TapRun> runs;
  std::vector<int64_t> first;
};

PanelPlan plan_panel(const Conv2dShape& s, int64_t p0, int64_t nr) {
  PanelPlan plan;
  const int64_t P = s.OH * s.OW, image = s.C * s.H * s.W;
  for (int64_t kh = 0; kh < s.KH; ++kh)
    for (int64_t kw = 0; kw < s.KW; ++kw) {
      plan.first.push_back(static_cast<int64_t>(plan.runs.size()));
      for (int64_t j = 0; j < nr;) {  // one run per output row the panel crosses
        const int64_t q = p0 + j, n = q / P, p = q % P, oh = p / s.OW, ow = p % s.OW;
        const int64_t len = std::min(nr - j, s.OW - ow);
        const int64_t ih = oh * s.stride - s.padding + kh, iw0 = ow * s.stride - s.padding + kw;
        const auto [lo, hi] = inside_image(s, ih, iw0, len);
        plan.runs.push_back({hi > lo ? n * image + ih * s.W + iw0 + lo * s.stride : 0, j, len, lo, hi});
        j += len;
      }
    }
  plan.first.push_back(static_cast<int64_t>(plan.runs.size()));
  return plan;
}

// d[t] = src[t * stride] for t < n. The buffers never overlap (the image and a packing buffer);
// __restrict tells the compiler so, which lets it copy with vector moves.
inline void copy_strided(float* __restrict d, const float* __restrict src, int64_t n, int64_t stride) {
  if (stride == 1)
    for (int64_t t = 0; t < n; ++t) d[t] = src[t];
  else
    for (int64_t t = 0; t < n; ++t) d[t] = src[t * stride];
}

// The packed B panel for rows k0 .. k0+kc-1 of col (conv2d_im2col.h) and the panel's pixels:
// dst[k*NR + j] = x[c][oh*stride - padding + kh][ow*stride - padding + kw], where (c, kh, kw)
// is row k0 + k and (oh, ow) is pixel j (of whichever image it lies in: x is the plan's first
// image, which may be before the panel's); zero in the padding and past the last pixel (nr < NR).
void pack_panel_from_image(const float* x, const Conv2dShape& s, int64_t k0, int64_t kc, const PanelPlan& plan,
                           int64_t nr, float* dst) {
  const int64_t KK = s.KH * s.KW, HW = s.H * s.W;
  int64_t c = k0 / KK, tap = k0 % KK;
  for (int64_t k = 0; k < kc; ++k, dst += kGemmNR) {
    const float* xc = x + c * HW;
    for (int64_t j = nr; j < kGemmNR; ++j) dst[j] = 0.0f;
    for (int64_t r = plan.first[tap]; r < plan.first[tap + 1]; ++r) {
      const TapRun& run = plan.runs[r];
      float* d = dst + run.j;
      // The plan may be for a whole panel where this one stops early (the last images): cut the
      // run at nr, never reading an image that does not exist.
      const int64_t len = std::min(run.len, nr - run.j), lo = std::min(run.lo, len), hi = std::min(run.hi, len);
      if (len <= 0) break;
      for (int64_t t = 0; t < lo; ++t) d[t] = 0.0f;
      if (hi > lo) copy_strided(d + lo, xc + run.first, hi - lo, s.stride);
      for (int64_t t = std::max(lo, hi); t < len; ++t) d[t] = 0.0f;
    }
    if (++tap == KK) tap = 0, ++c;
  }
}

// A 3×3 convolution of stride 2 and padding 1 on a map of even height and width reads output
// pixel (oh, ow)'s taps at input rows 2oh-1, 2oh, 2oh+1 and columns 2ow-1, 2ow, 2ow+1. Split a
// channel's rows by parity (even rows 2r, odd rows 2r+1) and its columns into three planes of
// OW columns (column j holds input column 2j-1, 2j or 2j+1: kw = 0, 1, 2), and every tap reads
// an OH×OW block of one of the six planes, in the output's raster order:
//
//   tap (kh, kw)    plane              rows
//   kh = 0          odd rows,  kw      r = oh - 1  (row -1: a row of zeros, the top padding)
//   kh = 1          even rows, kw      r = oh
//   kh = 2          odd rows,  kw      r = oh
//
// (the left padding is plane kw = 0's column 0, a zero; H and W even leave no bottom or right
// padding to read). So a run of output pixels in raster order reads each tap as consecutive
// floats of a plane, as a stride-1 convolution's output row reads its padded input row: the
// planes are written once per image (1.5 times the channel's floats, in order), where packing
// panels gathered every value nine times, one float at a time, a stride of 2 apart.
// Layout of one channel: six planes [even: kw = 0, 1, 2][odd: kw = 0, 1, 2], each OH + 1 rows
// of OW floats, row 0 zeros (read only by the odd planes) and row r + 1 holding row r.
struct PhasePlanes {
  int64_t OH, OW, W, plane, channel;
  explicit PhasePlanes(const Conv2dShape& s)
      : OH(s.OH), OW(s.OW), W(s.W), plane((s.OH + 1) * s.OW), channel(6 * (s.OH + 1) * s.OW) {}
  // Of tap (c, kh, kw) for output pixel 0, from the buffer's start.
  int64_t offset(int64_t c, int64_t kh, int64_t kw) const {
    return c * channel + ((kh == 1 ? 0 : 3) + kw) * plane + (kh == 0 ? 0 : OW);
  }
  // Writes the planes of one channel xc (H×W) into dst (channel floats; row 0 of each plane is
  // left as it is: zero).
  void fill(const float* xc, float* dst) const {
    for (int64_t r = 0; r < OH; ++r)
      for (int64_t parity = 0; parity < 2; ++parity) {
        const float* src = xc + (2 * r + parity) * W;
        float* d = dst + 3 * parity * plane + (r + 1) * OW;
        d[0] = 0.0f;  // input column -1: padding
        for (int64_t j = 1; j < OW; ++j) d[j] = src[2 * j - 1];
        for (int64_t j = 0; j < OW; ++j) d[plane + j] = src[2 * j];
        for (int64_t j = 0; j < OW; ++j) d[2 * plane + j] = src[2 * j + 1];
      }
  }
};

bool phase_planes_fit(const Conv2dShape& s) {
  return s.stride == 2 && s.KH == 3 && s.KW == 3 && s.padding == 1 && s.H % 2 == 0 && s.W % 2 == 0;
}

// Whether products whose panels run along one image's OH·OW output pixels (the forward pass and
// the data gradient on phase planes) pay: as rows_in_place, at most an eighth of the panels'
// columns wasted. ResNet-18's 8×8 → 4×4 layer (16 pixels, half a panel of 32) ran its forward
// pass 0.57× as fast as on packed panels, which run across images.
bool phase_panels_pay(const Conv2dShape& s) {
  const int64_t P = s.OH * s.OW;
  return phase_planes_fit(s) && 8 * P >= 7 * ((P + kGemmNR - 1) / kGemmNR * kGemmNR);
}

// ---- weight gradient as an implicit GEMM ---------------------------------------------------
//
//   dw[g] (OCG × CKK)  +=  dy[g] (OCG × N·P)  ·  col[g]ᵀ (N·P × CKK)
//
// The product's depth runs over every output pixel of every image, q = n*P + p, so that one
// GEMM covers the whole batch and its depth is long (7×7 maps at batch 128: 6272) whatever the
// map size. Neither operand is a strided matrix (dy's planes of one image are P apart, its
// images OC*P; colᵀ exists only as x), so this packer fills the driver's panels from dy and x
// themselves: no column matrix. (Each element of colᵀ is packed once per call, so each value
// of x KH·KW times; dy is packed once per NC columns of the product.)
//   A panel, rows oc .. oc+MR-1:      ap[k][r]  = dy[n][g*OCG + oc + r][p]          (q = k0 + k)
//   B panel, columns (c, kh, kw) ...: bp[k][j]  = x[n][g*CG + c][ih][iw]
//                                     with ih = oh*stride - padding + kh, iw = ow*stride - padding + kw
// with zeros where the window hangs over the padding. Pixels are walked one output row at a
// time: along a row, a column of B is a (strided) piece of one image row.
class WgradPacker final : public GemmPacker {
 public:
  WgradPacker(const float* x, const float* dy, const Conv2dShape& s, int64_t g) : x_(x), dy_(dy), s_(s), g_(g) {}

  void pack_a(int64_t i0, int64_t k0, int64_t mc, int64_t kc, float* ap) const override {
    const int64_t P = s_.OH * s_.OW, OCG = s_.OC / s_.groups;
    for (int64_t i = 0; i < mc; i += kGemmMR, ap += kGemmMR * kc) {
      const int64_t rows = std::min<int64_t>(kGemmMR, mc - i);
      for (int64_t k = 0; k < kc;) {  // one image's pixels at a time
        const int64_t n = (k0 + k) / P, p = (k0 + k) % P, len = std::min(kc - k, P - p);
        for (int64_t r = 0; r < kGemmMR; ++r) {
          float* d = ap + k * kGemmMR + r;
          if (r >= rows) {
            for (int64_t t = 0; t < len; ++t) d[t * kGemmMR] = 0.0f;
            continue;
          }
          const float* src = dy_ + (n * s_.OC + g_ * OCG + i0 + i + r) * P + p;
          for (int64_t t = 0; t < len; ++t) d[t * kGemmMR] = src[t];
        }
        k += len;
      }
    }
  }

  void pack_b(int64_t k0, int64_t j0, int64_t kc, int64_t nc, float* bp, int64_t p0, int64_t p1) const override {
    const int64_t KK = s_.KH * s_.KW, CG = s_.C / s_.groups, P = s_.OH * s_.OW;
    for (int64_t pn = p0; pn < p1; ++pn)
      for (int64_t j = 0; j < kGemmNR; ++j) {
        float* d = bp + pn * kc * kGemmNR + j;  // d[k*NR]: column j of the panel
        const int64_t col = pn * kGemmNR + j;
        if (col >= nc) {
          for (int64_t k = 0; k < kc; ++k) d[k * kGemmNR] = 0.0f;
          continue;
        }
        const int64_t ckk = j0 + col, c = ckk / KK, kh = ckk % KK / s_.KW, kw = ckk % s_.KW;
        int64_t n = k0 / P, oh = k0 % P / s_.OW, ow = k0 % s_.OW;
        for (int64_t k = 0; k < kc;) {  // one output row (or what is left of it) at a time
          const int64_t len = std::min(kc - k, s_.OW - ow);
          const int64_t ih = oh * s_.stride - s_.padding + kh, iw0 = ow * s_.stride - s_.padding + kw;
          const auto [lo, hi] = inside_image(s_, ih, iw0, len);
          // src: the input pixel of run pixel lo (never formed when the run reads only padding)
          const float* src = hi > lo ? x_ + ((n * s_.C + g_ * CG + c) * s_.H + ih) * s_.W + iw0 + lo * s_.stride : nullptr;
          float* dk = d + k * kGemmNR;
          for (int64_t t = 0; t < lo; ++t) dk[t * kGemmNR] = 0.0f;
          for (int64_t t = lo; t < hi; ++t) dk[t * kGemmNR] = src[(t - lo) * s_.stride];
          for (int64_t t = std::max(lo, hi); t < len; ++t) dk[t * kGemmNR] = 0.0f;
          k += len, ow = 0;
          if (++oh == s_.OH) oh = 0, ++n;
        }
      }
  }

 private:
  const float* x_;
  const float* dy_;
  const Conv2dShape& s_;
  int64_t g_;
};

// dw += the weight gradient, one implicit GEMM per group.
void conv2d_wgrad_gemm(const float* x, const float* dy, float* dw, const Conv2dShape& s) {
  const int64_t OCG = s.OC / s.groups, CKK = s.C / s.groups * s.KH * s.KW;
  GemmEpilogue ep;
  ep.accumulate = true;
  for (int64_t g = 0; g < s.groups; ++g)
    gemm_f32_packed(OCG, CKK, s.N * s.OH * s.OW, WgradPacker(x, dy, s, g), dw + g * OCG * CKK, CKK, ep);
}

// ---- weight gradient, stride 1: a direct kernel ----------------------------------------------
//
//   dw[oc][c][kh][kw] = sum over images n and output pixels (oh, ow) of
//                       dy[n][oc][oh][ow] * xpad[n][c][oh + kh][ow + kw]
//
// where xpad is a plane of x with its zero padding written out, Wr = W + 2*padding floats a
// row. Give a plane of dy rows of Wr floats too, zero past its OW pixels, and the sum for one
// (oc, c, kh, kw) runs down both planes as if each were one long row:
//
//   dw[oc][c][kh][kw] = sum over i of dyr[oc][i] * xpad[c][i + kh*Wr + kw]
//
// (pixel (oh, ow) is i = oh*Wr + ow in both; the KW-1 extra floats of each row of dyr are zero,
// so what they meet in xpad adds nothing). That vectorizes along i without any packing, in one
// loop whatever the map's size: a block of OB output channels × TB neighbouring taps (kw, kw+1,
// ...) keeps OB×TB vector accumulators, and each step loads TB vectors of the image (the same
// place shifted by one float per tap) and OB of dy:
//
//   acc[o][t] += dyr[oc0 + o][i .. i+L)  *  xpad[c][i + kh*Wr + kw0 + t .. + L)
//
// 4 output channels × 3 taps: 12 accumulators, the 3 image vectors and one vector of dy at a
// time fill AVX2's 16 registers, and a step is 7 loads for 12 FMAs (AVX-512's 32 registers
// take 8 output channels: 11 loads for 24 FMAs). The lanes of an
// accumulator are added at the very end. A thread takes a contiguous range of the blocks of
// output channels (or, on layers with few of them, chunks of images: see by_images below); for
// each image it writes its channels' planes of dyr (unless dy's rows are whole vectors: then
// the sums run down dy's own rows, one at a time), and for each input channel the padded plane
// of x, once, and runs all its blocks on it while it is in L1. Every weight is summed over
// images in order by one thread (or per chunk by one thread, then over the chunks in order,
// their number fixed): results do not depend on the thread count.
#if !defined(XSIMD_NO_SUPPORTED_ARCHITECTURE)
constexpr bool kDirectWgrad = true;
using WBatch = xsimd::batch<float>;
constexpr int64_t kL = static_cast<int64_t>(WBatch::size);
#if XSIMD_WITH_AVX512F
constexpr int kWgradOB = 8;  // 32 registers: 24 accumulators, 3 + 1 vectors
#else
constexpr int kWgradOB = 4;
#endif
// Chunks of images (of the schedule by images in conv2d_wgrad_direct), whatever the thread count.
constexpr int64_t kWgradImageChunks = 8;
constexpr int64_t kWgradByImagesBytes = 256 << 10;

// Makes the compiler hold v in a register. Without it GCC 12 reads the image vectors again in
// every FMA that uses them (it folds the load into the FMA): 16 loads for 12 FMAs instead of 7,
// and the loop is bound by loads.
inline WBatch in_register(WBatch v) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  asm("" : "+x"(v.data));
#elif defined(__GNUC__) && defined(__aarch64__)
  asm("" : "+w"(v.data));
#endif
  return v;
}

// The planes the sums run down: `rows` rows of len floats (whole vectors), the rows of dy
// dy_row floats apart and those of x x_row. A plane of dyr is one long row (rows = 1); when
// OW is whole vectors, dy's own planes serve, row by row (rows = OH, dy_row = OW, x_row = Wr).
struct WgradRows {
  int64_t rows, len, dy_row, x_row;
};

// part[o*o_stride + t*kL + lane] += the OB×TB sums above over the rows; tap t reads the image
// at x + t (the next column), or x + t*plane on stride 2's phase planes (kPlanes: the next
// plane). The stride-1 kernel keeps its taps a compile-time float apart: with the distance a
// variable, ResNet-20's 16-channel weight gradient took 0.96× as long.
template <int OB, int TB, bool kPlanes>
void wgrad_tile(const float* dy, int64_t dy_plane, const float* x, int64_t plane, const WgradRows& rw, float* part,
                int64_t o_stride) {
  WBatch acc[OB][TB];
  for (int o = 0; o < OB; ++o)
    for (int t = 0; t < TB; ++t) acc[o][t] = WBatch(0.0f);
  for (int64_t r = 0; r < rw.rows; ++r, dy += rw.dy_row, x += rw.x_row)
    for (int64_t i = 0; i < rw.len; i += kL) {
      WBatch xv[TB];
      for (int t = 0; t < TB; ++t) xv[t] = in_register(WBatch::load_unaligned(x + (kPlanes ? t * plane : t) + i));
      for (int o = 0; o < OB; ++o) {
        const WBatch dv = in_register(WBatch::load_unaligned(dy + o * dy_plane + i));
        for (int t = 0; t < TB; ++t) acc[o][t] = xsimd::fma(dv, xv[t], acc[o][t]);
      }
    }
  for (int o = 0; o < OB; ++o)
    for (int t = 0; t < TB; ++t) {
      float* p = part + o * o_stride + t * kL;
      (WBatch::load_unaligned(p) + acc[o][t]).store_unaligned(p);
    }
}

// The tile for TB = 1, 2 or 3 taps (the last taps of a row of the kernel may be fewer than 3).
// (plane > 0: taps on phase planes, that many floats apart.)
void wgrad_taps(int64_t TB, const float* dy, int64_t dy_plane, const float* x, int64_t plane, const WgradRows& rw,
                float* part, int64_t o_stride) {
  if (plane > 0) wgrad_tile<kWgradOB, 3, true>(dy, dy_plane, x, plane, rw, part, o_stride);  // TB = KW = 3
  else if (TB == 3) wgrad_tile<kWgradOB, 3, false>(dy, dy_plane, x, 0, rw, part, o_stride);
  else if (TB == 2) wgrad_tile<kWgradOB, 2, false>(dy, dy_plane, x, 0, rw, part, o_stride);
  else wgrad_tile<kWgradOB, 1, false>(dy, dy_plane, x, 0, rw, part, o_stride);
}

// dw += the weight gradient of a stride-1 convolution (see above), or of a stride-2 one on
// phase planes (PhasePlanes; conv2d_implicit_wgrad_is_direct says which): there each tap reads
// P = OH·OW consecutive floats of a plane in the output's raster order, so the sums run down
// dy's plane and the tap's block of the plane as one long row, and taps kw = 0, 1, 2 of a row
// of the kernel are the same place in three neighbouring planes.
//
// WgradDirect holds the plan for one shape; conv2d_wgrad_direct runs it, and the backward pass
// runs it image by image beside the data gradient's product (backward_implicit).
struct WgradDirect {
  Conv2dShape s;
  int64_t CG, OCG, KK;
  bool phases;
  PhasePlanes pp;
  int64_t Wr, len, P, images, x_floats;
  static constexpr int64_t OB = kWgradOB;
  int64_t blocks, tasks, block_floats, o_stride;
  bool dy_in_place;
  WgradRows rw;
  bool by_images;
  int64_t chunk;  // images per chunk when by_images: chunk n / chunk holds image n

  explicit WgradDirect(const Conv2dShape& shape)
      : s(shape),
        CG(s.C / s.groups),
        OCG(s.OC / s.groups),
        KK(s.KH * s.KW),
        phases(s.stride == 2),
        pp(s),
        Wr(s.W + 2 * s.padding),                  // = OW + KW - 1 at stride 1
        len((s.OH * Wr + kL - 1) / kL * kL),      // a plane of dyr, in whole vectors
        P(s.OH * s.OW),
        // Phase planes of a few images at a time, about 1024 pixels (P = 64: 16 images): the
        // sums of a tile then run down all of them in one call, where one image's 64 pixels
        // were 4 steps between loading and storing the tile's 24 partial sums.
        images(phases ? std::clamp<int64_t>((1024 + P - 1) / P, 1, s.N) : 1),
        x_floats(phases ? images * pp.channel : len + (s.KH - 1) * Wr + s.KW),  // the furthest any tap reads
        blocks((OCG + OB - 1) / OB),
        tasks(s.groups * blocks),
        block_floats(OB * CG * KK * kL),  // one block's sums, lane by lane
        o_stride(CG * KK * kL),
        // dy's own planes serve when its rows are whole vectors and the blocks whole (a partial
        // block would read past its channels); copying them into dyr took, with the copies of
        // x, a third of the time. AVX-512, bench/compare.py 3 rounds, 2 threads: ResNet-20's
        // 16 -> 16 layer 3.29 -> 2.98 ms, the stems of ResNet-20 and ResNet-18 1.39× and 1.44×
        // as fast. (With phase planes dy is always read in place: conv2d_implicit_wgrad_is_direct
        // asks for planes of whole vectors and whole blocks.)
        dy_in_place(phases || (s.OW % kL == 0 && OCG % OB == 0)),
        rw(dy_in_place ? WgradRows{s.OH, s.OW, s.OW, Wr} : WgradRows{1, len, 0, 0}),
        // Threads take chunks of images rather than blocks of output channels when the sums of
        // all blocks are small enough for one thread to keep (kWgradByImagesBytes): ResNet-20's
        // stem and 16-channel layers, two blocks of 8 channels. Taking one block each, both
        // threads copied every plane of x. ResNet-20's 16 -> 16 backward (dw and dx) 1772,
        // 1763, 1803 -> 1641, 1676, 1683 ms over 39 steps (edl train --profile-shapes, three
        // alternating pairs).
        by_images(!phases && tasks * block_floats * static_cast<int64_t>(sizeof(float)) <= kWgradByImagesBytes),
        chunk(std::max<int64_t>(1, (s.N + kWgradImageChunks - 1) / kWgradImageChunks)) {}

  int64_t chunks() const { return (s.N + chunk - 1) / chunk; }

  // The calling thread's buffers, cleared: the planes of dyr of ntasks tasks' output channels
  // (whole blocks: a partial last block's missing channels stay zero) and the padded planes of
  // x, rewritten per image and channel (borders and tails stay zero).
  void thread_buffers(int64_t ntasks, float*& dyr, float*& xp) const {
    static thread_local ScratchBuffer dyr_buf, x_buf;
    dyr = dy_in_place ? nullptr : dyr_buf.get(ntasks * OB * len);
    xp = x_buf.get(x_floats);
    if (!dy_in_place) std::fill_n(dyr, ntasks * OB * len, 0.0f);
    std::fill_n(xp, x_floats, 0.0f);
  }

  // The sums of tasks task0 .. task1-1 over images n0 .. n1-1 and input channels c0 .. c1-1
  // (c1 < 0: all), added into part (part[(task - task0)*block_floats + ((o*CG + c)*KK + tap)*kL
  // + lane]), with the buffers above.
  void sum_images(const float* x, const float* dy, int64_t n0, int64_t n1, int64_t task0, int64_t task1, float* part,
                  float* dyr, float* xp, int64_t c0 = 0, int64_t c1 = -1) const {
    if (c1 < 0) c1 = CG;
    for (int64_t n = n0; n < n1; n += images)
      for (int64_t first = task0; first < task1;) {  // the tasks of one group at a time
        const int64_t g = first / blocks, last = std::min(task1, (g + 1) * blocks);
        for (int64_t task = first; task < last && !dy_in_place; ++task) {
          const int64_t oc0 = task % blocks * OB, ob = std::min(OB, OCG - oc0);
          for (int64_t o = 0; o < ob; ++o)
            for (int64_t oh = 0; oh < s.OH; ++oh)
              std::copy_n(dy + ((n * s.OC + g * OCG + oc0 + o) * s.OH + oh) * s.OW, s.OW,
                          dyr + ((task - task0) * OB + o) * len + oh * Wr);
        }
        for (int64_t c = c0; c < c1; ++c) {
          const float* xsrc = x + (n * s.C + g * CG + c) * s.H * s.W;
          const int64_t nb = std::min(images, n1 - n);
          if (phases)
            for (int64_t i = 0; i < nb; ++i) pp.fill(xsrc + i * s.C * s.H * s.W, xp + i * pp.channel);
          else
            for (int64_t h = 0; h < s.H; ++h) std::copy_n(xsrc + h * s.W, s.W, xp + (h + s.padding) * Wr + s.padding);
          // with phase planes: the tap's block of each image's planes, one image a row
          const WgradRows rows = phases ? WgradRows{nb, P, s.OC * P, pp.channel} : rw;
          for (int64_t task = first; task < last; ++task) {
            const float* d = dy_in_place ? dy + (n * s.OC + g * OCG + task % blocks * OB) * s.OH * s.OW
                                         : dyr + (task - task0) * OB * len;
            const int64_t d_plane = dy_in_place ? s.OH * s.OW : len;
            float* pblock = part + (task - task0) * block_floats + c * KK * kL;
            for (int64_t kh = 0; kh < s.KH; ++kh)
              for (int64_t kw = 0; kw < s.KW; kw += 3)
                wgrad_taps(std::min<int64_t>(3, s.KW - kw), d, d_plane,
                           phases ? xp + pp.offset(0, kh, kw) : xp + kh * Wr + kw, phases ? pp.plane : 0, rows,
                           pblock + (kh * s.KW + kw) * kL, o_stride);
          }
        }
        first = last;
      }
  }

  // out (dw's layout) += the lanes of part's sums for tasks task0 .. task1-1 and input channels
  // c0 .. c1-1 (c1 < 0: all), lane by lane.
  void add_lanes(const float* part, int64_t task0, int64_t task1, float* out, int64_t c0 = 0, int64_t c1 = -1) const {
    if (c1 < 0) c1 = CG;
    for (int64_t task = task0; task < task1; ++task) {
      const int64_t g = task / blocks, oc0 = task % blocks * OB, ob = std::min(OB, OCG - oc0);
      const float* pblock = part + (task - task0) * block_floats;
      for (int64_t o = 0; o < ob; ++o)
        for (int64_t i = c0 * KK; i < c1 * KK; ++i) {
          const float* lanes = pblock + (o * CG * KK + i) * kL;
          float sum = 0;
          for (int64_t l = 0; l < kL; ++l) sum += lanes[l];
          out[(g * OCG + oc0 + o) * CG * KK + i] += sum;
        }
    }
  }

  // By images: the sums of every chunk, parts[chunk * tasks * block_floats ...] (each summed
  // by one thread, its images in order), added into dw: lanes, then chunks, in order.
  void add_chunks(const float* parts, float* dw) const {
    const int64_t out_floats = s.OC * CG * KK;
    std::vector<float> sums(static_cast<size_t>(out_floats));
    for (int64_t ch = 0; ch < chunks(); ++ch) {
      std::fill(sums.begin(), sums.end(), 0.0f);
      add_lanes(parts + ch * tasks * block_floats, 0, tasks, sums.data());
      for (int64_t i = 0; i < out_floats; ++i) dw[i] += sums[static_cast<size_t>(i)];
    }
  }
};

void conv2d_wgrad_direct(const float* x, const float* dy, float* dw, const Conv2dShape& s) {
  const WgradDirect wd(s);
  if (wd.by_images) {
    // There are kWgradImageChunks chunks whatever the thread count, so the result does not
    // depend on it either.
    std::vector<float> parts(static_cast<size_t>(wd.chunks() * wd.tasks * wd.block_floats), 0.0f);
#pragma omp parallel
    {
      float *dyr, *xp;
      wd.thread_buffers(wd.tasks, dyr, xp);
#pragma omp for schedule(static)
      for (int64_t ch = 0; ch < wd.chunks(); ++ch)
        wd.sum_images(x, dy, ch * wd.chunk, std::min(s.N, (ch + 1) * wd.chunk), 0, wd.tasks,
                      parts.data() + ch * wd.tasks * wd.block_floats, dyr, xp);
    }
    wd.add_chunks(parts.data(), dw);
    return;
  }
  // Stride 2 (phase planes): threads take input channels instead of blocks of output channels.
  // Taking blocks, every thread filled the phase planes of every channel of every image; now
  // each fills its own channels' only, and their sums land in places of part and dw no other
  // thread writes, so nothing is added up between threads, and each sum runs over the images in
  // the same order as before: the same dw, bit for bit, for any thread count. (With AVX-512 a
  // channel's sums, KK·kL = 144 floats, are whole cache lines of the 64-byte aligned part;
  // with narrower vectors two threads' channels can share a line at their border, which costs
  // a little speed, not correctness.) AVX-512, 2 threads, three alternating runs (layers
  // bench): ResNet-20's 16 -> 32 dw 2.45-2.50 -> 2.10-2.23 ms, 32 -> 64 2.52-2.65 -> 2.21-2.23
  // ms; 1 thread unchanged. In training (edl train --profile-shapes, 39 steps, three
  // alternating pairs) their backward 212-216 -> 191-194 and 191-194 -> 180-190 ms.
  if (wd.phases && s.groups == 1) {
    ScratchBuffer part_buf;
    float* part = part_buf.get(wd.tasks * wd.block_floats);
    std::fill_n(part, wd.tasks * wd.block_floats, 0.0f);
#pragma omp parallel
    {
      const int64_t T = omp_get_num_threads(), th = omp_get_thread_num();
      const int64_t c0 = wd.CG * th / T, c1 = wd.CG * (th + 1) / T;
      float *dyr, *xp;
      wd.thread_buffers(wd.tasks, dyr, xp);
      if (c0 < c1) {
        wd.sum_images(x, dy, 0, s.N, 0, wd.tasks, part, dyr, xp, c0, c1);
        wd.add_lanes(part, 0, wd.tasks, dw, c0, c1);
      }
    }
    return;
  }
#pragma omp parallel
  {
    const int64_t T = omp_get_num_threads(), th = omp_get_thread_num();
    const int64_t task0 = wd.tasks * th / T, task1 = wd.tasks * (th + 1) / T;
    std::vector<float> part(static_cast<size_t>((task1 - task0) * wd.block_floats), 0.0f);
    float *dyr, *xp;
    wd.thread_buffers(task1 - task0, dyr, xp);
    wd.sum_images(x, dy, 0, s.N, task0, task1, part.data(), dyr, xp);
    wd.add_lanes(part.data(), task0, task1, dw);
  }
}
#else
constexpr bool kDirectWgrad = false;  // no SIMD type: the weight gradient stays on im2col
constexpr int64_t kL = 1;
constexpr int kWgradOB = 1;
void conv2d_wgrad_direct(const float*, const float*, float*, const Conv2dShape&) {}
#endif

// Whether a stride-1 convolution reads output rows of OW pixels in place (the forward pass's
// first path): each row is cut into panels of NR pixels, the last one partly empty, which pays
// while at most an eighth of the panels' columns is wasted — so rows a pixel or two short of
// a panel too (14 or 15 with AVX2's NR = 16; airbench's 15×15 maps): fast_cifar
// block1.conv2's forward, 2 threads, 21.3 ms in place against 34.2 ms packed (medians of 5
// rounds). Narrower rows (8×8 and 7×7 maps) are packed across images instead.
bool rows_in_place(int64_t OW) {
  const int64_t padded = (OW + kGemmNR - 1) / kGemmNR * kGemmNR;  // whole panels
  return OW >= kGemmNR || 8 * OW >= 7 * padded;
}

// Work to run after each image of the forward pass (rows read in place, one group): after(n)
// right after image n's outputs, on the thread that computed them, while its input is still in
// that core's caches. Images come in chunks of `chunk`, each chunk on one thread, in order.
struct AfterImage {
  int64_t chunk;
  const std::function<void(int64_t)>* after;
};

// conv2d_forward_implicit, and `after` run as above; returns whether `after` ran (it does not
// on the other paths, which compute y all the same: the caller then does that work itself).
// With stats, the PlaneStats of y where tasks are whole images (conv2d_forward_implicit_stats).
bool forward_implicit(const float* x, const float* w, const float* b, float* y, const Conv2dShape& s, bool accumulate,
                      const AfterImage* after, PlaneStatsOut* stats = nullptr) {
  const int64_t CG = s.C / s.groups, OCG = s.OC / s.groups, CKK = CG * s.KH * s.KW, P = s.OH * s.OW;
  // The statistics of the planes of image n, group g, just written (in L2: 64 KB for 16
  // channels of 32×32).
  auto image_stats = [&](int64_t n, int64_t g) {
    for (int64_t oc = n * s.OC + g * OCG; oc < n * s.OC + (g + 1) * OCG; ++oc)
      plane_mean_m2_simd(y + oc * P, P, stats->mean[oc], stats->m2[oc]);
  };
  if (s.N == 0 || OCG == 0 || P == 0) return false;
  if (CKK == 0) {  // no input channels: an empty sum, y = (accumulate ? y : 0) + b
    for (int64_t i = 0; i < s.N * s.OC; ++i)
      for (int64_t p = 0; p < P; ++p)
        y[i * P + p] = (accumulate ? y[i * P + p] : 0.0f) + (b ? b[i % s.OC] : 0.0f);
    return false;
  }
  const int64_t MP = (OCG + kGemmMR - 1) / kGemmMR * kGemmMR;  // rows of packed weights, whole tiles

  // The weights of group g, rows k0 .. k0+kc-1, packed as gemm_pack_a lays them out, start at
  // ap[g*MP*CKK + k0*MP]; micro-panel ir (of MR rows) is ir*kc further.
  std::vector<float> ap_storage(static_cast<size_t>(s.groups * MP * CKK) + 16);
  float* ap = ap_storage.data();
  for (int64_t g = 0; g < s.groups; ++g)
    for (int64_t k0 = 0; k0 < CKK; k0 += kKC)
      gemm_pack_a({w + g * OCG * CKK, CKK, 1}, 0, k0, OCG, std::min(kKC, CKK - k0), ap + g * MP * CKK + k0 * MP);

  // One panel of NR output pixels (nr of them valid) times all of the group's weights:
  // y[rows of group g][panel] (+)= w_g · B, where row k of B is at b_row(k). Bias once at the end.
  // yg has row stride ldc (P: y itself; NR: a panel buffer).
  auto multiply_panel = [&]<bool kAligned>(int64_t g, int64_t k0, int64_t kc, auto b_row, float* yg, int64_t ldc,
                                           int64_t nr, bool acc) {
    const float* a_chunk = ap + g * MP * CKK + k0 * MP;
    for (int64_t ir = 0; ir < OCG; ir += kGemmMR) {
      gemm_tile_rows<kAligned>(kc, a_chunk + ir * kc, b_row, yg + ir * ldc, ldc, std::min<int64_t>(kGemmMR, OCG - ir),
                               nr, acc);
    }
  };
  auto add_bias = [&](int64_t g, float* yg, int64_t nr) {
    if (b)
      for (int64_t i = 0; i < OCG; ++i)
        for (int64_t j = 0; j < nr; ++j) yg[i * P + j] += b[g * OCG + i];
  };
  // A panel read in place (the two paths below): row k of B is NR floats at corner + offset[k].
  auto multiply_in_place = [&](int64_t g, const float* corner, const int64_t* offset, float* yg, int64_t nr) {
    for (int64_t k0 = 0; k0 < CKK; k0 += kKC) {
      const int64_t* off = offset + k0;
      multiply_panel.template operator()<false>(g, k0, std::min(kKC, CKK - k0),
                                                [corner, off](int64_t k) { return corner + off[k]; }, yg, P, nr,
                                                accumulate || k0 > 0);
    }
    add_bias(g, yg, nr);
  };

  if (s.stride == 1 && rows_in_place(s.OW)) {
    // Stride 1, rows read in place (rows_in_place): no packing at all. Panels are cut along output rows,
    // so row (c, kh, kw) of a panel is NR consecutive floats of the zero-padded image — the
    // micro-kernel loads them where they are, from a table of row offsets.
    //
    // A task is a block of R output rows of one image and group. It first copies the input rows
    // those outputs read (R + KH - 1 rows per channel), with their zero padding, into a buffer of
    // its thread (~74 KB for 16 channels of 32×32: in L2), then runs its panels from there. The
    // padded copy never goes out to memory, and each input row is copied at most twice.
    const int64_t Wp = s.W + 2 * s.padding;
    const int64_t row_blocks = std::min(s.OH, std::max<int64_t>(1, (8 + s.N * s.groups - 1) / (s.N * s.groups)));
    const int64_t R = (s.OH + row_blocks - 1) / row_blocks, rows = R + s.KH - 1, plane = rows * Wp;
    std::vector<int64_t> offset(static_cast<size_t>(CKK));  // of row (c, kh, kw) from the pixel's corner
    for (int64_t k = 0; k < CKK; ++k)
      offset[static_cast<size_t>(k)] = k / (s.KH * s.KW) * plane + k / s.KW % s.KH * Wp + k % s.KW;

    const int64_t tasks = s.N * s.groups * row_blocks;
    // A task per image when `after` runs; its chunks go whole to one thread each.
    const bool hooked = after && row_blocks == 1 && s.groups == 1;
    const int64_t per_thread = hooked ? after->chunk : (tasks + omp_get_max_threads() - 1) / omp_get_max_threads();
#pragma omp parallel for schedule(static, per_thread)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t n = task / (s.groups * row_blocks), g = task / row_blocks % s.groups;
      const int64_t oh0 = task % row_blocks * R, oh1 = std::min(s.OH, oh0 + R);
      // The last panel of a row may read up to NR-1 floats past it (into the next row, or past
      // the end: hence the slack); those columns are computed and dropped.
      static thread_local std::vector<float> buf;
      buf.assign(static_cast<size_t>(CG * plane + kGemmNR), 0.0f);
      for (int64_t c = 0; c < CG; ++c)
        for (int64_t r = 0; r < rows; ++r) {  // buffer row r is padded input row oh0 + r
          const int64_t ih = oh0 + r - s.padding;
          if (ih >= 0 && ih < s.H)
            std::copy_n(x + ((n * s.C + g * CG + c) * s.H + ih) * s.W, s.W, buf.data() + c * plane + r * Wp + s.padding);
        }
      // While the panels run, ask for the next task's image (when tasks are whole images), a
      // share per panel: its planes (4 KB each on 32×32 maps) are pages of their own, where the
      // hardware prefetcher stops, and training finds them in memory. ResNet-20's 16 -> 16
      // layers (edl train --profile-shapes, 39 steps, six alternating pairs): backward (dx here,
      // with dw beside it) 1595-1657 -> 1557-1600 ms, forward 753-804 -> 739-781.
      const int64_t image_floats = CG * s.H * s.W;
      const float* next = row_blocks == 1 && task + 1 < tasks ? x + (task + 1) * image_floats : nullptr;
      const int64_t panels = (oh1 - oh0) * ((s.OW + kGemmNR - 1) / kGemmNR);
      int64_t panel = 0;
      for (int64_t oh = oh0; oh < oh1; ++oh)
        for (int64_t ow0 = 0; ow0 < s.OW; ow0 += kGemmNR, ++panel) {
          const int64_t nr = std::min<int64_t>(kGemmNR, s.OW - ow0);
          if (next) {
            const int64_t share = (image_floats + panels - 1) / panels, from = panel * share;
            if (from < image_floats) prefetch_floats(next + from, std::min(share, image_floats - from));
          }
          multiply_in_place(g, buf.data() + (oh - oh0) * Wp + ow0, offset.data(),
                            y + (n * s.OC + g * OCG) * P + oh * s.OW + ow0, nr);
        }
      if (stats && row_blocks == 1) image_stats(n, g);
      if (hooked) (*after->after)(n);
    }
    if (stats) stats->done = row_blocks == 1;
    return hooked;
  }

  if (phase_panels_pay(s)) {
    // Stride 2 (3×3, padding 1, even maps): the image's phase planes (PhasePlanes), written
    // once per image and group into a buffer of the thread, and every row (c, kh, kw) of a
    // panel is NR consecutive floats of them, a fixed offset from the panel's first pixel.
    // Panels run along the image's pixels in raster order (they may cover several output
    // rows), and each is multiplied where it lies, as in the path above.
    const PhasePlanes pp(s);
    std::vector<int64_t> offset(static_cast<size_t>(CKK));
    for (int64_t k = 0; k < CKK; ++k) offset[static_cast<size_t>(k)] = pp.offset(k / 9, k / 3 % 3, k % 3);
#pragma omp parallel
    {
      static thread_local ScratchBuffer buf_storage;
      float* buf = buf_storage.get(CG * pp.channel + kGemmNR);
      std::fill_n(buf, CG * pp.channel + kGemmNR, 0.0f);  // the planes' first rows stay zero
#pragma omp for schedule(static)
      for (int64_t task = 0; task < s.N * s.groups; ++task) {
        const int64_t n = task / s.groups, g = task % s.groups;
        for (int64_t c = 0; c < CG; ++c) pp.fill(x + ((n * s.C + g * CG + c) * s.H) * s.W, buf + c * pp.channel);
        for (int64_t p0 = 0; p0 < P; p0 += kGemmNR) {
          multiply_in_place(g, buf + p0, offset.data(), y + (n * s.OC + g * OCG) * P + p0,
                            std::min<int64_t>(kGemmNR, P - p0));
        }
        if (stats) image_stats(n, g);
      }
    }
    if (stats) stats->done = true;
    return false;
  }

  // Otherwise each panel is packed from the image (pack_panel_from_image) into L1 first. Panels
  // run along the pixels of all images (of one group) in a row, so a panel may span two or more
  // images; such a panel is computed into a buffer and then written out image by image. The
  // panels' plans repeat every L images, L = NR / gcd(P, NR) (1 when NR divides P).
  const int64_t L = kGemmNR / std::gcd(P, kGemmNR), period = L * P / kGemmNR;  // period: panels per L images
  const int64_t panels = (s.N * P + kGemmNR - 1) / kGemmNR, tasks = s.groups * panels;
  std::vector<PanelPlan> plans;  // plans[jp % period], relative to image (jp / period) * L (its period's first)
  for (int64_t jp = 0; jp < std::min(period, panels); ++jp) plans.push_back(plan_panel(s, jp * kGemmNR, kGemmNR));
#pragma omp parallel for schedule(static)
  for (int64_t task = 0; task < tasks; ++task) {
    alignas(64) static thread_local float bp[kKC * kGemmNR];
    static thread_local std::vector<float> panel_out;  // OCG × NR, for panels that span images
    const int64_t g = task / panels, jp = task % panels, q0 = jp * kGemmNR;
    const int64_t nr = std::min<int64_t>(kGemmNR, s.N * P - q0), n0 = q0 / P, p0 = q0 % P;
    const PanelPlan& plan = plans[static_cast<size_t>(jp % period)];
    const float* xg = x + (jp / period * L * s.C + g * CG) * s.H * s.W;  // the plan's first image
    const bool one_image = p0 + nr <= P;
    float* yg = one_image ? y + (n0 * s.OC + g * OCG) * P + p0 : nullptr;  // the panel's first column
    if (!one_image) panel_out.resize(static_cast<size_t>(OCG * kGemmNR));
    for (int64_t k0 = 0; k0 < CKK; k0 += kKC) {
      const int64_t kc = std::min(kKC, CKK - k0);
      pack_panel_from_image(xg, s, k0, kc, plan, nr, bp);
      auto b_row = [](int64_t k) { return bp + k * kGemmNR; };
      if (one_image) multiply_panel.template operator()<true>(g, k0, kc, b_row, yg, P, nr, accumulate || k0 > 0);
      else multiply_panel.template operator()<true>(g, k0, kc, b_row, panel_out.data(), kGemmNR, nr, k0 > 0);
    }
    if (one_image) {
      add_bias(g, yg, nr);
      continue;
    }
    for (int64_t j = 0; j < nr;) {  // the panel's columns, one image at a time
      const int64_t n = (q0 + j) / P, p = (q0 + j) % P, len = std::min(nr - j, P - p);
      for (int64_t i = 0; i < OCG; ++i) {
        float* yr = y + (n * s.OC + g * OCG + i) * P + p;
        const float* src = panel_out.data() + i * kGemmNR + j;
        const float bias = b ? b[g * OCG + i] : 0.0f;
        for (int64_t t = 0; t < len; ++t) yr[t] = (accumulate ? yr[t] : 0.0f) + src[t] + bias;
      }
      j += len;
    }
  }
  return false;
}

}  // namespace

void conv2d_forward_implicit(const float* x, const float* w, const float* b, float* y, const Conv2dShape& s,
                             bool accumulate) {
  forward_implicit(x, w, b, y, s, accumulate, nullptr);
}

void conv2d_forward_implicit_stats(const float* x, const float* w, const float* b, float* y, const Conv2dShape& s,
                                   PlaneStatsOut* stats) {
  forward_implicit(x, w, b, y, s, false, nullptr, stats);
}

bool conv2d_implicit_wgrad_is_direct(const Conv2dShape& s) {
  const bool rows = s.stride == 1 && s.OW >= kGemmNR && !conv2d_is_pointwise(s);
  const bool phases = phase_planes_fit(s) && s.OH * s.OW % kL == 0 && s.OC / s.groups % kWgradOB == 0;
  return kDirectWgrad && (rows || phases) && (s.C / s.groups) * (s.OC / s.groups) <= 128 * 128;
}

namespace {
// ---- data gradient, stride 2: by phases ------------------------------------------------------
//
// dx of a 3×3 convolution of stride 2 and padding 1 on even maps, split by the parity (a, b) of
// its rows and columns: input pixel (2r + a, 2j + b) receives from the taps
//   a = 0: kh = 1 (output row r)      a = 1: kh = 2 (row r), kh = 0 (row r + 1)
//   b = 0: kw = 1 (output column j)   b = 1: kw = 2 (column j), kw = 0 (column j + 1)
// so each phase is a stride-1 product over dy: dx_ab[c][p] = Σ over oc and the phase's taps of
// w[oc][c][kh][kw] · dy[oc][p shifted], one row down for kh = 0, one column right for kw = 0, p
// running over the OH×OW pixels in raster order. With each plane of dy written twice per image
// — as it is, and shifted one column left (a zero in the last column) — each with a row of
// zeros below, every (oc, tap) row of a phase's product is P consecutive floats of one of them,
// read in place by the micro-kernel as in the forward pass. The four phases are then
// interleaved into dx's rows, written (or added) once; col2im instead wrote the nine taps'
// products, nine times dx's size, and summed them back into a zeroed dx.
struct DxPhases {
  // The phases' taps (kh, kw), in the order their products are summed.
  static constexpr int kTaps[4][4][2] = {
      {{1, 1}}, {{1, 2}, {1, 0}}, {{2, 1}, {0, 1}}, {{2, 2}, {2, 0}, {0, 2}, {0, 0}}};
  static constexpr int kCount[4] = {1, 2, 2, 4};  // phase 2a + b
  int64_t OH, OW, plane, channel;
  explicit DxPhases(const Conv2dShape& s)
      : OH(s.OH), OW(s.OW), plane((s.OH + 1) * s.OW), channel(2 * (s.OH + 1) * s.OW) {}
  // Of tap (kh, kw) of output channel oc for phase pixel 0, from the buffer's start.
  int64_t offset(int64_t oc, int kh, int kw) const { return oc * channel + (kw == 0 ? plane : 0) + (kh == 0 ? OW : 0); }
  // Writes one plane of dy (OH×OW) into dst (channel floats; the last row of each copy is left
  // as it is: zero).
  void fill(const float* dyc, float* dst) const {
    for (int64_t r = 0; r < OH; ++r) {
      const float* src = dyc + r * OW;
      std::copy_n(src, OW, dst + r * OW);
      std::copy_n(src + 1, OW - 1, dst + plane + r * OW);
      dst[plane + r * OW + OW - 1] = 0.0f;  // column OW: past the image
    }
  }
};

// dx (=, or += with add) for a convolution phase_panels_pay accepts, with output channels.
void dx_by_phases(const float* dy, const float* w, float* dx, const Conv2dShape& s, bool add) {
  const int64_t CG = s.C / s.groups, OCG = s.OC / s.groups, P = s.OH * s.OW;
  const int64_t MP = (CG + kGemmMR - 1) / kGemmMR * kGemmMR;  // rows of packed weights, whole tiles
  const DxPhases ph(s);
  // The weights of phase f and group g as a CG × K matrix (K = OCG · its taps, k = oc·taps + t),
  // packed as gemm_pack_a lays them out, in blocks of kKC columns, at ap[f][g]; the table of
  // each k's offset into dy's planes, at off[f].
  std::vector<std::vector<float>> ap(4);
  std::vector<std::vector<int64_t>> off(4);
  for (int f = 0; f < 4; ++f) {
    const int T = DxPhases::kCount[f];
    const int64_t K = OCG * T;
    std::vector<float> a(static_cast<size_t>(CG * K));
    ap[f].assign(static_cast<size_t>(s.groups * MP * K + 16), 0.0f);
    for (int64_t oc = 0; oc < OCG; ++oc)
      for (int t = 0; t < T; ++t) off[f].push_back(ph.offset(oc, DxPhases::kTaps[f][t][0], DxPhases::kTaps[f][t][1]));
    for (int64_t g = 0; g < s.groups; ++g) {
      for (int64_t c = 0; c < CG; ++c)
        for (int64_t oc = 0; oc < OCG; ++oc)
          for (int t = 0; t < T; ++t)
            a[static_cast<size_t>(c * K + oc * T + t)] =
                w[((g * OCG + oc) * CG + c) * 9 + DxPhases::kTaps[f][t][0] * 3 + DxPhases::kTaps[f][t][1]];
      for (int64_t k0 = 0; k0 < K; k0 += kKC)
        gemm_pack_a({a.data(), K, 1}, 0, k0, CG, std::min(kKC, K - k0), ap[f].data() + g * MP * K + k0 * MP);
    }
  }
#pragma omp parallel
  {
    static thread_local ScratchBuffer buf_storage, out_storage;
    float* buf = buf_storage.get(OCG * ph.channel + kGemmNR);
    float* out = out_storage.get(4 * CG * P);  // phase f of channel c at out + (f*CG + c)*P
    std::fill_n(buf, OCG * ph.channel + kGemmNR, 0.0f);  // the zero rows and the slack stay zero
#pragma omp for schedule(static)
    for (int64_t task = 0; task < s.N * s.groups; ++task) {
      const int64_t n = task / s.groups, g = task % s.groups;
      for (int64_t oc = 0; oc < OCG; ++oc) ph.fill(dy + (n * s.OC + g * OCG + oc) * P, buf + oc * ph.channel);
      for (int f = 0; f < 4; ++f) {
        const int64_t K = OCG * DxPhases::kCount[f];
        for (int64_t p0 = 0; p0 < P; p0 += kGemmNR) {
          const int64_t nr = std::min<int64_t>(kGemmNR, P - p0);
          const float* corner = buf + p0;
          for (int64_t k0 = 0; k0 < K; k0 += kKC) {
            const int64_t kc = std::min(kKC, K - k0);
            const float* a_chunk = ap[f].data() + g * MP * K + k0 * MP;
            const int64_t* o = off[f].data() + k0;
            for (int64_t ir = 0; ir < CG; ir += kGemmMR)
              gemm_tile_rows<false>(kc, a_chunk + ir * kc, [corner, o](int64_t k) { return corner + o[k]; },
                                    out + (f * CG + ir) * P + p0, P, std::min<int64_t>(kGemmMR, CG - ir), nr, k0 > 0);
          }
        }
      }
      // Interleave: row 2r + a of dx is phases (a, 0) and (a, 1) of row r, column by column.
      for (int64_t c = 0; c < CG; ++c) {
        float* dxc = dx + ((n * s.C + g * CG + c) * s.H) * s.W;
        for (int64_t ih = 0; ih < s.H; ++ih) {
          const int64_t a = ih % 2, r = ih / 2;
          const float* even = out + ((2 * a) * CG + c) * P + r * s.OW;
          const float* odd = out + ((2 * a + 1) * CG + c) * P + r * s.OW;
          float* row = dxc + ih * s.W;
          for (int64_t j = 0; j < s.OW; ++j) {
            row[2 * j] = (add ? row[2 * j] : 0.0f) + even[j];
            row[2 * j + 1] = (add ? row[2 * j + 1] : 0.0f) + odd[j];
          }
        }
      }
    }
  }
}

// dx as a convolution of dy needs stride 1, a square kernel and padding <= KH-1 (so that the
// transposed convolution's padding KH-1-padding is not negative). It pays where that
// convolution reads its rows in place (rows_in_place); on narrower maps im2col's
// GEMMs are faster (ResNet-20's 8×8 layers: 65 against 43 GFLOP/s for dx + dw, 2 threads).
bool dx_is_conv(const Conv2dShape& s) {
  return s.stride == 1 && s.KH == s.KW && s.padding <= s.KH - 1 && rows_in_place(s.W);
}

// dx as the convolution t of dy (conv2d_forward_implicit), and with it dw's direct sums by
// images (WgradDirect), each image's right after its dx, on the same thread: the image of dy,
// which dx's task has just copied, is then read from that core's cache instead of from memory
// a second time. Returns false, doing nothing, where dw does not run by images on one group
// and whole-image tasks (the caller computes both); otherwise computes both and returns true.
// The sums are those of conv2d_wgrad_direct, in the same order: the same dw, bit for bit.
// ResNet-20's 16 -> 16 backward (edl train --profile-shapes, 39 steps, six alternating pairs)
// 1719-1810 -> 1627-1737 ms, each pair 4-6% faster.
bool fused_dw(const float* dy, const float* wt, float* dx, const Conv2dShape& t, bool add_dx, const float* x,
              float* dw, const Conv2dShape& s) {
#if !defined(XSIMD_NO_SUPPORTED_ARCHITECTURE)
  const WgradDirect wd(s);
  if (!wd.by_images || s.groups != 1 || s.N < 8) return false;
  std::vector<float> parts(static_cast<size_t>(wd.chunks() * wd.tasks * wd.block_floats), 0.0f);
  const std::function<void(int64_t)> after = [&](int64_t n) {
    float *dyr, *xp;
    wd.thread_buffers(wd.tasks, dyr, xp);
    wd.sum_images(x, dy, n, n + 1, 0, wd.tasks, parts.data() + n / wd.chunk * wd.tasks * wd.block_floats, dyr, xp);
  };
  const AfterImage hook{wd.chunk, &after};
  if (forward_implicit(dy, wt, nullptr, dx, t, add_dx, &hook)) wd.add_chunks(parts.data(), dw);
  else conv2d_wgrad_direct(x, dy, dw, s);  // dx took another path (not expected here): dw on its own
  return true;
#else
  (void)dy, (void)wt, (void)dx, (void)t, (void)add_dx, (void)x, (void)dw, (void)s;
  return false;
#endif
}

void backward_implicit(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                       const Conv2dShape& s, bool add_dx) {
  const int64_t CG = s.C / s.groups, OCG = s.OC / s.groups, KK = s.KH * s.KW, CKK = CG * KK;
  const bool dx_as_conv = dx && dx_is_conv(s), dx_phases = dx && !dx_as_conv && phase_panels_pay(s) && OCG > 0;
  const bool dw_direct = dw && conv2d_implicit_wgrad_is_direct(s);
  bool dw_done = false;  // summed beside dx (fused_dw)
  if (dx_phases) dx_by_phases(dy, w, dx, s, add_dx);
  if (dx_as_conv) {
    // wt (C, OC/groups, KH, KW): wt[g*CG + c][oc][kh][kw] = w[g*OCG + oc][c][KH-1-kh][KW-1-kw].
    std::vector<float> wt(static_cast<size_t>(s.OC * CG * KK));
    for (int64_t g = 0; g < s.groups; ++g)
      for (int64_t oc = 0; oc < OCG; ++oc)
        for (int64_t c = 0; c < CG; ++c)
          for (int64_t t = 0; t < KK; ++t)
            wt[static_cast<size_t>(((g * CG + c) * OCG + oc) * KK + (KK - 1 - t))] = w[((g * OCG + oc) * CG + c) * KK + t];
    Conv2dShape t = s;
    t.C = s.OC, t.H = s.OH, t.W = s.OW, t.OC = s.C, t.padding = s.KH - 1 - s.padding, t.OH = s.H, t.OW = s.W;
    dw_done = dw_direct && fused_dw(dy, wt.data(), dx, t, add_dx, x, dw, s);
    if (!dw_done) conv2d_forward_implicit(dy, wt.data(), nullptr, dx, t, add_dx);
  }
  // dw, one of three ways:
  // - directly (conv2d_implicit_wgrad_is_direct) when the stride is 1 and output rows have at
  //   least NR pixels, or on stride 2's phase planes (AVX-512, 2 threads, against im2col:
  //   ResNet-20's 16 → 32 and 32 → 64 1.58× and 1.18×, ResNet-18's 64 → 128 1.12×), and there
  //   are at most 128 × 128 channels per group: its per-thread sums (kWgradOB × C·KH·KW
  //   vectors per block of output channels) outgrow the caches beyond.
  //   Measured (AVX2), dw alone on 2 threads (edl_bench layers/conv2d, medians of 2-3
  //   rounds): ResNet-18's 64 → 64 on 32×32 70.6 ms against im2col's 140, its 128 → 128 on
  //   16×16 88 against the batch GEMM's 181 (below); on 256 → 256 the GEMM wins (8×8 maps: 110
  //   against 226).
  // - as one implicit GEMM over the batch (conv2d_wgrad_gemm) for wide layers, at least 128
  //   output channels and 1024 taps per group (not 1×1: not measured), where each packed value
  //   of the image feeds enough multiply-adds to hide the packing. dx + dw on 2 threads, medians of 4–5 rounds
  //   against im2col: airbench's 256 → 256 on 7×7 maps 178 → 152 ms and on 3×3 maps 41.7 →
  //   32.1 ms; ResNet-18's 128 → 128 (16×16) 212 → 201, 256 → 256 (8×8) 215 → 197, the
  //   stride-2 128 → 256 and 256 → 512 100 → 99 and 118 → 106, 512 → 512 (4×4) a tie. Narrower
  //   products lose: 64 → 64 on 8×8 maps 17.9 → 23.0 ms, airbench's 64 → 256 on 15×15 (576
  //   taps) 159 → 198 ms.
  // - otherwise im2col's product dy·colᵀ (with dx's product from the same gathered dy when
  //   dx goes that way too; 1×1 convolutions are a plain GEMM there already).
  const bool dw_gemm = dw && !dw_direct && OCG >= 128 && CKK >= 1024 && KK > 1;
  if (dw_direct && !dw_done) conv2d_wgrad_direct(x, dy, dw, s);
  if (dw_gemm) conv2d_wgrad_gemm(x, dy, dw, s);
  (add_dx ? conv2d_backward_im2col_add_dx : conv2d_backward_im2col)(x, w, dy, dx_as_conv || dx_phases ? nullptr : dx,
                                                                     dw_direct || dw_gemm ? nullptr : dw, db, s);
}
}  // namespace

void conv2d_backward_implicit(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                              const Conv2dShape& s) {
  backward_implicit(x, w, dy, dx, dw, db, s, /*add_dx=*/false);
}
void conv2d_backward_implicit_add_dx(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                                     const Conv2dShape& s) {
  backward_implicit(x, w, dy, dx, dw, db, s, /*add_dx=*/true);
}

}  // namespace edl
