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
  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  std::string data;
  for (const RawTensor& t : tensors) {
    header[t.name] = {{"dtype", DTypeName(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
    data += t.bytes;
  }
  const std::string h = header.dump();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i)
    out[static_cast<size_t>(i)] = static_cast<char>((h.size() >> (8 * i)) & 0xff);
  std::ofstream(path, std::ios::binary) << out << h << data;
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
