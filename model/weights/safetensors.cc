// safetensors header parsing and validation (see safetensors.h).
#include "model/weights/safetensors.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "common/checked_math.h"
#include "common/json_util.h"

namespace vlmserve {

const char* DTypeName(DType d) {
  switch (d) {
    case DType::kBF16:
      return "BF16";
    case DType::kF16:
      return "F16";
    case DType::kF32:
      return "F32";
  }
  return "?";
}

uint64_t TensorEntry::numel() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);  // checked during parsing
  return n;
}

namespace {

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Builds TensorEntry records straight from the parser's events. Returning false stops the parse;
// error_ then holds why. Levels: 1 = the top object, 2 = a tensor entry or __metadata__,
// 3 = a shape / data_offsets array.
class HeaderSax : public nlohmann::json_sax<nlohmann::json> {
 public:
  HeaderSax(const std::string& file, const SafetensorsLimits& lim) : file_(file), lim_(lim) {}

  Status error() const { return error_; }
  std::vector<TensorEntry>& entries() { return entries_; }
  std::map<std::string, std::string>& metadata() { return metadata_; }
  // dtype strings as written, parallel to entries_ (validated after parsing, with the name).
  const std::vector<std::string>& dtypes() const { return dtypes_; }

  bool null() override { return Scalar("null"); }
  bool boolean(bool) override { return Scalar("a boolean"); }
  bool number_integer(number_integer_t v) override {
    if (level_ == 3)
      return Fail(Where() + ": " + field_ + " contains the negative value " + std::to_string(v));
    return Scalar("a number");
  }
  bool number_unsigned(number_unsigned_t v) override {
    if (level_ != 3) return Scalar("a number");
    if (field_ == "shape") {
      if (array_.size() >= lim_.max_dims) {
        return Fail(Where() + ": shape has more than " + std::to_string(lim_.max_dims) +
                    " dimensions");
      }
      if (v > (uint64_t{1} << 40)) {
        return Fail(Where() + ": shape dimension " + std::to_string(v) + " is absurdly large");
      }
    } else if (array_.size() >= 2) {
      return Fail(Where() + ": data_offsets must have exactly 2 entries");
    }
    array_.push_back(v);
    return true;
  }
  bool number_float(number_float_t, const string_t& raw) override {
    if (level_ == 3) return Fail(Where() + ": " + field_ + " contains the non-integer " + raw);
    return Scalar("a number");
  }
  bool string(string_t& s) override {
    if (level_ == 2 && in_metadata_) {
      metadata_[key_] = s;
      return true;
    }
    if (level_ == 2 && field_ == "dtype") {
      dtypes_.back() = s;
      return true;
    }
    return Scalar("a string");
  }
  bool binary(binary_t&) override { return Scalar("binary data"); }

  bool start_object(std::size_t) override {
    if (level_ == 0) {
      level_ = 1;
      return true;
    }
    if (level_ != 1) {
      if (in_metadata_) return Scalar("an object");
      return Fail(Where() + ": " + field_ + " has the wrong type (an object)");
    }
    level_ = 2;
    if (key_ == "__metadata__") {
      in_metadata_ = true;
      return true;
    }
    if (entries_.size() >= lim_.max_tensors) {
      return Fail("more than " + std::to_string(lim_.max_tensors) + " tensors in the header");
    }
    entries_.push_back(TensorEntry{});
    entries_.back().name = key_;
    dtypes_.emplace_back();
    fields_seen_.clear();
    return true;
  }
  bool key(string_t& k) override {
    if (level_ == 1) {
      if (k.size() > lim_.max_name_bytes || k.empty()) {
        return Fail("tensor name of " + std::to_string(k.size()) + " bytes (must be 1 to " +
                    std::to_string(lim_.max_name_bytes) + ")");
      }
      if (!names_.insert(k).second) {
        return Fail(k == "__metadata__" ? std::string("__metadata__ appears twice")
                                        : "duplicate tensor name \"" + k + "\"");
      }
      key_ = k;
      return true;
    }
    if (level_ == 2 && in_metadata_) {
      if (!meta_keys_.insert(k).second) return Fail("__metadata__ has the key \"" + k + "\" twice");
      key_ = k;
      return true;
    }
    if (level_ == 2) {
      if (k != "dtype" && k != "shape" && k != "data_offsets") {
        return Fail(Where() + ": unexpected field \"" + k +
                    "\" (expected dtype, shape, data_offsets)");
      }
      if (!fields_seen_.insert(k).second) return Fail(Where() + ": field \"" + k + "\" twice");
      field_ = k;
      return true;
    }
    return Fail("unexpected key");
  }
  bool end_object() override {
    if (level_ == 2 && in_metadata_) {
      in_metadata_ = false;
    } else if (level_ == 2) {
      for (const char* f : {"dtype", "shape", "data_offsets"}) {
        if (!fields_seen_.count(f)) return Fail(Where() + ": missing \"" + f + "\"");
      }
      field_.clear();
    }
    --level_;
    return true;
  }
  bool start_array(std::size_t) override {
    if (level_ != 2 || in_metadata_ || (field_ != "shape" && field_ != "data_offsets")) {
      return Scalar("an array");
    }
    level_ = 3;
    array_.clear();
    return true;
  }
  bool end_array() override {
    TensorEntry& t = entries_.back();
    if (field_ == "shape") {
      t.shape.assign(array_.begin(), array_.end());
    } else {
      if (array_.size() != 2) return Fail(Where() + ": data_offsets must have exactly 2 entries");
      t.begin = array_[0];
      t.end = array_[1];
    }
    level_ = 2;
    return true;
  }
  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& e) override {
    // e.what() already says "parse error at line L, column C: ..."; drop the library's prefix.
    std::string what = e.what();
    if (auto p = what.find("] "); p != std::string::npos) what = what.substr(p + 2);
    return Fail("header is not valid JSON (byte " + std::to_string(position) + "): " + what);
  }

