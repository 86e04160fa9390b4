// Status / StatusOr and the checked arithmetic every size computation relies on.
#include <gtest/gtest.h>

#include "common/checked_math.h"
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

}  // namespace
}  // namespace vlmserve
