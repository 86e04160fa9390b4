// tokenizer.json loading, encoding and decoding (see tokenizer.h).
#include "model/text/tokenizer.h"

#include <cstdio>
#include <nlohmann/json.hpp>

#include "common/json_util.h"
#include "common/utf8.h"

namespace vlmserve {
namespace {

using nlohmann::json;

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";        // U+2581 '▁'
constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// The pieces of the Gemma 3 pipeline, as tokenizer.json spells them.
const json& GemmaNormalizer() {
  static const json j = {
      {"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}};
  return j;
}
const json& GemmaPreTokenizer() {
  static const json j = {{"type", "Split"},
                         {"pattern", {{"String", " "}}},
                         {"behavior", "MergedWithPrevious"},
                         {"invert", false}};
  return j;
}
const json& GemmaDecoder() {
  static const json j = {
      {"type", "Sequence"},
      {"decoders",
       {{{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
        {{"type", "ByteFallback"}},
        {{"type", "Fuse"}}}}};
  return j;
}

// "<0xNN>" → NN (hex, either case, as HF's ByteFallback decoder parses it), else -1.
int ParseByteToken(std::string_view t) {
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  const int hi = hex(t[3]), lo = hex(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

std::string ReplaceAll(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string_view::npos; pos = hit + from.size()) {
    out.append(s.substr(pos, hit - pos));
    out.append(to);
  }
  out.append(s.substr(pos));
  return out;
}

Status Unsupported(const std::string& source, const std::string& what, const json& got) {
  std::string s = got.dump();
  if (s.size() > 200) s = s.substr(0, 197) + "...";
  return UnimplementedError(source + ": " + what + " " + s +
                            " is not supported (vlmserve implements the Gemma 3 pipeline)");
}

bool IsFalseOrAbsent(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it == obj.end() || it->is_null() || (it->is_boolean() && !it->get<bool>());
}
bool IsNullOrEmptyString(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it == obj.end() || it->is_null() || (it->is_string() && it->get<std::string>().empty());
}

}  // namespace

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& path,
                                                     const TokenizerLimits& limits) {
  ASSIGN_OR_RETURN(std::string text, ReadFileBounded(path, limits.max_file_bytes));
  return FromJson(text, path, limits);
}

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(std::string_view text,
                                                         const std::string& src,
                                                         const TokenizerLimits& lim) {
  if (text.size() > lim.max_file_bytes) {
    return InvalidArgumentError(src + ": " + std::to_string(text.size()) +
                                " bytes, over the limit of " + std::to_string(lim.max_file_bytes));
  }
  ASSIGN_OR_RETURN(json j, ParseJsonBounded(text, lim.max_json_depth, src));
  if (!j.is_object()) return InvalidArgumentError(src + ": must be a JSON object");
  auto field = [&j](const char* k) -> const json& {
    static const json kNull;
    auto it = j.find(k);
    return it == j.end() ? kNull : *it;
  };

  // ---- the pipeline must be Gemma's ----
  if (const json& n = field("normalizer"); n != GemmaNormalizer()) {
    return Unsupported(src, "normalizer", n);
  }
  if (const json& p = field("pre_tokenizer"); !p.is_null() && p != GemmaPreTokenizer()) {
    return Unsupported(src, "pre_tokenizer", p);
  }
  if (const json& d = field("decoder"); d != GemmaDecoder()) return Unsupported(src, "decoder", d);

  // ---- model: BPE ----
  const json& m = field("model");
  if (!m.is_object()) return InvalidArgumentError(src + ": \"model\" is missing or not an object");
  if (m.contains("type") && m["type"] != "BPE") return Unsupported(src, "model type", m["type"]);
  if (m.contains("dropout") && !m["dropout"].is_null()) {
    return Unsupported(src, "BPE dropout", m["dropout"]);
  }
  if (!IsNullOrEmptyString(m, "continuing_subword_prefix") ||
      !IsNullOrEmptyString(m, "end_of_word_suffix")) {
    return Unsupported(src, "BPE subword prefix/suffix", m);
  }
  if (!IsFalseOrAbsent(m, "ignore_merges"))
    return Unsupported(src, "ignore_merges", m["ignore_merges"]);
  const bool byte_fallback = m.contains("byte_fallback") && m["byte_fallback"].is_boolean() &&
                             m["byte_fallback"].get<bool>();
  const bool fuse_unk =
      m.contains("fuse_unk") && m["fuse_unk"].is_boolean() && m["fuse_unk"].get<bool>();

  const json& vocab_json = m.contains("vocab") ? m["vocab"] : json();
  if (!vocab_json.is_object() || vocab_json.empty()) {
    return InvalidArgumentError(src + ": model.vocab is missing, empty or not an object");
  }
  if (vocab_json.size() > lim.max_vocab) {
    return InvalidArgumentError(src + ": model.vocab has " + std::to_string(vocab_json.size()) +
                                " entries, over the limit of " + std::to_string(lim.max_vocab));
  }
  std::vector<std::string> vocab(vocab_json.size());
  std::vector<bool> seen(vocab_json.size(), false);
  for (const auto& [token, id_json] : vocab_json.items()) {
    if (!id_json.is_number_unsigned() || id_json.get<uint64_t>() >= vocab.size()) {
      return InvalidArgumentError(src + ": model.vocab[\"" + token + "\"] = " + id_json.dump() +
                                  " is not an id in [0, " + std::to_string(vocab.size()) +
                                  ") (the vocabulary must be dense)");
    }
    const size_t id = id_json.get<uint64_t>();
    if (seen[id]) {
      return InvalidArgumentError(src + ": model.vocab gives id " + std::to_string(id) +
                                  " to two tokens (\"" + vocab[id] + "\" and \"" + token + "\")");
    }
    if (token.empty() || token.size() > lim.max_token_bytes) {
      return InvalidArgumentError(src + ": model.vocab token of id " + std::to_string(id) +
                                  " has " + std::to_string(token.size()) + " bytes");
    }
    seen[id] = true;
    vocab[id] = token;
  }
  TokenMap vocab_index;
  vocab_index.reserve(vocab.size());
  for (size_t i = 0; i < vocab.size(); ++i) vocab_index.emplace(vocab[i], static_cast<int32_t>(i));
  auto vocab_id = [&vocab_index](std::string_view t) -> int32_t {
    auto it = vocab_index.find(t);
    return it == vocab_index.end() ? -1 : it->second;
  };

  int32_t unk_id = -1;
  if (m.contains("unk_token") && !m["unk_token"].is_null()) {
    if (!m["unk_token"].is_string() || (unk_id = vocab_id(m["unk_token"].get<std::string>())) < 0) {
      return InvalidArgumentError(src + ": model.unk_token " + m["unk_token"].dump() +
                                  " is not in the vocabulary");
    }
  }
  if (byte_fallback) {
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof(name), "<0x%02X>", b);
      if (vocab_id(name) < 0) {
        return InvalidArgumentError(src + ": byte_fallback is on but the vocabulary lacks " + name);
      }
    }
  }

  const json& merges_json = m.contains("merges") ? m["merges"] : json();
  if (!merges_json.is_array()) return InvalidArgumentError(src + ": model.merges must be a list");
  if (merges_json.size() > lim.max_merges) {
    return InvalidArgumentError(src + ": model.merges has " + std::to_string(merges_json.size()) +
                                " entries, over the limit of " + std::to_string(lim.max_merges));
  }
  std::vector<BpeModel::Merge> merges;
  merges.reserve(merges_json.size());
  std::string joined;
  for (size_t r = 0; r < merges_json.size(); ++r) {
    const json& e = merges_json[r];
    std::string a, b;
    if (e.is_string()) {  // "a b": exactly one space (tokens never contain one: ' ' became '▁')
      const std::string s = e.get<std::string>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
        return InvalidArgumentError(src + ": merge " + std::to_string(r) + " \"" + s +
                                    "\" is not two tokens separated by one space");
      }
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    } else {
      return InvalidArgumentError(src + ": merge " + std::to_string(r) +
                                  " must be \"a b\" or [\"a\", \"b\"], got " +
                                  e.dump().substr(0, 80));
    }
    const int32_t ia = vocab_id(a), ib = vocab_id(b);
    joined = a + b;
    const int32_t ir = vocab_id(joined);
    if (ia < 0 || ib < 0 || ir < 0) {
      return InvalidArgumentError(src + ": merge " + std::to_string(r) + " (\"" + a + "\", \"" + b +
                                  "\"): \"" +
                                  (ia < 0   ? a
                                   : ib < 0 ? b
                                            : joined) +
                                  "\" is not in the vocabulary");
    }
    merges.push_back({ia, ib, ir});
  }

  std::unique_ptr<Tokenizer> t(new Tokenizer());
  t->max_text_bytes_ = lim.max_text_bytes;
  t->id_to_token_ = vocab;
  t->special_.assign(vocab.size(), 0);

  // ---- added tokens ----
  const json& added = field("added_tokens");
  if (!added.is_null() && !added.is_array()) {
    return InvalidArgumentError(src + ": added_tokens must be a list");
  }
  if (added.is_array() && added.size() > lim.max_added_tokens) {
    return InvalidArgumentError(src + ": " + std::to_string(added.size()) +
                                " added tokens, over the limit of " +
                                std::to_string(lim.max_added_tokens));
  }
  for (size_t k = 0; added.is_array() && k < added.size(); ++k) {
    const json& a = added[k];
    const std::string where = src + ": added_tokens[" + std::to_string(k) + "]";
    if (!a.is_object() || !a.contains("id") || !a["id"].is_number_unsigned() ||
        !a.contains("content") || !a["content"].is_string()) {
      return InvalidArgumentError(where + " must have an integer \"id\" and a string \"content\"");
    }
    const uint64_t id = a["id"].get<uint64_t>();
    const std::string content = a["content"].get<std::string>();
    if (content.empty() || content.size() > lim.max_token_bytes) {
      return InvalidArgumentError(where + ": content of " + std::to_string(content.size()) +
                                  " bytes");
    }
    if (id >= vocab.size() + lim.max_added_tokens) {
      return InvalidArgumentError(where + ": id " + std::to_string(id) +
                                  " is far beyond the vocabulary");
    }
    for (const char* flag : {"normalized", "lstrip", "rstrip", "single_word"}) {
      if (!IsFalseOrAbsent(a, flag)) {
        return UnimplementedError(where + " (\"" + content + "\"): " + flag +
                                  "=true is not supported (Gemma 3's added tokens have it false)");
      }
    }
    const int32_t in_vocab = vocab_id(content);
    if (in_vocab >= 0 && static_cast<uint64_t>(in_vocab) != id) {
      return InvalidArgumentError(where + ": \"" + content + "\" has id " + std::to_string(id) +
                                  " but the vocabulary gives it " + std::to_string(in_vocab));
    }
    if (in_vocab < 0 && id < vocab.size()) {
      return InvalidArgumentError(where + ": id " + std::to_string(id) + " of \"" + content +
                                  "\" belongs to vocabulary token \"" + vocab[id] + "\"");
    }
    if (id >= t->id_to_token_.size()) {
      t->id_to_token_.resize(id + 1);
      t->special_.resize(id + 1, 0);
    } else if (in_vocab < 0 && !t->id_to_token_[id].empty()) {
      return InvalidArgumentError(where + ": id " + std::to_string(id) + " is used twice");
    }
    t->id_to_token_[id] = content;
    const bool special =
        a.contains("special") && a["special"].is_boolean() && a["special"].get<bool>();
    t->special_[id] = special;
    t->added_.Add(content, static_cast<int32_t>(id), special);
  }

  // ---- post-processor: where <bos> comes from ----
  const json& pp = field("post_processor");
  if (!pp.is_null()) {
    const json single = pp.contains("single") ? pp["single"] : json();
    const json sequence_a = {{"Sequence", {{"id", "A"}, {"type_id", 0}}}};
    if (pp.value("type", "") != "TemplateProcessing" || !single.is_array() || single.empty() ||
        single.back() != sequence_a || single.size() > 2) {
      return Unsupported(src, "post_processor", pp);
    }
    if (single.size() == 2) {
      const json& st = single[0];
      const std::string name =
          st.contains("SpecialToken") ? st["SpecialToken"].value("id", "") : "";
      const json* spec = pp.contains("special_tokens") && pp["special_tokens"].contains(name)
                             ? &pp["special_tokens"][name]
                             : nullptr;
      if (!spec || !(*spec).contains("ids") || !(*spec)["ids"].is_array() ||
          (*spec)["ids"].size() != 1 || !(*spec)["ids"][0].is_number_unsigned() ||
          (*spec)["ids"][0].get<uint64_t>() >= t->id_to_token_.size()) {
        return Unsupported(src, "post_processor", pp);
      }
      t->bos_id_ = static_cast<int32_t>((*spec)["ids"][0].get<uint64_t>());
    }
  }

  t->byte_value_.resize(t->id_to_token_.size());
  for (size_t i = 0; i < t->id_to_token_.size(); ++i) {
    t->byte_value_[i] = static_cast<int16_t>(ParseByteToken(t->id_to_token_[i]));
  }
  t->bpe_ = std::make_unique<BpeModel>(std::move(vocab), merges, byte_fallback, unk_id, fuse_unk);
  return t;
}

StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text,
                                                 const EncodeOptions& options) const {
  if (text.size() > max_text_bytes_) {
    return InvalidArgumentError("text of " + std::to_string(text.size()) +
                                " bytes exceeds the tokenizer's limit of " +
                                std::to_string(max_text_bytes_));
  }
  if (size_t bad = FindInvalidUtf8(text); bad != std::string_view::npos) {
    return InvalidArgumentError("text is not valid UTF-8 (at byte " + std::to_string(bad) + ")");
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 2);
  if (options.add_bos && bos_id_) ids.push_back(*bos_id_);
  AddedTokenMatcher::SpecialPolicy policy;
  policy.everywhere = options.match_special_tokens;
  policy.ranges = options.special_token_ranges;
  // BPE may spell a special token only where the matcher would have matched it anyway (never, in
  // HF-equivalent mode: the whole string would have been split out first).
  const bool restricted = !options.match_special_tokens || options.special_token_ranges;
  std::string word;
  size_t pos = 0;
  while (pos <= text.size()) {
    const auto match = added_.FindNext(text, pos, policy);
    const size_t end = match ? match->begin : text.size();
    if (end > pos) {
      word = ReplaceAll(text.substr(pos, end - pos), " ", kSpaceMark);  // the normalizer
      bpe_->EncodeWord(word, &ids, restricted ? &special_ : nullptr);
    }
    if (!match) break;
    ids.push_back(match->id);
    pos = match->end;
  }
  return ids;
}

std::string Tokenizer::Decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  DecodeStream stream(*this, skip_special_tokens);
  std::string out;
  for (int32_t id : ids) out += stream.Step(id);
  return out + stream.Flush();
}