 private:
  std::string Where() const {
    if (level_ >= 2 && !in_metadata_ && !entries_.empty())
      return "tensor \"" + entries_.back().name + "\"";
    return "header";
  }
  bool Scalar(const char* what) {
    if (level_ == 0) return Fail("header must be a JSON object");
    if (level_ == 1) {
      return Fail(key_ == "__metadata__"
                      ? std::string("__metadata__ must be an object")
                      : "tensor \"" + key_ + "\" must be an object, got " + what);
    }
    if (level_ == 2 && in_metadata_) {
      return Fail("__metadata__ value for \"" + key_ + "\" must be a string, got " + what);
    }
    if (level_ == 2) return Fail(Where() + ": " + field_ + " has the wrong type (" + what + ")");
    return Fail(Where() + ": " + field_ + " must contain only non-negative integers, got " + what);
  }
  bool Fail(const std::string& m) {
    if (error_.ok()) error_ = InvalidArgumentError(file_ + ": " + m);
    return false;
  }

  const std::string& file_;
  const SafetensorsLimits& lim_;
  Status error_;
  int level_ = 0;
  bool in_metadata_ = false;
  std::string key_, field_;
  std::set<std::string> names_, meta_keys_, fields_seen_;
  std::vector<uint64_t> array_;
  std::vector<TensorEntry> entries_;
  std::vector<std::string> dtypes_;
  std::map<std::string, std::string> metadata_;
};

// The dtypes safetensors defines but we do not load.
bool IsKnownSafetensorsDtype(const std::string& s) {
  static const std::set<std::string> kKnown = {
      "BOOL", "U8",      "I8",      "I16",     "U16", "I32",     "U32",     "I64", "U64",
      "F64",  "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4",  "F6_E2M3", "F6_E3M2", "C64"};
  return kKnown.count(s) > 0;
}

}  // namespace

