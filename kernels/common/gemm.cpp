// gemm.cpp — the GEMM driver: the five loops of BLIS (Van Zee & van de Geijn, "BLIS: A
// Framework for Rapidly Instantiating BLAS Functionality", 2015), packing, and threads.
//
//   for jc in N step NC            5th loop: a panel of B that fits the L3 cache
//     for pc in K step kc <= KC    4th loop: its kc rows are packed once into Bp (equal blocks)
//       for ic in M step MC        3rd loop: a block of A that fits the L2 cache, packed into Ap  <- threads
//                                  (and the 2nd loop's panels too when there are few blocks);
//                                  with enough columns, threads split N instead, each running
//                                  all five loops on its own columns
//         for jr in NC step NR     2nd loop: one micro-panel of Bp (stays in L1)
//           for ir in MC step MR   1st loop: one micro-panel of Ap
//             micro-kernel: C[ir:ir+MR, jr:jr+NR] += Ap[ir] · Bp[jr] over KC
//
// Packing copies a block into the exact order the micro-kernel reads it (contiguous, aligned,
// zero-padded to whole tiles), so the inner loops never stride through memory and never test
// for edges. docs/gemm.md draws it.
#include "kernels/common/gemm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include <omp.h>

#include "kernels/common/gemm_ukernel.h"

