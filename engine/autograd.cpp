// autograd.cpp — topological backward with gradient accumulation, and the no-grad scope.
#include "engine/autograd.h"

#include <algorithm>
#include <chrono>
#include <unordered_map>
#include <unordered_set>

#include "engine/profiler.h"
#include "engine/threads.h"

namespace edl {

static thread_local bool g_grad_enabled = true;

bool grad_enabled() { return g_grad_enabled; }
NoGradGuard::NoGradGuard() : previous_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = previous_; }

void accumulate(Tensor& dst, const Tensor& src) {
  EDL_CHECK(dst.shape() == src.shape() && dst.dtype() == src.dtype(),
            "gradient accumulation: {} {} += {} {}", shape_str(dst.shape()), dtype_name(dst.dtype()),
            shape_str(src.shape()), dtype_name(src.dtype()));
  // A backward may hand one buffer to several inputs (add passes dy on to both of its own): a
  // shared gradient is summed into a new buffer, leaving the others as they were.
  Tensor out = dst.unshared() ? dst : Tensor::empty(dst.shape(), dst.dtype());
  with_floating(dst.dtype(), "accumulate", [&](auto tag) {
    using T = decltype(tag);
    const T* d = dst.data<T>();
    const T* s = src.data<T>();
    T* o = out.data<T>();
    const int64_t n = dst.numel();
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
    for (int64_t i = 0; i < n; ++i) o[i] = d[i] + s[i];
  });
  dst = out;
}

// Nodes in an order where every node comes after all nodes that consume its output
// (reverse post-order of a depth-first search from the root). Iterative: deep networks
// would overflow the stack of a recursive walk. The list owns the nodes, so that freeing one
// node's inputs during backward cannot destroy a node still to be visited.
static std::vector<std::shared_ptr<Node>> topological_order(const std::shared_ptr<Node>& root) {
  std::vector<std::shared_ptr<Node>> post;
  std::unordered_set<Node*> seen{root.get()};
  std::vector<std::pair<std::shared_ptr<Node>, size_t>> stack{{root, 0}};
  while (!stack.empty()) {
    auto& [node, next] = stack.back();
    if (next < node->inputs.size()) {
      std::shared_ptr<Node> child = node->inputs[next++].grad_fn();
      if (child && seen.insert(child.get()).second) stack.emplace_back(std::move(child), 0);
    } else {
      post.push_back(node);
      stack.pop_back();
    }
  }
  return {post.rbegin(), post.rend()};
}

static void add_into(Tensor& slot, const Tensor& g) {
  if (!slot.defined()) {
    slot = g;  // first contribution: take it (it may share its buffer: accumulate looks)
    return;
  }
  if (!profiling()) {
    accumulate(slot, g);
    return;
  }
  const auto start = std::chrono::steady_clock::now();
  accumulate(slot, g);
  profile_add("(autograd: sum of gradients)", "", "bwd",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 0);
}

// BackwardCtx::grad_into for the inputs a backward is asked for (part): the gradient already
// summed for input i, where the autograd holds one that nothing else shares — no other handle,
// view or buffer (not dy passed on by an add, say) — and input i's producer feeds no other
// input of this node (x * x: the two gradients would be added into one buffer twice over).
// Leaves (parameters) are left out: their gradient is the user's.
static Tensors gradients_to_add_into(const Tensors& inputs, const std::vector<bool>& part,
                                     std::unordered_map<Node*, Tensor>& grads) {
  Tensors into(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!part[i] || inputs[i].is_leaf()) continue;
    Node* producer = inputs[i].grad_fn().get();
    bool alone = true;
    for (size_t j = 0; j < inputs.size(); ++j)
      if (j != i && !inputs[j].is_leaf() && inputs[j].grad_fn().get() == producer) alone = false;
    auto it = grads.find(producer);
    if (alone && it != grads.end() && it->second.unshared()) into[i] = it->second;
  }
  return into;
}

