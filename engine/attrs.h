// attrs.h — the non-tensor arguments of an op call (stride, padding, eps, training, ...).
//
// Every op takes the same two things: a list of tensors and an Attrs. That uniform signature is
// what lets one op list generate tests and benchmarks for every op without per-op code.
//
//   Attrs a{{"stride", 2}, {"padding", 1}, {"eps", 1e-5}};
//   a.i("stride")  -> 2      a.f("eps") -> 1e-5      a.i("groups", 1) -> 1 (default)
//   Attrs{{"shape", std::vector<int64_t>{8, -1}}}.ints("shape") -> {8, -1}
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "engine/error.h"

namespace edl {

class Attrs {
 public:
  using Value = std::variant<int64_t, double, std::vector<int64_t>>;

  Attrs() = default;
  Attrs(std::initializer_list<std::pair<std::string, Value>> items) : items_(items) {}

  Attrs& set(const std::string& key, Value v) {
    for (auto& [k, old] : items_)
      if (k == key) { old = v; return *this; }
    items_.emplace_back(key, v);
    return *this;
  }
  bool has(const std::string& key) const { return find(key) != nullptr; }

  // Integer attribute; a missing key without a default is an error naming the key.
  int64_t i(const std::string& key) const { return as_int(key, get(key)); }
  int64_t i(const std::string& key, int64_t fallback) const {
    const Value* v = find(key);
    return v ? as_int(key, *v) : fallback;
  }
  // Floating attribute; integers are accepted (Attrs{{"p", 0}} means p = 0.0).
  double f(const std::string& key) const { return as_double(get(key)); }
  double f(const std::string& key, double fallback) const {
    const Value* v = find(key);
    return v ? as_double(*v) : fallback;
  }

  const std::vector<int64_t>& ints(const std::string& key) const {
    const Value& v = get(key);
    if (!std::holds_alternative<std::vector<int64_t>>(v)) throw Error("attribute '" + key + "' must be a list of integers");
    return std::get<std::vector<int64_t>>(v);
  }

  // "stride=2 padding=1 eps=1e-05", for test names and error messages.
  std::string str() const {
    std::string s;
    for (const auto& [k, v] : items_) {
      if (!s.empty()) s += ' ';
      s += k + '=';
      if (auto* n = std::get_if<int64_t>(&v)) s += std::to_string(*n);
      else if (auto* d = std::get_if<double>(&v)) s += fmt::format("{:g}", *d);
      else {
        std::vector<std::string> items;
        for (int64_t n : std::get<std::vector<int64_t>>(v)) items.push_back(std::to_string(n));
        s += '[' + join(items, ",") + ']';
      }
    }
    return s;
  }

 private:
  const Value* find(const std::string& key) const {
    for (const auto& [k, v] : items_)
      if (k == key) return &v;
    return nullptr;
  }
  const Value& get(const std::string& key) const {
    const Value* v = find(key);
    if (!v) throw Error("missing attribute '" + key + "'");
    return *v;
  }
  static int64_t as_int(const std::string& key, const Value& v) {
    if (!std::holds_alternative<int64_t>(v)) throw Error("attribute '" + key + "' must be an integer");
    return std::get<int64_t>(v);
  }
  static double as_double(const Value& v) {
    if (auto* n = std::get_if<int64_t>(&v)) return static_cast<double>(*n);
    if (auto* d = std::get_if<double>(&v)) return *d;
    throw Error("a list attribute was read as a number");
  }

  std::vector<std::pair<std::string, Value>> items_;
};

}  // namespace edl
