// init.cpp — the module walk and Kaiming-normal initialization of init.h.
#include "models/init.h"

#include <cmath>

namespace edl {

static void walk(const std::string& name, Module& m,
                 const std::function<void(const std::string& name, Module& m)>& fn) {
  fn(name, m);
  for (const auto& [child_name, child] : m.named_children())
    walk(name.empty() ? child_name : name + "." + child_name, *child, fn);
}

void for_each_module(Module& root, const std::function<void(const std::string& name, Module& m)>& fn) {
  walk("", root, fn);
}

void kaiming_normal_(Tensor& weight, FanMode mode) {
  EDL_CHECK(weight.ndim() >= 2, "kaiming_normal_: weight has shape {}; it needs at least 2 dimensions (out, in, ...)",
            shape_str(weight.shape()));
  const int64_t receptive_field = weight.numel() / (weight.dim(0) * weight.dim(1));  // KH*KW, or 1 for Linear
  const int64_t fan = (mode == FanMode::fan_in ? weight.dim(1) : weight.dim(0)) * receptive_field;
  normal_(weight, 0.0, std::sqrt(2.0 / static_cast<double>(fan)));
}

}  // namespace edl