int32_t Tokenizer::TokenToId(std::string_view token) const {
  if (int32_t id = bpe_->Find(token); id >= 0) return id;
  for (size_t i = bpe_->vocab().size(); i < id_to_token_.size(); ++i) {
    if (id_to_token_[i] == token) return static_cast<int32_t>(i);
  }
  return -1;
}

const std::string* Tokenizer::IdToToken(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size() || id_to_token_[id].empty())
    return nullptr;
  return &id_to_token_[static_cast<size_t>(id)];
}

bool Tokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < special_.size() && special_[static_cast<size_t>(id)];
}

int Tokenizer::ByteValue(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < byte_value_.size()
             ? byte_value_[static_cast<size_t>(id)]
             : -1;
}

std::string DecodeStream::FlushBytes() {
  std::string out;
  if (pending_bytes_.empty()) return out;
  if (IsValidUtf8(pending_bytes_)) {
    out = std::move(pending_bytes_);
  } else {
    for (size_t i = 0; i < pending_bytes_.size(); ++i) out.append(kReplacementChar);
  }
  pending_bytes_.clear();
  return out;
}

std::string DecodeStream::Step(int32_t id) {
  const std::string* token = tok_.IdToToken(id);
  if (!token || (skip_special_ && tok_.IsSpecial(id))) return "";
  if (const int b = tok_.ByteValue(id); b >= 0) {
    pending_bytes_.push_back(static_cast<char>(b));
    return "";
  }
  std::string out = FlushBytes();
  out += ReplaceAll(*token, kSpaceMark, " ");
  return out;
}

std::string DecodeStream::Flush() { return FlushBytes(); }

}  // namespace vlmserve
