// Reading every tensor of a safetensors file and writing one back (what the Python library writes,
// minus alignment padding): for tests that corrupt model or adapter files one field at a time.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/weights/safetensors.h"

namespace vlmserve::testing {

struct RawTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

inline void WriteSafetensors(const std::filesystem::path& path,
                             const std::vector<RawTensor>& tensors) {
  std::vector<TensorToWrite> out;
  for (const RawTensor& t : tensors) {
    out.push_back({t.name, t.dtype, t.shape,
                   {reinterpret_cast<const uint8_t*>(t.bytes.data()), t.bytes.size()}});
  }
  const Status s = vlmserve::WriteSafetensors(path.string(), out);
  ASSERT_TRUE(s.ok()) << s.ToString();
}

inline std::vector<RawTensor> ReadAll(const std::filesystem::path& path) {
  auto f = SafetensorsFile::Open(path.string());
  EXPECT_TRUE(f.ok()) << f.status().ToString();
  std::vector<RawTensor> out;
  if (!f.ok()) return out;
  for (const TensorEntry& t : (*f)->header().tensors) {
    auto d = (*f)->Data(t);
    out.push_back({t.name, t.dtype, t.shape, std::string(d.begin(), d.end())});
  }
  return out;
}

}  // namespace vlmserve::testing
