// main.cpp — the test runner: registers the generated per-op tests, then runs Catch2.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

namespace edl::testing {
void register_op_tests();  // op_tests.cpp
}

int main(int argc, char* argv[]) {
  edl::testing::register_op_tests();
  return Catch::Session().run(argc, argv);
}
