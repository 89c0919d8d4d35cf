// error.h — the one exception type edl throws, and the check helper every op uses.
//
// Messages always name what went wrong and where ("conv2d: weight has shape (16,4,3,3),
// expected (OC, C/groups=3, KH, KW)"), so a student never has to open a debugger to learn
// which argument was bad.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace edl {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// EDL_CHECK(cond, "fmt {}", args...) throws edl::Error with the formatted message.
#define EDL_CHECK(cond, ...)                                  \
  do {                                                        \
    if (!(cond)) throw ::edl::Error(fmt::format(__VA_ARGS__)); \
  } while (0)

// "a, b, c", for the lists in error messages ("unknown model 'x' (known: a, b, c)").
// (fmt::join would do, but GCC 12 warns inside fmt 9 when it is used: a false positive.)
inline std::string join(const std::vector<std::string>& items, const char* sep = ", ") {
  std::string s;
  for (const std::string& item : items) s += (s.empty() ? "" : sep) + item;
  return s;
}

}  // namespace edl
