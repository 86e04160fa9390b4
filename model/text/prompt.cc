// Gemma 3 prompt rendering and tokenization (see prompt.h).
#include "model/text/prompt.h"

#include "common/utf8.h"

namespace vlmserve {
namespace {

constexpr std::string_view kBos = "<bos>";
constexpr std::string_view kStartOfTurn = "<start_of_turn>";
constexpr std::string_view kEndOfTurn = "<end_of_turn>";
constexpr std::string_view kBoi = "<start_of_image>";
constexpr std::string_view kEoi = "<end_of_image>";
constexpr std::string_view kImageToken = "<image_soft_token>";

bool IsPythonSpace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

uint32_t CodePointAt(std::string_view s, size_t i, size_t len) {
  const auto b = [&](size_t k) { return static_cast<uint32_t>(static_cast<uint8_t>(s[i + k])); };
  switch (len) {
    case 1:
      return b(0);
    case 2:
      return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
    case 3:
      return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
    default:
      return ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
  }
}

// The rendered prompt and the byte ranges the template itself wrote (merged when adjacent).
class Renderer {
 public:
  void Template(std::string_view s) {
    if (s.empty()) return;
    if (!ranges_.empty() && ranges_.back().second == text_.size()) {
      ranges_.back().second += s.size();
    } else {
      ranges_.push_back({text_.size(), text_.size() + s.size()});
    }
    text_ += s;
  }
  void User(std::string_view s) { text_ += s; }
  std::string& text() { return text_; }
  const std::vector<std::pair<size_t, size_t>>& ranges() const { return ranges_; }

