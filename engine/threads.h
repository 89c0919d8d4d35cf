// threads.h — how many threads the kernels use, and flushing subnormal floats to zero in each.
//
// Kernels parallelize their outer loops with OpenMP (`#pragma omp parallel for`); this file
// sets how many threads those loops get and puts every one of those threads in flush-to-zero
// mode. edl::call does it once, lazily, before the first op runs (init_threads_once), so every
// program that runs an op gets it; call set_num_threads yourself to choose a count.
//
// Why flush subnormals. A float below 2^-126 (~1.2e-38) is subnormal: it has lost its implicit
// leading 1 and trades precision for range. Many x86 cores (Intel's in particular) compute
// with subnormal inputs or results through a microcode assist that costs on the order of 100
// cycles instead of a few. Training produces them: gradients and momenta that decay towards
// zero, products of tiny learning rates; a PyTorch run on the course machine was reported to
// stall mid-training because of it. How much a core pays varies (bench/denormal_bench.cpp
// measures yours), but no deep-learning result depends on values this small, so we trade them
// for speed that does not depend on the data, as torch.set_flush_denormal(True) does:
//   x86-64:  MXCSR bit 15 FTZ (results that would be subnormal become 0) and bit 6 DAZ
//            (subnormal inputs are read as 0), via _mm_getcsr/_mm_setcsr (SSE, so every
//            x86-64; AVX instructions obey the same register);
//   AArch64: FPCR bit 24 FZ (flushes subnormal inputs and results alike);
//   others:  nothing (the arithmetic stays IEEE-exact and subnormals only cost time).
//
// The control register is per thread. OpenMP keeps its worker threads alive from one parallel
// region to the next (libgomp and LLVM's libomp both do), and a thread created later inherits
// the floating-point environment of the thread that creates it (POSIX pthread_create), so
// setting it once in every thread of a team covers the kernels' parallel loops. A thread that
// already existed when set_num_threads ran, and runs ops, calls flush_denormals_in_this_thread()
// first (the OpenMP threads it starts then inherit the mode).
//
// Sharing the machine. Between parallel loops, libgomp's idle threads spin for a while before
// they sleep. When another busy program (another training run) holds the cores, spinning
// threads of both programs steal each other's time slices and a parallel loop can wait a whole
// slice (milliseconds) for its last thread: measured 100x slower on the 2-core course machine.
// There, run with OMP_WAIT_POLICY=passive (idle threads sleep at once) or OMP_NUM_THREADS=1.
#pragma once

#include <cstdint>

namespace edl {

// Sets the number of threads of the kernels' parallel loops: n > 0 as given; n <= 0 takes
// OMP_NUM_THREADS when it holds a positive number, else every core. Then sets flush-to-zero in
// every thread of the OpenMP team (and in the calling thread).
void set_num_threads(int n);

// The thread count set_num_threads chose (what the next parallel loop uses).
int num_threads();

// Turns flush-to-zero / denormals-are-zero on (or, with false, off again: the denormal
// benchmark compares both) for the calling thread only.
void flush_denormals_in_this_thread(bool on = true);

// Whether the calling thread flushes subnormals (false where the architecture has no switch).
bool denormals_flushed_in_this_thread();

// The first time it is called, sets flush-to-zero in every thread, keeping the thread count
// OpenMP would use anyway (OMP_NUM_THREADS, a count set before, or every core). edl::call
// calls it before every op, so no program forgets.
void init_threads_once();

// Loops over fewer elements than this run on one thread: waking and joining a team costs
// microseconds, which a loop over fewer floats (a few tens of microseconds on one core) would
// not win back.
inline constexpr int64_t kParallelMin = 64 * 1024;

}  // namespace edl
