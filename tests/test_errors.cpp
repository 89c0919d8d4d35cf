// test_errors.cpp — bad input raises edl::Error whose message names the op and the expected
// and actual shapes or dtypes; nothing crashes.
#include <catch2/catch.hpp>

#include "engine/ops.h"

using namespace edl;

TEST_CASE("errors: conv2d names the weight's expected and actual shape", "[errors]") {
  Tensor x = Tensor::zeros({1, 3, 8, 8}), w = Tensor::zeros({16, 4, 3, 3});
  CHECK_THROWS_WITH(conv2d(x, w),
                    Catch::Contains("conv2d") && Catch::Contains("(16,4,3,3)") && Catch::Contains("C/groups=3"));
  CHECK_THROWS_WITH(conv2d(Tensor::zeros({3, 8, 8}), w), Catch::Contains("conv2d: x must be 4-d (N,C,H,W), got shape (3,8,8)"));
  CHECK_THROWS_WITH(conv2d(x, Tensor::zeros({4, 3, 9, 9})), Catch::Contains("does not fit"));
  CHECK_THROWS_WITH(conv2d(x, Tensor::zeros({4, 1, 3, 3}), Tensor(), 1, 1, 2), Catch::Contains("groups=2 must divide"));
}

TEST_CASE("errors: matmul and linear name the mismatched inner dimension", "[errors]") {
  CHECK_THROWS_WITH(matmul(Tensor::zeros({2, 3}), Tensor::zeros({4, 5})),
                    Catch::Contains("matmul: a is (2,3) and b is (4,5)"));
  CHECK_THROWS_WITH(linear(Tensor::zeros({2, 3}), Tensor::zeros({5, 4})),
                    Catch::Contains("linear") && Catch::Contains("(5,4)") && Catch::Contains("IN=3"));
  CHECK_THROWS_WITH(linear(Tensor::zeros({2, 3}), Tensor::zeros({5, 3}), Tensor::zeros({4})),
                    Catch::Contains("linear: bias must have shape (5), got (4)"));
}

TEST_CASE("errors: dtype mismatches are named", "[errors]") {
  CHECK_THROWS_WITH(add(Tensor::zeros({2}), Tensor::zeros({2}, DType::f64)),
                    Catch::Contains("add: input 1 has dtype f64, input 0 has f32"));
  CHECK_THROWS_WITH(relu(Tensor::zeros({2}, DType::s8)), Catch::Contains("relu: x must be f32 or f64, got s8"));
}

TEST_CASE("errors: broadcasting failure names both shapes", "[errors]") {
  CHECK_THROWS_WITH(add(Tensor::zeros({2, 3}), Tensor::zeros({4})),
                    Catch::Contains("add: shapes (2,3) and (4) cannot be broadcast"));
}

TEST_CASE("errors: batch_norm2d, pooling, losses and reshape validate their inputs", "[errors]") {
  Tensor x = Tensor::zeros({2, 3, 4, 4}), c3 = Tensor::ones({3}), c4 = Tensor::ones({4});
  CHECK_THROWS_WITH(batch_norm2d(x, c4, c3, c3, c3, true), Catch::Contains("batch_norm2d: weight must have shape (3), got (4)"));
  CHECK_THROWS_WITH(max_pool2d(x, 5), Catch::Contains("max_pool2d"));
  Tensor logits = Tensor::zeros({2, 10});
  CHECK_THROWS_WITH(cross_entropy(logits, Tensor::from({2}, {1, 10}, DType::s32)),
                    Catch::Contains("cross_entropy: label 10 at row 1 is out of range for 10 classes"));
  CHECK_THROWS_WITH(cross_entropy(logits, Tensor::zeros({3}, DType::s32)),
                    Catch::Contains("cross_entropy: labels must have shape (2), got (3)"));
  CHECK_THROWS_WITH(reshape(x, {5, -1}), Catch::Contains("reshape: cannot reshape (2,3,4,4) to (5,-1)"));
  CHECK_THROWS_WITH(concat({x, Tensor::zeros({2, 3, 5, 4})}), Catch::Contains("concat: input 1 has shape (2,3,5,4)"));
  CHECK_THROWS_WITH(dropout(x, 1.0, true, 0), Catch::Contains("dropout: p must be in [0, 1)"));
}

TEST_CASE("errors: wrong input counts and unknown ops or variants", "[errors]") {
  CHECK_THROWS_WITH(call("conv2d", {Tensor::zeros({1, 1, 3, 3})}), Catch::Contains("conv2d: expected 2 to 3 inputs, got 1"));
  CHECK_THROWS_WITH(op("conv3d"), Catch::Contains("unknown op 'conv3d'") && Catch::Contains("conv2d"));
  CHECK_THROWS_WITH(force_variant("matmul", "cuda"), Catch::Contains("matmul: unknown variant 'cuda'"));
  CHECK_THROWS_WITH(relu(Tensor()), Catch::Contains("relu: input 0 is an undefined tensor"));
}
