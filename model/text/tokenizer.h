// Tokenizer: Gemma 3's tokenizer.json, exact to HF tokenizers (Tokenizer.from_file).
//
// Encode pipeline (the one Gemma 3 uses; other pipelines are refused at load as UNIMPLEMENTED):
//   1. added tokens (all normalized=false) are split out of the raw text, leftmost-longest;
//   2. every other span is normalized with Replace(' ' → '▁'); the Split(' ') pre-tokenizer then
//      never splits, so each span is one BPE word (model/bpe.h);
//   3. TemplateProcessing prepends <bos> when asked.
// Decode: ids → token strings (special tokens optionally skipped, ids without a token dropped, as
// HF does) → Replace('▁' → ' ') → ByteFallback (a run of <0xNN> tokens becomes its bytes if they
// are valid UTF-8 as a whole, else one U+FFFD per byte) → Fuse. No Strip.
//
// tokenizer.json is untrusted input: size and nesting are capped, the vocabulary must be dense,
// merges must name existing tokens whose concatenation exists, byte-fallback tokens must all be
// present, added tokens must be consistent with the vocabulary.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "model/text/added_tokens.h"
#include "model/text/bpe.h"

namespace vlmserve {

struct TokenizerLimits {
  uint64_t max_file_bytes = 128u << 20;  // Gemma 3's tokenizer.json is 33 MB
  int max_json_depth = 8;
  size_t max_vocab = size_t{1} << 22;
  size_t max_merges = size_t{1} << 23;
  size_t max_added_tokens = size_t{1} << 20;
  size_t max_token_bytes = 4096;
  uint64_t max_text_bytes = uint64_t{64} << 20;  // Encode refuses longer inputs
};
inline constexpr TokenizerLimits kTokenizerLimits{};

struct EncodeOptions {
  bool add_bos = true;
  // Whether special added tokens (<bos>, <start_of_turn>, <start_of_image>, ...) are recognised in
  // this text. HF always recognises them. When false, no special id comes out at all.
  bool match_special_tokens = true;
  // If set (sorted, non-overlapping byte ranges), special tokens are recognised only entirely
  // inside one of these ranges and nowhere else — the prompt builder passes the spans its template
  // wrote, so text a user typed is always plain text. Overrides match_special_tokens.
  const std::vector<std::pair<size_t, size_t>>* special_token_ranges = nullptr;
};

class Tokenizer {
 public:
  static StatusOr<std::unique_ptr<Tokenizer>> Load(
      const std::string& path, const TokenizerLimits& limits = kTokenizerLimits);
  static StatusOr<std::unique_ptr<Tokenizer>> FromJson(
      std::string_view json_text, const std::string& source,
      const TokenizerLimits& limits = kTokenizerLimits);

  // INVALID_ARGUMENT for invalid UTF-8 (naming the byte offset) or text over max_text_bytes.
  StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                        const EncodeOptions& options = {}) const;
  // Like HF tokenizers' decode. Ids without a token (e.g. the embedding's padding rows) are
  // dropped.
  std::string Decode(std::span<const int32_t> ids, bool skip_special_tokens) const;

  // Ids 0 … size()−1 may have tokens (the BPE vocabulary plus added tokens beyond it).
  size_t size() const { return id_to_token_.size(); }
  std::optional<int32_t> bos_id() const { return bos_id_; }
  int32_t TokenToId(std::string_view token) const;  // -1 if unknown (vocab or added)
  const std::string* IdToToken(int32_t id) const;   // nullptr if none
  bool IsSpecial(int32_t id) const;
  // <0xNN> → NN for byte-fallback tokens, else -1.
  int ByteValue(int32_t id) const;

 private:
  Tokenizer() = default;
  std::unique_ptr<BpeModel> bpe_;
  AddedTokenMatcher added_;
  std::vector<std::string> id_to_token_;  // vocabulary + added tokens; "" where no token
  std::vector<uint8_t> special_;          // per id
  std::vector<int16_t> byte_value_;       // per id: 0..255 for <0xNN>, -1 otherwise
  std::optional<int32_t> bos_id_;
  uint64_t max_text_bytes_ = 0;
};

// Streaming detokenization for token-by-token output. Step() returns the text that became final
// with this id: never a partial UTF-8 character, and a run of byte-fallback tokens is held back
// until the run ends (a later invalid byte would turn the whole run into U+FFFD, as HF decodes it).
// The concatenation of every Step() and the final Flush() equals Decode() of all ids.
class DecodeStream {
 public:
  DecodeStream(const Tokenizer& tokenizer, bool skip_special_tokens)
      : tok_(tokenizer), skip_special_(skip_special_tokens) {}
  std::string Step(int32_t id);
  std::string Flush();  // the held-back tail, decoded the way Decode() would end

 private:
  std::string FlushBytes();
  const Tokenizer& tok_;
  bool skip_special_;
  std::string pending_bytes_;  // the current run of <0xNN> tokens
};

}  // namespace vlmserve
