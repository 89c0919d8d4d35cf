// profiler.h — where the time of a program goes, op by op.
//
// When profiling is on (set_profiling(true), `edl train --profile`, or EDL_PROFILE=1 in the
// environment, which also prints the table to stderr at exit), every op that edl::call runs and every backward that autograd runs is timed
// and summed per (op, variant, direction). profile_report() prints the table, largest first:
//
//   op.variant            dir    calls   total ms   % time   GFLOP/s
//   conv2d.im2col         bwd      570     9120.4     41.2     ...
//
// GFLOP/s is shown for forward calls (the registry's FLOP count of the call); a backward pass
// of a product costs about twice its forward. Timing adds one clock read per call, nothing when
// off. It measures wall time on the calling thread, so an op's time includes its parallel loops.
//
// With shapes on (set_profile_shapes(true), `edl train --profile-shapes`, or EDL_PROFILE=shapes)
// the rows are split further by the shapes of the op's first two inputs — for conv2d the
// activation and the weight, so one row per layer shape:
//
//   conv2d.implicit       bwd      234     1709.8     20.7           (128,16,32,32) (16,16,3,3)
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace edl {

struct OpDef;
class Tensor;

bool profiling();
void set_profiling(bool on);
// Whether rows are split by input shapes (see above); on by itself it profiles nothing.
bool profile_shapes();
void set_profile_shapes(bool on);
// Forgets what was measured so far (e.g. after warm-up steps).
void profile_reset();
// The table described above ("" when nothing was measured).
std::string profile_report();
// Time spent outside ops while profiling (the autograd's gradient sums, say) is added here.
void profile_add(const std::string& op, const std::string& variant, const char* dir, double seconds, double flops,
                 const std::string& shapes = "");

// Times one scope and adds it on destruction; inactive when profiling is off.
class ProfileScope {
 public:
  // inputs: the op's inputs, whose shapes key the row when shapes are on (null: no shapes).
  ProfileScope(const OpDef& op, const std::string& variant, const char* dir, double flops = 0,
               const std::vector<Tensor>* inputs = nullptr);
  ~ProfileScope();
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;

 private:
  const OpDef* op_ = nullptr;
  const std::string* variant_ = nullptr;
  const char* dir_ = nullptr;
  double flops_ = 0;
  std::string shapes_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace edl