namespace edl {

namespace {

// Block sizes. KC×NR floats of B (a micro-panel: 16 KB with AVX2, 32 KB with AVX-512's NR = 32)
// stay in L1 (32 or 48 KB) while the micro-panels of A stream past; MC×KC of A fits L2; KC×NC
// of B (4 MB) fits L3.
constexpr int64_t KC = 256;
// 60 micro-panels of A (480 KB with AVX-512): each micro-panel of B brought into L1 then serves
// 60 tiles, where 20 (160 KB) served a third as many. AVX-512, 2 MB of L2 per core,
// bench/compare.py 3 rounds, oneDNN's entries the control (0.97–1.02×): 2048³ on 1 thread
// 1.06× and 1.09× (two runs), 1024³ 0.98–1.06×; the im2col products 0.97–1.10× (products of
// 256 rows, now one block: airbench's M=256 K=576 N=28800 1.10×, M=256 K=2304 N=1152 1.27×).
constexpr int64_t MC = kGemmMR * 60;
constexpr int64_t NC = 4096;
// With one block of A (M <= MC) each packed panel of B is used once, by that block, right after
// it is packed: blocks of B that fit the L2 cache (1 MB at KC = 256) are then read back from
// there rather than from L3 or memory. On the machine with AVX-512 (2 MB of L2 per core; the
// blocks of NC columns were 4 MB), 2 threads, bench/compare.py 3 rounds, medians, oneDNN's
// entries the control (0.96–1.10×): the im2col products M=32 K=288 N=32768 7.16 → 3.79 ms, M=16
// K=144 N=131072 9.24 → 6.14, M=64 K=576 N=8192 3.92 → 2.82, M=64 K=27 N=131072 8.92 → 4.52.
constexpr int64_t NC_ONE_BLOCK = 1024;
// Products below this many flops (a 128³ GEMM is 4.2 M) run on one thread.
constexpr double kParallelFlops = 4e6;
// Products of several blocks of A with at least this many columns of B per thread: each thread
// takes its own columns (see gemm_f32_packed). Counted in columns, not panels: with AVX-512's
// panels of 32 columns, 32 panels (1024 columns a thread) left 1024³ on 2 threads to the shared
// panels; 512 columns a thread (16 panels; 32 of AVX2's, as before): 1024³ 8.36 / 8.63 ->
// 7.95 / 7.92 ms (two alternating rounds), oneDNN's entries the control (7.41-7.49 ms in both).
constexpr int64_t kOwnColumns = 512;
// Depth up to which a thread on its own columns runs each micro-panel of A along the whole row
// of B's panels (ir outer, jr inner) rather than each panel of B down the block of A. A shallow
// product is mostly the writing of C: in that order each of a tile's MR rows of C is written
// left to right, MR sequential streams that the hardware prefetchers follow, where going down
// the block wrote MR·NR floats at a time a row of C apart (a power of two in im2col products:
// the same cache sets). Deeper products keep the panel of B in L1 for the whole block of A.
// AVX-512, bench/compare.py 3 rounds: ResNet-18's M=128 K=64 N=32768 1.51× on 1 thread and 1.08×
// on 2, M=64 K=27 N=131072 1.43× and 1.14×, M=256 K=128 N=8192 1.08× on 1 thread; deeper
// products 0.98–1.01×. The same order for every depth cost 2048³ on 1 thread 0.78× (its
// panels of B, 2 MB, then came from L3 for every tile).
constexpr int64_t kShallowKC = 128;

// Ap: the mc×kc block of A at (i0, k0) as micro-panels of MR rows (see gemm_pack_a in gemm.h).
// Whole panels of a row-major or transposed A get a loop with a unit stride and no test for
// the padding, which the compiler vectorizes (for row-major A, as transposes of 8×8 blocks);
// only the last, partial panel and other strides take the general loop with its zero padding.
// AVX-512, 1 thread: 1024³ 1.03×, 2048³ 1.05× (the padding test had made pack_a 9% of 1024³).
void pack_a(MatrixView A, int64_t i0, int64_t k0, int64_t mc, int64_t kc, float* ap) {
  const int64_t panels = (mc + kGemmMR - 1) / kGemmMR;
  for (int64_t p = 0; p < panels; ++p) {
    float* dst = ap + p * kGemmMR * kc;
    const int64_t rows = std::min<int64_t>(kGemmMR, mc - p * kGemmMR);
    const float* src = A.data + (i0 + p * kGemmMR) * A.rs + k0 * A.cs;
    if (rows == kGemmMR && A.cs == 1) {
      for (int64_t k = 0; k < kc; ++k)
        for (int64_t r = 0; r < kGemmMR; ++r) dst[k * kGemmMR + r] = src[r * A.rs + k];
    } else if (rows == kGemmMR && A.rs == 1) {
      for (int64_t k = 0; k < kc; ++k)
        for (int64_t r = 0; r < kGemmMR; ++r) dst[k * kGemmMR + r] = src[k * A.cs + r];
    } else {
      for (int64_t k = 0; k < kc; ++k)
        for (int64_t r = 0; r < kGemmMR; ++r) dst[k * kGemmMR + r] = r < rows ? src[r * A.rs + k * A.cs] : 0.0f;
    }
  }
}

// Bp: the kc×nc block of B at (k0, j0) as micro-panels of NR columns; panel p holds, for each
// k, the NR values B[k0 + k][j0 + p*NR + c] (zeros past the last column). This packs panels
// p0 .. p1-1 (each thread of the driver packs its own share).
// The loop order follows B's layout so that reads run along contiguous memory, which is what
// the hardware prefetcher follows. (Reading addresses a row apart instead — often a power of
// two bytes — makes them collide in the same cache sets.)
//   row-major B (cs == 1): kPackRows rows at a time, copied a vector at a time into every
//     panel — each panel then receives kPackRows·NR contiguous floats (1 KB with AVX-512) per
//     visit, where one row at a time wrote NR floats into each panel in turn, panels kc·NR
//     floats apart (32 KB: the same L1 set for all of them). AVX-512, bench/compare.py 3
//     rounds: ResNet-18's im2col products M=128 K=1152 1.11× / 1.08× (1 / 2 threads), M=256
//     K=2304 1.07× / 1.10×, M=128 K=576 1.08×; ResNet-20's 1.00–1.16×; 1024³ and 2048³ 0.98–1.03×
//     (32 rows at a time: 1.00–1.09×; 4: as 8);
//   transposed B (rs == 1): each column read down its kc contiguous values.
void pack_b(MatrixView B, int64_t k0, int64_t j0, int64_t kc, int64_t nc, float* bp, int64_t p0, int64_t p1) {
  if (B.cs == 1) {
    constexpr int64_t kPackRows = 8;
    for (int64_t kb = 0; kb < kc; kb += kPackRows)
      for (int64_t p = p0; p < p1; ++p)
        for (int64_t k = kb; k < std::min(kc, kb + kPackRows); ++k) {
          const float* src = B.data + (k0 + k) * B.rs + j0 + p * kGemmNR;
          float* d = bp + (p * kc + k) * kGemmNR;
          const int64_t cols = std::min<int64_t>(kGemmNR, nc - p * kGemmNR);
          if (cols == kGemmNR) {
            for (int64_t c = 0; c < kGemmNR; ++c) d[c] = src[c];  // one vector copy
          } else {
            for (int64_t c = 0; c < kGemmNR; ++c) d[c] = c < cols ? src[c] : 0.0f;
          }
        }
  } else {
    for (int64_t p = p0; p < p1; ++p) {
      float* d = bp + p * kc * kGemmNR;
      const int64_t cols = std::min<int64_t>(kGemmNR, nc - p * kGemmNR);
      for (int64_t c = 0; c < kGemmNR; ++c) {
        if (c >= cols) {
          for (int64_t k = 0; k < kc; ++k) d[k * kGemmNR + c] = 0.0f;
          continue;
        }
        const float* src = B.data + k0 * B.rs + (j0 + p * kGemmNR + c) * B.cs;
        for (int64_t k = 0; k < kc; ++k) d[k * kGemmNR + c] = src[k * B.rs];
      }
    }
  }
}

// Bias and ReLU on an m×n tile of C, once its sum over K is complete.
void apply_epilogue(const GemmEpilogue& ep, float* c, int64_t ldc, int64_t i0, int64_t j0, int64_t m, int64_t n) {
  if (!ep.bias_row && !ep.bias_col && !ep.relu) return;
  for (int64_t i = 0; i < m; ++i) {
    float* row = c + i * ldc;
    const float br = ep.bias_row ? ep.bias_row[i0 + i] : 0.0f;
    for (int64_t j = 0; j < n; ++j) {
      float v = row[j] + br + (ep.bias_col ? ep.bias_col[j0 + j] : 0.0f);
      row[j] = ep.relu && v < 0 ? 0.0f : v;
    }
  }
}

}  // namespace

void gemm_pack_a(MatrixView A, int64_t i0, int64_t k0, int64_t mc, int64_t kc, float* ap) {
  pack_a(A, i0, k0, mc, kc, ap);
}

const char* gemm_ukernel_name() { return kGemmUkernelName.c_str(); }

namespace {
// The packer of gemm_f32: two strided matrices.
class MatrixPacker final : public GemmPacker {
 public:
  MatrixPacker(MatrixView A, MatrixView B) : A_(A), B_(B) {}
  void pack_a(int64_t i0, int64_t k0, int64_t mc, int64_t kc, float* ap) const override {
    edl::pack_a(A_, i0, k0, mc, kc, ap);
  }
  void pack_b(int64_t k0, int64_t j0, int64_t kc, int64_t nc, float* bp, int64_t p0, int64_t p1) const override {
    edl::pack_b(B_, k0, j0, kc, nc, bp, p0, p1);
  }

