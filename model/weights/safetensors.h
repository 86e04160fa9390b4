// safetensors files, validated before any tensor is used (reliability.md G9).
//
// Format: 8-byte little-endian header length N, N bytes of JSON, then the data section. The JSON is
// an object of tensor name → {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to
// the data section) plus an optional "__metadata__" string → string map.
//
// Checks, each failure naming the file (and the tensor where there is one): the header length fits
// the file and the cap; the JSON starts with '{', is well formed and shallow; every entry has
// exactly the three fields with the right types; no duplicate names; dtype is BF16, F16 or F32;
// nbytes = product(shape) × dtype size without overflow and equals end − begin; the entries,
// sorted by begin, tile [0, data length) exactly (no overlap, no hole, no trailing bytes); the
// number of tensors, dimensions and name lengths are capped. The parser is a SAX handler, so a
// duplicate name is seen (a DOM would keep the last silently) and caps hold while parsing.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/mapped_file.h"
#include "common/status.h"

namespace vlmserve {

enum class DType { kBF16, kF16, kF32 };

const char* DTypeName(DType d);  // "BF16", "F16", "F32" (the safetensors spelling)
inline uint64_t DTypeSize(DType d) { return d == DType::kF32 ? 4 : 2; }

struct SafetensorsLimits {
  uint64_t max_header_bytes = 100'000'000;  // 100 MB; the 4B model's header is ~100 KB
  uint64_t max_tensors = 65536;             // the 27B model has ~1,250
  uint32_t max_dims = 8;
  uint64_t max_name_bytes = 1024;
  int max_json_depth = 3;  // top object → tensor object → shape array
};
inline constexpr SafetensorsLimits kSafetensorsLimits{};

struct TensorEntry {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets into the data section, end − begin = nbytes
  uint64_t end = 0;
  uint64_t numel() const;  // valid after parsing: the product fits in 64 bits
  uint64_t nbytes() const { return end - begin; }
};

struct SafetensorsHeader {
  uint64_t header_bytes = 0;  // N
  uint64_t data_offset = 0;   // 8 + N: where the data section starts in the file
  uint64_t data_bytes = 0;    // file size − data_offset
  std::map<std::string, std::string> metadata;
  std::vector<TensorEntry> tensors;  // sorted by begin offset
};

// Parses and validates the header of a whole file's bytes. `file` names it in errors.
// Every error is INVALID_ARGUMENT, except an unsupported dtype (UNIMPLEMENTED).
StatusOr<SafetensorsHeader> ParseSafetensors(std::span<const uint8_t> file_bytes,
                                             const std::string& file,
                                             const SafetensorsLimits& limits = kSafetensorsLimits);

// One tensor for WriteSafetensors: its bytes as stored (little-endian, numel × dtype size).
struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::span<const uint8_t> bytes;
};

// Writes a safetensors file (the tensors in the given order, no alignment padding; the Python
// library reads it). For tools that hand tensors to Python (vlmserve-dump) and tests that write
// corrupt model files: the bytes are written as given, even when they don't fit the shape.
Status WriteSafetensors(const std::string& path, std::span<const TensorToWrite> tensors);

// A mapped, validated safetensors file. Tensor data pointers stay valid while it lives.
class SafetensorsFile {
 public:
  static StatusOr<std::unique_ptr<SafetensorsFile>> Open(
      const std::string& path, const SafetensorsLimits& limits = kSafetensorsLimits);

  const std::string& path() const { return file_->path(); }
  const SafetensorsHeader& header() const { return header_; }
  // The bytes of one tensor (little-endian, as stored; may be unaligned for odd headers).
  std::span<const uint8_t> Data(const TensorEntry& t) const {
    return file_->bytes().subspan(header_.data_offset + t.begin, t.nbytes());
  }

 private:
  SafetensorsFile(std::unique_ptr<MappedFile> f, SafetensorsHeader h)
      : file_(std::move(f)), header_(std::move(h)) {}
  std::unique_ptr<MappedFile> file_;
  SafetensorsHeader header_;
};

}  // namespace vlmserve