 private:
  std::string text_;
  std::vector<std::pair<size_t, size_t>> ranges_;
};

const char* RoleName(Role r) {
  switch (r) {
    case Role::kSystem:
      return "system";
    case Role::kUser:
      return "user";
    case Role::kAssistant:
      return "assistant";
  }
  return "?";
}

}  // namespace

std::string_view TrimPythonWhitespace(std::string_view s) {
  size_t begin = 0;
  while (begin < s.size()) {
    const size_t len = Utf8CharLength(s, begin);
    if (len == 0 || !IsPythonSpace(CodePointAt(s, begin, len))) break;
    begin += len;
  }
  size_t end = s.size();
  while (end > begin) {
    size_t start = end - 1;  // back up to the lead byte of the last character
    while (start > begin && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80) --start;
    const size_t len = Utf8CharLength(s, start);
    if (len == 0 || start + len != end || !IsPythonSpace(CodePointAt(s, start, len))) break;
    end = start;
  }
  return s.substr(begin, end - begin);
}

StatusOr<PromptBuilder> PromptBuilder::Create(const Tokenizer& tok, int64_t mm_tokens_per_image,
                                              const PromptLimits& limits) {
  for (std::string_view t : {kBos, kStartOfTurn, kEndOfTurn, kBoi, kEoi, kImageToken}) {
    const int32_t id = tok.TokenToId(t);
    if (id < 0 || !tok.IsSpecial(id)) {
      return InvalidArgumentError("tokenizer: \"" + std::string(t) +
                                  "\" is not a special token, so it cannot be a Gemma 3 tokenizer");
    }
  }
  if (mm_tokens_per_image <= 0 || mm_tokens_per_image > 65536) {
    return InvalidArgumentError("mm_tokens_per_image " + std::to_string(mm_tokens_per_image) +
                                " is out of range");
  }
  return PromptBuilder(tok, mm_tokens_per_image, limits, tok.TokenToId(kImageToken));
}

StatusOr<Prompt> PromptBuilder::Build(const std::vector<PromptMessage>& messages,
                                      bool add_generation_prompt) const {
  // ---- validation, before anything is rendered or tokenized ----
  if (messages.empty()) return InvalidArgumentError("the prompt has no messages");
  if (messages.size() > limits_.max_messages) {
    return InvalidArgumentError(std::to_string(messages.size()) + " messages, over the limit of " +
                                std::to_string(limits_.max_messages));
  }
  size_t text_bytes = 0, sequences = 0;
  for (size_t m = 0; m < messages.size(); ++m) {
    const PromptMessage& msg = messages[m];
    const std::string where = "messages[" + std::to_string(m) + "]";
    if (msg.role == Role::kSystem) {
      if (m != 0) return InvalidArgumentError(where + ": a system message may only come first");
      if (msg.parts.size() != 1 || msg.parts[0].kind != PromptPart::Kind::kText) {
        return InvalidArgumentError(where + ": a system message must be exactly one text part");
      }
    } else {
      const size_t turn = m - (messages[0].role == Role::kSystem ? 1 : 0);
      const Role expected = turn % 2 == 0 ? Role::kUser : Role::kAssistant;
      if (msg.role != expected) {
        return InvalidArgumentError(where +
                                    ": roles must alternate user/assistant starting with "
                                    "user; expected " +
                                    RoleName(expected) + ", got " + RoleName(msg.role));
      }
    }
    for (size_t p = 0; p < msg.parts.size(); ++p) {
      const PromptPart& part = msg.parts[p];
      const std::string pw = where + ".parts[" + std::to_string(p) + "]";
      if (part.kind == PromptPart::Kind::kText) {
        text_bytes += part.text.size();
        if (text_bytes > limits_.max_text_bytes) {
          return InvalidArgumentError("prompt text exceeds the limit of " +
                                      std::to_string(limits_.max_text_bytes) + " bytes (at " + pw +
                                      ")");
        }
        if (size_t bad = FindInvalidUtf8(part.text); bad != std::string_view::npos) {
          return InvalidArgumentError(pw + ": text is not valid UTF-8 (at byte " +
                                      std::to_string(bad) + ")");
        }
      } else {
        if (part.num_crops < 0 || part.num_crops > limits_.max_crops_per_image) {
          return InvalidArgumentError(pw + ": " + std::to_string(part.num_crops) +
                                      " pan & scan crops; allowed 0 to " +
                                      std::to_string(limits_.max_crops_per_image));
        }
        sequences += 1 + static_cast<size_t>(part.num_crops);
        if (sequences > limits_.max_image_sequences) {
          return InvalidArgumentError("more than " + std::to_string(limits_.max_image_sequences) +
                                      " images (counting pan & scan crops) at " + pw);
        }
      }
    }
  }
  if (messages.size() == 1 && messages[0].role == Role::kSystem) {
    return InvalidArgumentError("the prompt has a system message but no user message");
  }

  // ---- rendering (template spans vs user text) ----
  std::string sequence = "\n\n" + std::string(kBoi);
  for (int64_t i = 0; i < mm_tokens_; ++i) sequence += kImageToken;
  sequence += std::string(kEoi) + "\n\n";

  Renderer r;
  r.Template(kBos);
  size_t first = 0;
  std::string_view system_text;
  if (messages[0].role == Role::kSystem) {
    system_text = messages[0].parts[0].text;  // not trimmed, as in the template
    first = 1;
  }
  for (size_t m = first; m < messages.size(); ++m) {
    const PromptMessage& msg = messages[m];
    r.Template(std::string(kStartOfTurn) + (msg.role == Role::kUser ? "user" : "model") + "\n");
    if (m == first && first == 1) {
      r.User(system_text);
      r.Template("\n\n");
    }
    for (const PromptPart& part : msg.parts) {
      if (part.kind == PromptPart::Kind::kText) {
        r.User(TrimPythonWhitespace(part.text));
      } else if (part.num_crops == 0) {
        r.Template(sequence);
      } else {
        r.Template("Here is the original image ");
        r.Template(sequence);
        r.Template(" and here are some crops to help you see better ");
        for (int c = 0; c < part.num_crops; ++c) {
          if (c > 0) r.Template(" ");
          r.Template(sequence);
        }
      }
    }
    r.Template(std::string(kEndOfTurn) + "\n");
  }
  if (add_generation_prompt) r.Template(std::string(kStartOfTurn) + "model\n");

  // ---- one tokenization pass ----
  Prompt out;
  EncodeOptions opts;
  opts.add_bos = false;  // the template wrote <bos>
  opts.special_token_ranges = &r.ranges();
  ASSIGN_OR_RETURN(out.ids, tok_->Encode(r.text(), opts));
  out.token_type_ids.resize(out.ids.size());
  for (size_t i = 0; i < out.ids.size();) {
    if (out.ids[i] != image_token_id_) {
      ++i;
      continue;
    }
    ImageSoftTokens run{i, 0};
    for (; i < out.ids.size() && out.ids[i] == image_token_id_; ++i) {
      out.token_type_ids[i] = 1;
      ++run.count;
    }
    out.images.push_back(run);
  }
  // Each sequence is BOI + soft tokens + EOI, so runs cannot touch; anything else is a bug.
  bool consistent = out.images.size() == sequences;
  for (const ImageSoftTokens& im : out.images)
    consistent &= im.count == static_cast<size_t>(mm_tokens_);
  if (!consistent) {
    return InternalError("prompt tokenization produced " + std::to_string(out.images.size()) +
                         " image runs for " + std::to_string(sequences) + " image sequences");
  }
  out.text = std::move(r.text());
  return out;
}

}  // namespace vlmserve