 private:
  MatrixView A_, B_;
};
}  // namespace

void gemm_f32(int64_t M, int64_t N, int64_t K, MatrixView A, MatrixView B, float* C, int64_t ldc,
              const GemmEpilogue& ep) {
  gemm_f32_packed(M, N, K, MatrixPacker(A, B), C, ldc, ep);
}

void gemm_f32_packed(int64_t M, int64_t N, int64_t K, const GemmPacker& packer, float* C, int64_t ldc,
                     const GemmEpilogue& ep) {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // an empty sum: C = (accumulate ? C : 0), then the epilogue
    for (int64_t i = 0; i < M; ++i) {
      if (!ep.accumulate) std::fill(C + i * ldc, C + i * ldc + N, 0.0f);
      apply_epilogue(ep, C + i * ldc, ldc, i, 0, 1, N);
    }
    return;
  }
  // Starting threads costs microseconds: a small product runs on the calling thread alone.
  const bool parallel = 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K) >= kParallelFlops;
  // Inside another parallel region (im2col's per-image products) a nested region would get one
  // thread: size the per-thread buffers for one.
  const int threads = parallel && !omp_in_parallel() ? omp_get_max_threads() : 1;
  // Buffers are allocated here, not inside the parallel region, where an exception (bad_alloc)
  // could not propagate. Each thread packs A into its own slice of Ap; Bp is shared by the
  // team, or one per thread on the path below.
  static thread_local ScratchBuffer scratch_a, scratch_b;
  constexpr int64_t kBpFloats = KC * ((NC + kGemmNR - 1) / kGemmNR * kGemmNR);
  float* ap_all = scratch_a.get(MC * KC * threads);
  // Blocks of A of equal size (a multiple of MR, at most MC), so that threads taking equal
  // numbers of blocks get equal work: with AVX-512 (MC = 480) M = 500 is two blocks of 256 and
  // 244 rows, not 480 and 20.
  const int64_t m_blocks = (M + MC - 1) / MC;
  const int64_t mcb = ((M + m_blocks - 1) / m_blocks + kGemmMR - 1) / kGemmMR * kGemmMR;
  const int64_t all_panels = (N + kGemmNR - 1) / kGemmNR;
  // Blocks of the depth of equal size too (at most KC): K = 288 is two blocks of 144, not 256
  // and a block of 32 that reads and writes all of C for an eighth of the arithmetic. AVX-512,
  // bench/compare.py 3 rounds, oneDNN's entries the control (0.94-1.05x): ResNet-20's M=32 K=288
  // N=32768 1.06x / 1.19x (1 / 2 threads), M=64 K=288 N=8192 1.08x / 1.11x; K=576 1.00-1.05x;
  // K=1152 (five blocks either way) unchanged.
  const int64_t k_blocks = (K + KC - 1) / KC, kcb = (K + k_blocks - 1) / k_blocks;

  // Each thread on its own columns: it takes a contiguous range of B's panels and runs all the
  // loops on it alone, packing its own panels of B and every block of A — no barrier, and equal
  // shares whatever M is. Shared panels cost two barriers per KC×NC block of B, and their
  // tasks (blocks of A × slices of B) split unevenly when M is not a multiple of the blocks
  // (M = 500 with AVX-512: blocks of 256 and 244 rows). The price is packing A once per thread instead of
  // once, which pays while each thread's columns are many (at least kOwnColumns of them)
  // and is why products with few columns keep the shared panels.
  // - One block of A and at least 4 panels per thread (the im2col products of every ResNet-20
  //   layer): packing the one block of A in each thread costs little, while on shared panels
  //   the barriers came every few tens of microseconds. Measured with AVX2, blocks of 4096
  //   columns, on 2 threads (4 alternating rounds, medians): M=16 K=27 21.3 → 47.9 GFLOP/s,
  //   M=64 K=27 38.6 → 48.4, M=16 K=144 40.5 → 47.6, M=32 K=144 5.61 → 4.28 ms; deeper products
  //   gained nothing then (M=32 K=288 10.7 → 10.4 ms, within noise). With AVX-512 and blocks of
  //   1024 columns, own columns for deeper products too: against shared panels and blocks of
  //   4096, M=128 K=576 N=32768 (one block of 128 rows) took 31.7 → 36.8 ms with shared panels
  //   and blocks of 1024, 33.3 → 32.7 with own columns (3 rounds, in two runs).
  // - Several blocks of A: 2 threads, bench/compare.py against the shared panels, 5 rounds,
  //   medians, with oneDNN's entries of the same binaries as the control (0.98–1.00×, within
  //   noise): 1024³ 18.3 → 16.6 ms, 2048³ 148.8 → 129.1, ResNet-18's M=512 K=2304 N=2048
  //   42.9 → 37.8 (1.10×, 1.15×, 1.14×; a shared machine, where a thread held up at a barrier
  //   holds up both). An earlier 7-round run: M=128 K=1152 N=32768 141.8 → 114.2.
  const bool own_columns =
      m_blocks == 1 ? all_panels >= 4 * threads : all_panels * kGemmNR >= kOwnColumns * threads;
  const int64_t nc_max = m_blocks == 1 ? NC_ONE_BLOCK : NC;
  if (parallel && own_columns) {
    float* bp_all = scratch_b.get(kBpFloats * threads);
#pragma omp parallel num_threads(threads)
    {
      const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
      float* ap = ap_all + t * MC * KC;
      float* bp = bp_all + t * kBpFloats;
      const int64_t j_end = std::min(N, all_panels * (t + 1) / T * kGemmNR);
      for (int64_t jc = all_panels * t / T * kGemmNR; jc < j_end; jc += nc_max) {
        const int64_t nc = std::min(nc_max, j_end - jc), n_panels = (nc + kGemmNR - 1) / kGemmNR;
        for (int64_t pc = 0; pc < K; pc += kcb) {
          const int64_t kc = std::min(kcb, K - pc);
          const bool accumulate = pc > 0 || ep.accumulate, last = pc + kc == K;
          packer.pack_b(pc, jc, kc, nc, bp, 0, n_panels);
          for (int64_t ic = 0; ic < M; ic += mcb) {
            const int64_t mc = std::min(mcb, M - ic);
            packer.pack_a(ic, pc, mc, kc, ap);
            const auto tile = [&](int64_t ir, int64_t jr) {  // C[ic+ir.., jc+jr..] += Ap[ir] · Bp[jr]
              const int64_t nr = std::min<int64_t>(kGemmNR, nc - jr), mr = std::min<int64_t>(kGemmMR, mc - ir);
              const float* b_panel = bp + jr * kc;
              float* c = C + (ic + ir) * ldc + jc + jr;
              gemm_tile_rows<true>(kc, ap + ir * kc, [b_panel](int64_t k) { return b_panel + k * kGemmNR; }, c,
                                   ldc, mr, nr, accumulate);
              if (last) apply_epilogue(ep, c, ldc, ic + ir, jc + jr, mr, nr);
            };
            if (kc <= kShallowKC) {
              for (int64_t ir = 0; ir < mc; ir += kGemmMR)
                for (int64_t jr = 0; jr < nc; jr += kGemmNR) tile(ir, jr);
            } else {
              for (int64_t jr = 0; jr < nc; jr += kGemmNR)
                for (int64_t ir = 0; ir < mc; ir += kGemmMR) tile(ir, jr);
            }
          }
        }
      }
    }
    return;
  }
  float* bp = scratch_b.get(kBpFloats);

  // One parallel region for the whole product. For each KC×NC block of B, the threads pack
  // their share of its micro-panels, wait for each other, then split the work on that block:
  // tasks are (block of mcb rows of A) × (slice of B's micro-panels), in that order, cut into
  // equal contiguous ranges, one per thread. Each thread packs the blocks of A its tasks need
  // into its own buffer (on a core's private L2). Small M (one block of A, and too few columns
  // for the path above) is split by slices of B; large M mostly by blocks of A, with slices
  // added until there are a few tasks per thread.