StatusOr<SafetensorsHeader> ParseSafetensors(std::span<const uint8_t> bytes,
                                             const std::string& file,
                                             const SafetensorsLimits& lim) {
  SafetensorsHeader h;
  if (bytes.size() < 8) {
    return InvalidArgumentError(file + ": file is " + std::to_string(bytes.size()) +
                                " bytes, too short for the 8-byte header length");
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[static_cast<size_t>(i)];  // little-endian
  if (n > lim.max_header_bytes) {
    return InvalidArgumentError(file + ": header length " + std::to_string(n) +
                                " exceeds the cap of " + std::to_string(lim.max_header_bytes) +
                                " bytes");
  }
  if (n > bytes.size() - 8) {
    return InvalidArgumentError(file + ": header length " + std::to_string(n) +
                                " runs past the end of the " + std::to_string(bytes.size()) +
                                "-byte file");
  }
  if (n == 0 || bytes[8] != '{') {
    return InvalidArgumentError(file + ": header does not start with '{'");
  }
  h.header_bytes = n;
  h.data_offset = 8 + n;
  h.data_bytes = bytes.size() - h.data_offset;

  // Depth is bounded before the SAX parser runs, so nesting cannot grow its state.
  std::string_view json_text(reinterpret_cast<const char*>(bytes.data() + 8), n);
  if (Status s = CheckJsonDepth(json_text, lim.max_json_depth); !s.ok()) {
    return s.WithPrefix(file + ": header");
  }

  HeaderSax sax(file, lim);
  const bool ok = nlohmann::json::sax_parse(json_text.begin(), json_text.end(), &sax);
  if (!ok || !sax.error().ok()) {
    if (!sax.error().ok()) return sax.error();
    return InvalidArgumentError(file + ": header is not valid JSON");
  }
  h.metadata = std::move(sax.metadata());
  h.tensors = std::move(sax.entries());

  // Per tensor: dtype, size arithmetic, offsets.
  for (size_t i = 0; i < h.tensors.size(); ++i) {
    TensorEntry& t = h.tensors[i];
    const std::string where = file + ": tensor \"" + t.name + "\"";
    const std::string& dt = sax.dtypes()[i];
    if (dt == "BF16")
      t.dtype = DType::kBF16;
    else if (dt == "F16")
      t.dtype = DType::kF16;
    else if (dt == "F32")
      t.dtype = DType::kF32;
    else if (IsKnownSafetensorsDtype(dt))
      return UnimplementedError(where + ": dtype " + dt + " is not supported (BF16, F16, F32)");
    else
      return InvalidArgumentError(where + ": unknown dtype \"" + dt + "\"");
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      auto next = CheckedMul(numel, static_cast<uint64_t>(d));
      if (!next)
        return InvalidArgumentError(where + ": shape " + ShapeString(t.shape) + " overflows");
      numel = *next;
    }
    auto nbytes = CheckedMul(numel, DTypeSize(t.dtype));
    if (!nbytes)
      return InvalidArgumentError(where + ": byte size of " + ShapeString(t.shape) + " overflows");
    if (t.begin > t.end) {
      return InvalidArgumentError(where + ": data_offsets [" + std::to_string(t.begin) + ", " +
                                  std::to_string(t.end) + "] end before they begin");
    }
    if (t.end - t.begin != *nbytes) {
      return InvalidArgumentError(where + ": data_offsets span " + std::to_string(t.end - t.begin) +
                                  " bytes but " + dt + " " + ShapeString(t.shape) + " needs " +
                                  std::to_string(*nbytes));
    }
    if (t.end > h.data_bytes) {
      return InvalidArgumentError(where + ": data ends at byte " + std::to_string(t.end) +
                                  ", past the " + std::to_string(h.data_bytes) +
                                  "-byte data section");
    }
  }

  // Together: sorted by begin, the tensors must tile [0, data_bytes) exactly.
  std::sort(h.tensors.begin(), h.tensors.end(), [](const TensorEntry& a, const TensorEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expected = 0;
  const TensorEntry* prev = nullptr;
  for (const TensorEntry& t : h.tensors) {
    if (t.begin < expected) {
      return InvalidArgumentError(file + ": tensor \"" + t.name + "\" (bytes " +
                                  std::to_string(t.begin) + "-" + std::to_string(t.end) +
                                  ") overlaps tensor \"" + prev->name + "\" (ending at " +
                                  std::to_string(expected) + ")");
    }
    if (t.begin > expected) {
      return InvalidArgumentError(file + ": " + std::to_string(t.begin - expected) +
                                  " unused bytes before tensor \"" + t.name + "\" (at " +
                                  std::to_string(expected) + ")");
    }
    expected = t.end;
    prev = &t;
  }
  if (expected != h.data_bytes) {
    return InvalidArgumentError(file + ": " + std::to_string(h.data_bytes - expected) +
                                " bytes after the last tensor are not covered by any tensor");
  }
  return h;
}

StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path,
                                                                 const SafetensorsLimits& limits) {
  ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(path));
  ASSIGN_OR_RETURN(SafetensorsHeader header, ParseSafetensors(file->bytes(), path, limits));
  return std::unique_ptr<SafetensorsFile>(new SafetensorsFile(std::move(file), std::move(header)));
}

Status WriteSafetensors(const std::string& path, std::span<const TensorToWrite> tensors) {
  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  for (const TensorToWrite& t : tensors) {
    header[t.name] = {{"dtype", DTypeName(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  const std::string h = header.dump();
  char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((uint64_t{h.size()} >> (8 * i)) & 0xff);
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return InvalidArgumentError("WriteSafetensors: cannot create " + path);
  bool ok = std::fwrite(len, 1, 8, f) == 8 && std::fwrite(h.data(), 1, h.size(), f) == h.size();
  for (const TensorToWrite& t : tensors) {
    ok = ok && std::fwrite(t.bytes.data(), 1, t.bytes.size(), f) == t.bytes.size();
  }
  ok = std::fclose(f) == 0 && ok;
  if (!ok) return InternalError("WriteSafetensors: writing " + path + " failed");
  return Status::Ok();
}

}  // namespace vlmserve
