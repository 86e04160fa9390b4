// MappedFile: a whole file mapped read-only (mmap, MAP_PRIVATE, PROT_READ). Weights are used
// straight from the page cache this way, with no copy, and the kernel shares the pages between
// processes. The file must not be truncated while mapped (reads past the new end would SIGBUS);
// model files are expected to stay put while the server runs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "common/status.h"

namespace vlmserve {

class MappedFile {
 public:
  // NOT_FOUND when missing; INVALID_ARGUMENT when not a regular file, empty, or unmappable.
  static StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace vlmserve
