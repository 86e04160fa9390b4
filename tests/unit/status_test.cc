// Status / StatusOr and the checked arithmetic every size computation relies on.
#include <gtest/gtest.h>

#include "common/checked_math.h"
#include "common/sha256.h"
#include "common/status.h"

namespace vlmserve {
namespace {

StatusOr<int> Half(int x) {
  if (x % 2) return InvalidArgumentError("odd: " + std::to_string(x));
  return x / 2;
}

Status Quarter(int x, int* out) {
  ASSIGN_OR_RETURN(int h, Half(x));
  ASSIGN_OR_RETURN(*out, Half(h));
  return Status::Ok();
}

TEST(StatusTest, MacrosPropagateTheFirstError) {
  int q = 0;
  EXPECT_TRUE(Quarter(8, &q).ok());
  EXPECT_EQ(q, 2);
  Status s = Quarter(6, &q);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.ToString(), "INVALID_ARGUMENT: odd: 3");
  EXPECT_EQ(s.WithPrefix("f.json").message(), "f.json: odd: 3");
  EXPECT_EQ(Status::Ok().ToString(), "OK");
}

TEST(CheckedMathTest, DetectsOverflow) {
  EXPECT_EQ(CheckedMul(1ull << 32, 1ull << 31), 1ull << 63);
  EXPECT_FALSE(CheckedMul(1ull << 32, 1ull << 32).has_value());
  EXPECT_FALSE(CheckedAdd(~0ull, 1).has_value());
  EXPECT_EQ(CheckedProduct({2, 3, 7}), 42u);
  EXPECT_FALSE(CheckedProduct({1ull << 40, 1ull << 20, 1ull << 4}).has_value());
  EXPECT_EQ(CheckedProduct({}), 1u);
}

// FIPS 180-4 / NIST example vectors, including the 2-block and 1,000,000-byte cases.
TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(Sha256::Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256::Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256::Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  Sha256 s;
  const std::string chunk(1000, 'a');
  for (int i = 0; i < 1000; ++i) s.Update(chunk);
  std::string hex;
  for (uint8_t b : s.Finish()) {
    char two[3];
    std::snprintf(two, sizeof(two), "%02x", b);
    hex += two;
  }
  EXPECT_EQ(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

}  // namespace
}  // namespace vlmserve