#pragma omp parallel if (parallel)
  {
    const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
    float* ap = ap_all + t * MC * KC;
    for (int64_t jc = 0; jc < N; jc += nc_max) {
      const int64_t nc = std::min(nc_max, N - jc), n_panels = (nc + kGemmNR - 1) / kGemmNR;
      const int64_t slices = std::min(n_panels, std::max<int64_t>(1, (8 * T + m_blocks - 1) / m_blocks));
      const int64_t tasks = m_blocks * slices, task0 = tasks * t / T, task1 = tasks * (t + 1) / T;
      for (int64_t pc = 0; pc < K; pc += kcb) {
        const int64_t kc = std::min(kcb, K - pc);
        const bool first = pc == 0, last = pc + kc == K;
        packer.pack_b(pc, jc, kc, nc, bp, n_panels * t / T, n_panels * (t + 1) / T);
#pragma omp barrier
        int64_t packed_block = -1;
        for (int64_t task = task0; task < task1; ++task) {
          const int64_t ib = task / slices, sl = task % slices;
          const int64_t ic = ib * mcb, mc = std::min(mcb, M - ic);
          if (ib != packed_block) packer.pack_a(ic, pc, mc, kc, ap), packed_block = ib;
          for (int64_t jp = n_panels * sl / slices; jp < n_panels * (sl + 1) / slices; ++jp) {
            const int64_t jr = jp * kGemmNR, nr = std::min<int64_t>(kGemmNR, nc - jr);
            for (int64_t ir = 0; ir < mc; ir += kGemmMR) {
              const int64_t mr = std::min<int64_t>(kGemmMR, mc - ir);
              float* c = C + (ic + ir) * ldc + jc + jr;
              const bool accumulate = !first || ep.accumulate;
              const float* b_panel = bp + jr * kc;
              gemm_tile_rows<true>(kc, ap + ir * kc, [b_panel](int64_t k) { return b_panel + k * kGemmNR; }, c, ldc,
                                   mr, nr, accumulate);
              if (last) apply_epilogue(ep, c, ldc, ic + ir, jc + jr, mr, nr);
            }
          }
        }
#pragma omp barrier  // before the next block of B overwrites bp
      }
    }
  }
}

}  // namespace edl
