// PromptBuilder: Gemma 3 chat messages → token ids, exact to transformers' Gemma3Processor
// (apply_chat_template + image expansion, spec §3), with special tokens users cannot inject.
//
// Rendering (the hub chat template, spec §3.1): "<bos>"; a leading system message's text + "\n\n"
// is prefixed to the first user turn (not trimmed); each turn is "<start_of_turn>{user|model}\n"
// + content + "<end_of_turn>\n"; text parts are trimmed (Python's str.strip whitespace), an image
// part is "<start_of_image>", parts are joined with no separator; the generation prompt is
// "<start_of_turn>model\n". Then each image part becomes its full sequence (spec §3.3)
//   "\n\n<start_of_image>" + "<image_soft_token>" × mm_tokens_per_image + "<end_of_image>\n\n"
// or, with pan & scan crops (spec §3.4), "Here is the original image " + seq + " and here are
// some crops to help you see better " + seq (" " seq)×(n−1). The whole string is tokenized in one
// pass, so newline runs merge across the pieces exactly as in transformers.
//
// Injection safety: only the byte ranges the template wrote may contain special tokens; in text
// from users and system prompts, "<start_of_turn>" or "<start_of_image>" are plain text
// (Tokenizer EncodeOptions::special_token_ranges). Non-special added tokens match everywhere.
// Where user text holds no special-token string, the ids equal Gemma3Processor's.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "model/text/tokenizer.h"

namespace vlmserve {

enum class Role { kSystem, kUser, kAssistant };

struct PromptPart {
  enum class Kind { kText, kImage };
  Kind kind = Kind::kText;
  std::string text;   // kText: UTF-8
  int num_crops = 0;  // kImage: pan & scan crops of this image (0 = none; spec §2.5)

  static PromptPart Text(std::string t) { return {Kind::kText, std::move(t), 0}; }
  static PromptPart Image(int crops = 0) { return {Kind::kImage, {}, crops}; }
};

struct PromptMessage {
  Role role = Role::kUser;
  std::vector<PromptPart> parts;
};

// Checked before anything is rendered or tokenized; violations are INVALID_ARGUMENT.
struct PromptLimits {
  size_t max_text_bytes = 32 << 10;  // all text parts together
  size_t max_messages = 64;
  size_t max_image_sequences = 16;  // images plus their crops
  int max_crops_per_image = 4;      // the pan & scan default maximum
};

// One image sequence's soft tokens: ids[first .. first + count) are the image token.
struct ImageSoftTokens {
  size_t first = 0;
  size_t count = 0;
};

struct Prompt {
  std::vector<int32_t> ids;
  std::vector<uint8_t> token_type_ids;  // 1 on soft tokens (HF's token_type_ids), else 0
  std::vector<ImageSoftTokens> images;  // per image sequence, in pixel order: full, its crops, next
  std::string text;                     // the expanded text that was tokenized (for logs/debugging)
};

class PromptBuilder {
 public:
  // Looks up <bos>, <start_of_image>, <end_of_image>, <image_soft_token> (all must be special
  // tokens of `tokenizer`), and keeps a reference to it.
  static StatusOr<PromptBuilder> Create(const Tokenizer& tokenizer, int64_t mm_tokens_per_image,
                                        const PromptLimits& limits = {});

  StatusOr<Prompt> Build(const std::vector<PromptMessage>& messages,
                         bool add_generation_prompt = true) const;

  const PromptLimits& limits() const { return limits_; }

 private:
  PromptBuilder(const Tokenizer& t, int64_t mm, PromptLimits l, int32_t image_id)
      : tok_(&t), mm_tokens_(mm), limits_(l), image_token_id_(image_id) {}
  const Tokenizer* tok_;
  int64_t mm_tokens_;
  PromptLimits limits_;
  int32_t image_token_id_;
};

// Python's str.strip() (what the chat template's `| trim` does): removes the 29 code points for
// which str.isspace() is true from both ends. `text` must be valid UTF-8.
std::string_view TrimPythonWhitespace(std::string_view text);

}  // namespace vlmserve
