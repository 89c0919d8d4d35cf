// threads.cpp — thread count and flush-to-zero; see threads.h for why.
#include "engine/threads.h"

#include <omp.h>

#include <cstdlib>
#include <mutex>

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>  // _mm_getcsr, _mm_setcsr
#endif

namespace edl {

namespace {

// OMP_NUM_THREADS when it holds a positive number, else 0.
int threads_from_environment() {
  const char* s = std::getenv("OMP_NUM_THREADS");
  if (!s) return 0;
  char* end = nullptr;
  const long n = std::strtol(s, &end, 10);  // "4" or "4,2" (nested levels): the first number
  return end != s && n > 0 ? static_cast<int>(n) : 0;
}

}  // namespace

void flush_denormals_in_this_thread(bool on) {
#if defined(__SSE__) || defined(__x86_64__)
  constexpr unsigned kFtz = 0x8000, kDaz = 0x0040;  // MXCSR bits 15 and 6
  const unsigned csr = _mm_getcsr();
  _mm_setcsr(on ? csr | kFtz | kDaz : csr & ~(kFtz | kDaz));
#elif defined(__aarch64__)
  constexpr uint64_t kFz = uint64_t{1} << 24;  // FPCR.FZ
  uint64_t fpcr;
  __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
  fpcr = on ? fpcr | kFz : fpcr & ~kFz;
  __asm__ volatile("msr fpcr, %0" : : "r"(fpcr));
#else
  (void)on;  // no portable switch: subnormals stay, exact and slow
#endif
}

bool denormals_flushed_in_this_thread() {
#if defined(__SSE__) || defined(__x86_64__)
  return (_mm_getcsr() & 0x8040) == 0x8040;
#elif defined(__aarch64__)
  uint64_t fpcr;
  __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
  return (fpcr >> 24) & 1;
#else
  return false;
#endif
}

void set_num_threads(int n) {
  if (n <= 0) n = threads_from_environment();
  if (n <= 0) n = omp_get_num_procs();
  omp_set_num_threads(n);
  // Every thread of the team the kernels' loops will use, the caller included (it is thread 0);
  // the OpenMP runtime keeps these threads for the later loops.
#pragma omp parallel num_threads(n)
  flush_denormals_in_this_thread();
}

int num_threads() { return omp_get_max_threads(); }

void init_threads_once() {
  static std::once_flag once;
  // omp_get_max_threads() is what OpenMP would use anyway: OMP_NUM_THREADS, a count the program
  // set before (set_num_threads or omp_set_num_threads), or every core.
  std::call_once(once, [] { set_num_threads(omp_get_max_threads()); });
}

}  // namespace edl
