// profiler.cpp — the per-op timing table of profiler.h.
#include "engine/profiler.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include <fmt/format.h>

#include "engine/registry.h"
#include "engine/tensor.h"

namespace edl {

namespace {

struct Entry {
  int64_t calls = 0;
  double seconds = 0, flops = 0;
};

struct State {
  std::mutex mutex;
  std::map<std::tuple<std::string, std::string, std::string, std::string>, Entry> table;  // op, variant, dir, shapes
  std::atomic<bool> on{false}, shapes{false};
};

bool env_profile() {
  const char* e = std::getenv("EDL_PROFILE");
  return e && *e && std::string(e) != "0";
}

State& state() {
  // With EDL_PROFILE set, profiling starts with the first op and the table is printed to stderr
  // when the program ends (edl train --profile prints it itself, for the training steps only).
  static State* s = [] {
    auto* st = new State;  // never destroyed: ops may still run while other statics are torn down
    if (env_profile()) {
      st->on = true;
      st->shapes = std::string(std::getenv("EDL_PROFILE")) == "shapes";
      std::atexit([] {
        const std::string table = profile_report();
        if (!table.empty()) std::fprintf(stderr, "\nEDL_PROFILE: where the time went (wall time per op, summed):\n%s", table.c_str());
      });
    }
    return st;
  }();
  return *s;
}

}  // namespace

bool profiling() { return state().on; }
void set_profiling(bool on) { state().on = on; }
bool profile_shapes() { return state().shapes; }
void set_profile_shapes(bool on) { state().shapes = on; }

void profile_reset() {
  std::lock_guard<std::mutex> lock(state().mutex);
  state().table.clear();
}

void profile_add(const std::string& op, const std::string& variant, const char* dir, double seconds, double flops,
                 const std::string& shapes) {
  std::lock_guard<std::mutex> lock(state().mutex);
  Entry& e = state().table[{op, variant, dir, shapes}];
  e.calls += 1;
  e.seconds += seconds;
  e.flops += flops;
}

std::string profile_report() {
  std::lock_guard<std::mutex> lock(state().mutex);
  if (state().table.empty()) return "";
  using Row = std::pair<std::tuple<std::string, std::string, std::string, std::string>, Entry>;
  std::vector<Row> rows(state().table.begin(), state().table.end());
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.second.seconds > b.second.seconds; });
  double total = 0;
  for (const Row& r : rows) total += r.second.seconds;
  std::string out = fmt::format("{:<28} {:<4} {:>8} {:>11} {:>7} {:>8}\n", "op.variant", "dir", "calls", "total ms",
                                "% time", "GFLOP/s");
  for (const auto& [key, e] : rows) {
    const auto& [op, variant, dir, shapes] = key;
    std::string name = variant.empty() ? op : op + "." + variant;
    std::string gflops = e.flops > 0 && e.seconds > 0 ? fmt::format("{:.1f}", e.flops / e.seconds * 1e-9) : "";
    std::string row = fmt::format("{:<28} {:<4} {:>8} {:>11.1f} {:>7.1f} {:>8}", name, dir, e.calls, e.seconds * 1e3,
                                  100.0 * e.seconds / total, gflops);
    out += shapes.empty() ? row + "\n" : fmt::format("{}   {}\n", row, shapes);
  }
  out += fmt::format("{:<28} {:<4} {:>8} {:>11.1f}\n", "total in ops", "", "", total * 1e3);
  return out;
}

ProfileScope::ProfileScope(const OpDef& op, const std::string& variant, const char* dir, double flops,
                           const std::vector<Tensor>* inputs) {
  if (!profiling()) return;
  op_ = &op, variant_ = &variant, dir_ = dir, flops_ = flops;
  if (inputs && profile_shapes())
    for (size_t i = 0; i < inputs->size() && i < 2; ++i) {
      if (i) shapes_ += ' ';
      shapes_ += (*inputs)[i].defined() ? shape_str((*inputs)[i].shape()) : "-";
    }
  start_ = std::chrono::steady_clock::now();
}

ProfileScope::~ProfileScope() {
  if (!op_) return;
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  profile_add(op_->name, *variant_, dir_, s, flops_, shapes_);
}

}  // namespace edl