void backward(const Tensor& y, const Tensor& dy_in) {
  EDL_CHECK(y.requires_grad(), "backward: the tensor does not require grad (no input of its graph has requires_grad)");
  Tensor dy = dy_in;
  if (!dy.defined()) {
    EDL_CHECK(y.numel() == 1, "backward: a gradient must be given for a non-scalar output of shape {}",
              shape_str(y.shape()));
    dy = Tensor::ones(y.shape(), y.dtype());
  }
  EDL_CHECK(dy.shape() == y.shape() && dy.dtype() == y.dtype(), "backward: gradient {} {} does not match output {} {}",
            shape_str(dy.shape()), dtype_name(dy.dtype()), shape_str(y.shape()), dtype_name(y.dtype()));

  if (y.is_leaf()) {
    Tensor g = y.grad();
    add_into(g, dy.clone());
    const_cast<Tensor&>(y).set_grad(g);
    return;
  }
  std::shared_ptr<Node> root = y.grad_fn();
  EDL_CHECK(!root->released,
            "backward: the graph was already freed by a previous backward; run the forward again");

  std::unordered_map<Node*, Tensor> grads{{root.get(), dy}};
  for (const std::shared_ptr<Node>& node : topological_order(root)) {
    auto it = grads.find(node.get());
    if (it == grads.end()) continue;  // no gradient reaches this node
    Tensor g_out = std::move(it->second);
    grads.erase(it);
    EDL_CHECK(!node->released, "backward: part of the graph was already freed by a previous backward");

    std::vector<bool> needs(node->inputs.size());
    for (size_t i = 0; i < needs.size(); ++i)
      needs[i] = node->op->is_differentiable(i) && node->inputs[i].requires_grad();
    // Which variant computes each gradient: the forward's, or those dispatch chose per input
    // (grad_variants). A variant without a backward of its own differentiates through the
    // reference's. Each variant involved runs once, asked for its inputs' gradients only.
    auto variant_of = [&](size_t i) {
      // No choice recorded for an input that did not require grad at the forward pass (a leaf
      // may be switched on since): the forward's variant computes its gradient.
      const Variant* v = node->grad_variants.empty() || !node->grad_variants[i] ? node->variant : node->grad_variants[i];
      return v->backward ? v : &node->op->reference();
    };
    // dy may be overwritten (BackwardCtx::dy_writable) by the only call that reads it, when
    // nothing else holds it.
    std::vector<const Variant*> calls;
    for (size_t i = 0; i < needs.size(); ++i)
      if (needs[i] && std::find(calls.begin(), calls.end(), variant_of(i)) == calls.end())
        calls.push_back(variant_of(i));
    const bool dy_writable = calls.size() == 1 && g_out.unshared();
    Tensors g_in(needs.size());
    std::vector<bool> done(needs.size(), false), added(needs.size(), false);
    for (size_t first = 0; first < needs.size(); ++first) {
      if (!needs[first] || done[first]) continue;
      const Variant* v = variant_of(first);
      std::vector<bool> part(needs.size(), false);
      for (size_t i = first; i < needs.size(); ++i) part[i] = needs[i] && !done[i] && variant_of(i) == v;
      const Tensors into = gradients_to_add_into(node->inputs, part, grads);
      BackwardCtx ctx{node->inputs, node->attrs, node->y, node->saved, g_out, part, into, dy_writable};
      Tensors g;
      {
        ProfileScope timed(*node->op, v->name, "bwd", 0, &node->inputs);
        g = v->backward(ctx);
      }
      for (size_t i = 0; i < needs.size(); ++i)
        if (part[i]) {
          // Added into the gradient held (grad_into): the sum is done, nothing to pass on.
          added[i] = into[i].defined() && i < g.size() && g[i].same_storage(into[i]);
          if (i < g.size() && !added[i]) g_in[i] = std::move(g[i]);
          done[i] = true;
        }
    }

    for (size_t i = 0; i < needs.size(); ++i) {
      if (!needs[i]) continue;
      Tensor& x = node->inputs[i];
      if (added[i]) continue;  // summed already
      EDL_CHECK(g_in[i].defined() && g_in[i].shape() == x.shape(),
                "{}: backward gave no gradient of shape {} for input {} (a bug in the op)", node->op->name,
                shape_str(x.shape()), i);
      if (x.is_leaf()) {
        Tensor g = x.grad();
        x.set_grad(Tensor());  // g alone holds it: summed in place where nothing else shares it
        add_into(g, g_in[i]);
        g_in[i] = Tensor();
        // A leaf's gradient is the user's to read and change: never a buffer shared with another.
        x.set_grad(g.unshared() ? g : g.clone());
      } else {
        add_into(grads[x.grad_fn().get()], g_in[i]);
      }
    }
    // Free this node's part of the graph: activations are the bulk of training memory.
    node->inputs.clear();
    node->saved.clear();
    node->y = Tensor();
    node->released = true;
  }
}

}  // namespace edl
