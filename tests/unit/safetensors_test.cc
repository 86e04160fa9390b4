// safetensors header validation: a table of corrupt files, each with its own error, plus valid
// layouts (metadata, zero-size tensors, space-padded headers) and the mapped-file path.
#include "model/weights/safetensors.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>

namespace vlmserve {
namespace {

// 8-byte little-endian length + header + `data_bytes` bytes of data (0, 1, 2, ... mod 256).
std::string Build(const std::string& header, size_t data_bytes, int64_t length_override = -1) {
  std::string out(8, '\0');
  uint64_t n = length_override >= 0 ? static_cast<uint64_t>(length_override) : header.size();
  for (int i = 0; i < 8; ++i)
    out[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  out += header;
  for (size_t i = 0; i < data_bytes; ++i) out += static_cast<char>(i & 0xff);
  return out;
}

StatusOr<SafetensorsHeader> Parse(const std::string& bytes,
                                  const SafetensorsLimits& lim = kSafetensorsLimits) {
  return ParseSafetensors(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()),
      "m.safetensors", lim);
}

std::string T(const std::string& name, const std::string& dtype, const std::string& shape,
              uint64_t b, uint64_t e) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape +
         ",\"data_offsets\":[" + std::to_string(b) + "," + std::to_string(e) + "]}";
}

struct Corrupt {
  const char* name;
  std::function<std::string()> bytes;
  StatusCode code;
  const char* message;
  SafetensorsLimits limits = kSafetensorsLimits;
};

std::vector<Corrupt> CorruptFiles() {
  const auto kInv = StatusCode::kInvalidArgument;
  const std::string w = T("w", "F32", "[2,2]", 0, 16);
  SafetensorsLimits three_tensors;
  three_tensors.max_tensors = 3;
  return {
      {"empty", [] { return std::string(); }, kInv, "file is 0 bytes, too short for the 8-byte"},
      {"seven_bytes", [] { return std::string(7, '\x01'); }, kInv, "file is 7 bytes, too short"},
      {"length_over_cap", [] { return Build("{}", 0, int64_t{1} << 40); }, kInv,
       "header length 1099511627776 exceeds the cap of 100000000 bytes"},
      {"length_past_end", [] { return Build("{}", 0, 100); }, kInv,
       "header length 100 runs past the end of the 10-byte file"},
      {"zero_length", [] { return Build("", 4); }, kInv, "header does not start with '{'"},
      {"array_header", [] { return Build("[]", 0); }, kInv, "header does not start with '{'"},
      {"leading_space", [] { return Build(" {}", 0); }, kInv, "header does not start with '{'"},
      {"truncated_json", [] { return Build("{\"w\":{\"dtype\":", 0); }, kInv,
       "header is not valid JSON"},
      {"invalid_utf8_name", [] { return Build("{\"w\xff\":{}}", 0); }, kInv,
       "header is not valid JSON"},
      {"too_deep", [] { return Build("{\"w\":{\"shape\":[[1]]}}", 0); }, kInv,
       "header: JSON nested deeper than 3 levels"},
      {"entry_not_object", [] { return Build("{\"w\":5}", 0); }, kInv,
       "tensor \"w\" must be an object, got a number"},
      {"duplicate_name", [w] { return Build("{" + w + "," + w + "}", 16); }, kInv,
       "duplicate tensor name \"w\""},
      {"empty_name", [] { return Build("{" + T("", "F32", "[1]", 0, 4) + "}", 4); }, kInv,
       "tensor name of 0 bytes"},
      {"metadata_not_object", [] { return Build("{\"__metadata__\":[1]}", 0); }, kInv,
       "__metadata__ must be an object"},
      {"metadata_non_string", [] { return Build("{\"__metadata__\":{\"format\":1}}", 0); }, kInv,
       "__metadata__ value for \"format\" must be a string, got a number"},
      {"metadata_twice", [] { return Build("{\"__metadata__\":{},\"__metadata__\":{}}", 0); }, kInv,
       "__metadata__ appears twice"},
      {"missing_offsets", [] { return Build("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 0); },
       kInv, "tensor \"w\": missing \"data_offsets\""},
      {"unknown_field",
       [] {
         return Build("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}",
                      4);
       },
       kInv, "tensor \"w\": unexpected field \"x\""},
      {"field_twice", [] { return Build("{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\"}}", 0); },
       kInv, "tensor \"w\": field \"dtype\" twice"},
      {"dtype_not_string",
       [] { return Build(R"({"w":{"dtype":5,"shape":[1],"data_offsets":[0,4]}})", 4); }, kInv,
       "tensor \"w\": dtype has the wrong type"},
      {"shape_not_array", [] { return Build("{" + T("w", "F32", "\"1\"", 0, 4) + "}", 4); }, kInv,
       "tensor \"w\": shape has the wrong type (a string)"},
      {"negative_dim", [] { return Build("{" + T("w", "F32", "[-1]", 0, 4) + "}", 4); }, kInv,
       "tensor \"w\": shape contains the negative value -1"},
      {"float_dim", [] { return Build("{" + T("w", "F32", "[2.5]", 0, 4) + "}", 4); }, kInv,
       "tensor \"w\": shape contains the non-integer 2.5"},
      {"too_many_dims",
       [] { return Build("{" + T("w", "F32", "[1,1,1,1,1,1,1,1,1]", 0, 4) + "}", 4); }, kInv,
       "tensor \"w\": shape has more than 8 dimensions"},
      {"three_offsets",
       [] {
         return Build("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8);
       },
       kInv, "tensor \"w\": data_offsets must have exactly 2 entries"},
      {"unknown_dtype", [] { return Build("{" + T("w", "Q4", "[2]", 0, 4) + "}", 4); }, kInv,
       "tensor \"w\": unknown dtype \"Q4\""},
      {"unsupported_dtype", [] { return Build("{" + T("w", "F64", "[2]", 0, 16) + "}", 16); },
       StatusCode::kUnimplemented, "tensor \"w\": dtype F64 is not supported (BF16, F16, F32)"},
      {"shape_overflow",
       [] { return Build("{" + T("w", "BF16", "[1099511627776,1099511627776]", 0, 4) + "}", 4); },
       kInv, "tensor \"w\": shape [1099511627776, 1099511627776] overflows"},
      {"size_mismatch", [] { return Build("{" + T("w", "F32", "[2,2]", 0, 12) + "}", 12); }, kInv,
       "tensor \"w\": data_offsets span 12 bytes but F32 [2, 2] needs 16"},
      {"offsets_reversed", [] { return Build("{" + T("w", "F32", "[0]", 8, 4) + "}", 8); }, kInv,
       "tensor \"w\": data_offsets [8, 4] end before they begin"},
      {"past_data", [] { return Build("{" + T("w", "F32", "[4]", 0, 16) + "}", 8); }, kInv,
       "tensor \"w\": data ends at byte 16, past the 8-byte data section"},
      {"overlap",
       [] {
         return Build("{" + T("a", "F32", "[2]", 0, 8) + "," + T("b", "F32", "[2]", 4, 12) + "}",
                      12);
       },
       kInv, "tensor \"b\" (bytes 4-12) overlaps tensor \"a\" (ending at 8)"},
      {"hole",
       [] {
         return Build("{" + T("a", "F32", "[2]", 0, 8) + "," + T("b", "F32", "[2]", 12, 20) + "}",
                      20);
       },
       kInv, "4 unused bytes before tensor \"b\" (at 8)"},
      {"hole_at_start", [] { return Build("{" + T("a", "F32", "[1]", 4, 8) + "}", 8); }, kInv,
       "4 unused bytes before tensor \"a\" (at 0)"},
      {"trailing_bytes", [] { return Build("{" + T("a", "F32", "[2]", 0, 8) + "}", 12); }, kInv,
       "4 bytes after the last tensor are not covered by any tensor"},
      {"too_many_tensors",
       [] {
         std::string h = "{";
         for (int i = 0; i < 4; ++i)
           h += (i ? "," : "") + T("t" + std::to_string(i), "F32", "[1]", 4 * i, 4 * i + 4);
         return Build(h + "}", 16);
       },
       kInv, "more than 3 tensors in the header", three_tensors},
  };
}

class CorruptSafetensorsTest : public ::testing::TestWithParam<Corrupt> {};

TEST_P(CorruptSafetensorsTest, RejectedWithItsOwnMessage) {
  const Corrupt& c = GetParam();
  auto h = Parse(c.bytes(), c.limits);
  ASSERT_FALSE(h.ok()) << c.name << " was accepted";
  EXPECT_EQ(h.status().code(), c.code) << h.status().ToString();
  EXPECT_NE(h.status().message().find(c.message), std::string::npos)
      << "message: " << h.status().message() << "\nexpected to contain: " << c.message;
  EXPECT_EQ(h.status().message().rfind("m.safetensors: ", 0), 0u) << h.status().message();
}

INSTANTIATE_TEST_SUITE_P(Table, CorruptSafetensorsTest, ::testing::ValuesIn(CorruptFiles()),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(SafetensorsTest, ValidLayouts) {
  // Unsorted entries, metadata, a zero-size tensor, and the spaces safetensors pads headers with.
  const std::string header = "{\"__metadata__\":{\"format\":\"pt\"}," +
                             T("b", "BF16", "[3]", 8, 14) + "," + T("empty", "F16", "[0,5]", 8, 8) +
                             "," + T("a", "F32", "[2]", 0, 8) + "}   ";
  const std::string bytes = Build(header, 14);
  auto h = Parse(bytes);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(h->metadata.at("format"), "pt");
  ASSERT_EQ(h->tensors.size(), 3u);
  EXPECT_EQ(h->tensors[0].name, "a");  // sorted by begin offset
  EXPECT_EQ(h->tensors[0].dtype, DType::kF32);
  EXPECT_EQ(h->tensors[2].name, "b");
  EXPECT_EQ(h->tensors[2].shape, (std::vector<int64_t>{3}));
  EXPECT_EQ(h->tensors[2].nbytes(), 6u);
  EXPECT_EQ(h->data_offset, 8 + header.size());
  EXPECT_EQ(h->data_bytes, 14u);
}

TEST(SafetensorsTest, EmptyHeaderWithNoDataIsValid) {
  auto h = Parse(Build("{}", 0));
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_TRUE(h->tensors.empty());
}

TEST(SafetensorsTest, OpenMapsTheFileAndFindsTensorBytes) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("vlmserve_st_test_" + std::to_string(::getpid()) + ".safetensors");
  std::ofstream(path, std::ios::binary)
      << Build("{" + T("a", "F32", "[1]", 0, 4) + "," + T("b", "BF16", "[2]", 4, 8) + "}", 8);
  auto f = SafetensorsFile::Open(path.string());
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  const auto b = (*f)->Data((*f)->header().tensors[1]);
  ASSERT_EQ(b.size(), 4u);
  EXPECT_EQ(b[0], 4);  // Build() fills data bytes with 0, 1, 2, ...
  EXPECT_EQ(b[3], 7);
  std::filesystem::remove(path);

  auto missing = SafetensorsFile::Open(path.string());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  std::ofstream(path, std::ios::binary).flush();  // empty file
  auto empty = SafetensorsFile::Open(path.string());
  EXPECT_EQ(empty.status().message(), path.string() + ": file is empty");
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace vlmserve
