// test_tensor.cpp — Tensor creation, views, dtype conversion, printing.
#include <catch2/catch.hpp>

#include <cstdint>

#include "engine/tensor.h"

using namespace edl;

TEST_CASE("tensor: storage is 64-byte aligned and shapes report sizes", "[tensor]") {
  Tensor t = Tensor::zeros({2, 3, 5});
  CHECK(reinterpret_cast<uintptr_t>(t.raw()) % 64 == 0);
  CHECK(t.numel() == 30);
  CHECK(t.ndim() == 3);
  CHECK(t.dim(-1) == 5);
  CHECK(t.nbytes() == 120);
  CHECK_THROWS_WITH(t.dim(3), Catch::Contains("out of range"));
  Tensor s = Tensor::scalar(2.5);
  CHECK(s.ndim() == 0);
  CHECK(s.numel() == 1);
  CHECK(s.item() == 2.5);
}

TEST_CASE("tensor: large buffers are reused, and zeros() is zero in a reused one", "[tensor]") {
  // 4 MB: above the size from which freed storage is kept for the next tensor of that size.
  const void* first = nullptr;
  {
    Tensor a = Tensor::empty({(1 << 20) + 5});  // a size no other test uses
    first = a.raw();
    for (int64_t i = 0; i < a.numel(); ++i) a.data<float>()[i] = 1.5f;  // leave it dirty
  }
  Tensor b = Tensor::zeros({(1 << 20) + 5});
  CHECK(b.raw() == first);
  CHECK(reinterpret_cast<uintptr_t>(b.raw()) % 64 == 0);
  bool all_zero = true;
  for (int64_t i = 0; i < b.numel(); ++i) all_zero = all_zero && b.data<float>()[i] == 0.0f;
  CHECK(all_zero);
  Tensor c = Tensor::empty({(1 << 20) + 5});  // b still holds the cached block: c gets another
  CHECK(c.raw() != b.raw());
}

TEST_CASE("tensor: of cached buffers of one size, the last given back is reused first", "[tensor]") {
  // (it is the likeliest to be in the caches still: tensor.cpp, BlockCache::take)
  const int64_t n = (1 << 20) + 7;  // a size no other test uses
  const void *first = nullptr, *second = nullptr;
  {
    Tensor a = Tensor::empty({n}), b = Tensor::empty({n});
    first = a.raw(), second = b.raw();
    a = Tensor();  // given back first
  }                // b given back last
  Tensor c = Tensor::empty({n});
  CHECK(c.raw() == second);
  Tensor d = Tensor::empty({n});
  CHECK(d.raw() == first);
}

TEST_CASE("tensor: from() fills row-major and checks the count", "[tensor]") {
  Tensor t = Tensor::from({2, 2}, {1, 2, 3, 4});
  CHECK(t.data<float>()[2] == 3.0f);
  CHECK_THROWS_WITH(Tensor::from({2, 2}, {1, 2, 3}), Catch::Contains("3 values given for shape (2,2)"));
}

TEST_CASE("tensor: views share storage, reshape infers -1", "[tensor]") {
  Tensor t = Tensor::from({2, 3}, {0, 1, 2, 3, 4, 5});
  Tensor v = t.view({3, -1});
  CHECK(v.shape() == Shape{3, 2});
  CHECK(v.same_storage(t));
  v.data<float>()[0] = 42;
  CHECK(t.data<float>()[0] == 42);
  CHECK_THROWS_WITH(t.view({4, -1}), Catch::Contains("cannot infer"));
  CHECK_THROWS_WITH(t.view({5}), Catch::Contains("has 5 elements"));
}

TEST_CASE("tensor: slicing along the batch is a view at an offset", "[tensor]") {
  Tensor t = Tensor::from({4, 2}, {0, 1, 2, 3, 4, 5, 6, 7});
  Tensor s = t.slice(1, 3);
  CHECK(s.shape() == Shape{2, 2});
  CHECK(s.to_vector() == std::vector<double>{2, 3, 4, 5});
  CHECK(s.same_storage(t));
  CHECK_THROWS_WITH(t.slice(3, 5), Catch::Contains("out of range"));
  CHECK(t.slice(2, 2).numel() == 0);
}

TEST_CASE("tensor: dtype conversion rounds and saturates integers", "[tensor]") {
  Tensor t = Tensor::from({5}, {-300.0, -1.6, 0.4, 2.5, 1000.0});
  CHECK(t.to(DType::s8).to_vector() == std::vector<double>{-128, -2, 0, 2, 127});
  CHECK(t.to(DType::u8).to_vector() == std::vector<double>{0, 0, 0, 2, 255});
  CHECK(t.to(DType::s32).to_vector() == std::vector<double>{-300, -2, 0, 2, 1000});
  CHECK(t.to(DType::f64).to_vector() == std::vector<double>{-300.0, -1.600000023841858, 0.4000000059604645, 2.5, 1000.0});
  CHECK_THROWS_WITH(t.data<double>(), Catch::Contains("dtype f32, accessed as f64"));
}

TEST_CASE("tensor: b1 packs signs 8 per byte, LSB first", "[tensor]") {
  Tensor t = Tensor::from({10}, {1, -1, 0, -2, 3, -0.5, 1, 1, -1, 2});
  Tensor b = t.to(DType::b1);
  CHECK(b.nbytes() == 2);
  // bits of elements 0..7: 1,0,1,0,1,0,1,1 -> 0b11010101; elements 8,9: 0,1 -> 0b10
  CHECK(b.data<uint8_t>()[0] == 0b11010101);
  CHECK(b.data<uint8_t>()[1] == 0b10);
  CHECK(b.to(DType::f32).to_vector() == std::vector<double>{1, -1, 1, -1, 1, -1, 1, 1, -1, 1});
}

TEST_CASE("tensor: printing shows values, shape and dtype, and elides long dimensions", "[tensor]") {
  Tensor t = Tensor::from({2, 2}, {1, 2, 3, 4});
  std::string s = t.str();
  CHECK_THAT(s, Catch::Contains("[[1.0000, 2.0000]"));
  CHECK_THAT(s, Catch::Contains("shape=(2,2), dtype=f32"));
  Tensor big = Tensor::zeros({100}, DType::s32);
  CHECK_THAT(big.str(), Catch::Contains("..."));
  CHECK(Tensor().str() == "tensor(undefined)");
}
