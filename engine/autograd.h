// autograd.h — reverse-mode automatic differentiation on a dynamic graph.
//
// Every tracked op call leaves a Node on its output: which op and variant ran, its inputs,
// its attributes and what forward saved. backward() sorts the nodes reachable from the loss
// topologically, walks them from the loss back to the leaves, calls each node's backward
// kernel and accumulates (+=) gradients, because a tensor used twice receives the sum of
// both uses' gradients. Leaves (parameters, inputs with requires_grad) keep their gradient
// in .grad(); intermediate gradients are dropped. After backward every visited node releases
// its inputs and saved tensors: the graph is freed, and a second backward through it fails
// with a clear message.
//
// Tracking is on by default and off inside a NoGradGuard (evaluation, optimizer steps).
#pragma once

#include <memory>

#include "engine/registry.h"

namespace edl {

struct Node {
  const OpDef* op = nullptr;
  const Variant* variant = nullptr;
  // Per input, the variant whose backward computes its gradient (OpDef::gradients_dispatched);
  // empty: the forward's variant computes them all.
  std::vector<const Variant*> grad_variants;
  Attrs attrs;
  Tensors inputs;        // what forward read
  Tensors saved;         // what forward kept for backward
  Tensor y;              // forward's output, detached (no cycle through grad_fn)
  bool released = false;
};

bool grad_enabled();

// RAII: no op inside the scope records a Node.
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// Backpropagates from `y`; dy defaults to 1 for a one-element y.
void backward(const Tensor& y, const Tensor& dy = Tensor());

// dst += src, elementwise, same shape and floating dtype (gradient accumulation): in place when
// dst is unshared(), otherwise into a new tensor that dst then holds, the sharers unchanged.
void accumulate(Tensor& dst, const Tensor& src);

}  // namespace edl
