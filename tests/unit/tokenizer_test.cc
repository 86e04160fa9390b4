// The tokenizer against HF tokenizers: goldens made by tools/golden/make_tokenizer_goldens.py for
// the real Gemma 3 tokenizer.json (../shared/gemma3, skipped with a message when absent) and for a
// tiny tokenizer in the same format committed under tests/fixtures (always runs). Encode ids,
// decode text (both skip modes), streaming decode, long texts, and tokenizer.json load errors.
#include "model/text/tokenizer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "common/sha256.h"
#include "common/utf8.h"
#include "tests/test_paths.h"

namespace vlmserve {
namespace {

using nlohmann::json;
using vlmserve::testing::FixturePath;

struct Goldens {
  std::unique_ptr<Tokenizer> tok;
  json meta;
  std::vector<json> cases;  // every non-meta line, in file order
};

// The two golden sets. Loaded once per process (the real tokenizer.json is 33 MB).
const Goldens* LoadGoldens(const std::string& which) {
  static std::map<std::string, std::unique_ptr<Goldens>> cache;
  if (auto it = cache.find(which); it != cache.end()) return it->second.get();
  std::string tok_path, cases_path;
  if (which == "tiny") {
    tok_path = FixturePath("tokenizer/tiny/tokenizer.json");
    cases_path = FixturePath("tokenizer/tiny_cases.jsonl");
  } else {
    const std::string shared = vlmserve::testing::SharedGemma3Dir();
    if (shared.empty()) return nullptr;
    tok_path = shared + "/tokenizer.json";
    cases_path = FixturePath("tokenizer/gemma3_cases.jsonl");
  }
  auto g = std::make_unique<Goldens>();
  auto tok = Tokenizer::Load(tok_path);
  EXPECT_TRUE(tok.ok()) << tok.status().ToString();
  if (!tok.ok()) return nullptr;
  g->tok = std::move(tok).value();
  std::ifstream in(cases_path);
  EXPECT_TRUE(in.good()) << cases_path;
  for (std::string line; std::getline(in, line);) {
    json j = json::parse(line);
    if (j["cat"] == "meta")
      g->meta = j;
    else
      g->cases.push_back(std::move(j));
  }
  return (cache[which] = std::move(g)).get();
}

class TokenizerGoldenTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    g_ = LoadGoldens(GetParam());
    if (!g_) GTEST_SKIP() << "../shared/gemma3/tokenizer.json not found (set VLMSERVE_SHARED_DIR)";
  }
  const Goldens* g_ = nullptr;
};

std::string Show(const std::vector<int32_t>& v, size_t around) {
  std::string s;
  const size_t lo = around > 5 ? around - 5 : 0;
  for (size_t i = lo; i < std::min(v.size(), around + 6); ++i) s += std::to_string(v[i]) + " ";
  return s;
}

TEST_P(TokenizerGoldenTest, EncodeMatchesHf) {
  std::map<std::string, int> per_cat, failures;
  for (const json& c : g_->cases) {
    if (!c.contains("text") || c["cat"] == "decode") continue;
    const std::string& text = c["text"].get_ref<const std::string&>();
    auto ids = g_->tok->Encode(text, {.add_bos = false});
    ASSERT_TRUE(ids.ok()) << ids.status().ToString();
    const auto want = c["ids"].get<std::vector<int32_t>>();
    ++per_cat[c["cat"]];
    if (*ids != want) {
      size_t k = 0;
      while (k < ids->size() && k < want.size() && (*ids)[k] == want[k]) ++k;
      if (++failures[c["cat"]] <= 3) {
        ADD_FAILURE() << c["cat"] << " " << json(text).dump() << "\nfirst difference at id " << k
                      << "\n  HF:   " << Show(want, k) << "\n  ours: " << Show(*ids, k);
      }
    }
  }
  for (const auto& [cat, n] : failures) ADD_FAILURE() << n << " failures in category " << cat;
  if (GetParam() == "gemma3") {  // the minimum counts per category
    for (const char* cat : {"prompt", "whitespace", "cjk", "emoji", "scripts", "control"}) {
      EXPECT_GE(per_cat[cat], 200) << cat;
    }
    EXPECT_GE(per_cat["added"], 2 * 6415);  // every added token alone and inside words
  }
}

TEST_P(TokenizerGoldenTest, BosComesFromThePostProcessor) {
  auto ids = g_->tok->Encode("hi", {.add_bos = true});
  ASSERT_TRUE(ids.ok());
  const auto bos = g_->meta["bos_ids"].get<std::vector<int32_t>>();
  ASSERT_EQ(bos.size(), 1u);
  EXPECT_EQ(ids->front(), bos[0]);
  EXPECT_EQ(g_->tok->bos_id(), bos[0]);
}

std::string LongText(const std::vector<json>& cases, const json& recipe) {
  std::vector<const std::string*> shorts;
  for (const json& c : cases)
    if (c.contains("text") && c["cat"] != "added" && c["cat"] != "decode")
      shorts.push_back(&c["text"].get_ref<const std::string&>());
  std::string text;
  const size_t start = recipe["start"], count = recipe["count"];
  const std::string sep = recipe["sep"];
  for (size_t k = 0; k < count; ++k) text += *shorts[(start + k) % shorts.size()] + sep;
  return text;
}

TEST_P(TokenizerGoldenTest, LongTextsMatchHf) {
  int n = 0;
  for (const json& c : g_->cases) {
    if (c["cat"] != "long") continue;
    const std::string text = LongText(g_->cases, c);
    ASSERT_EQ(text.size(), c["bytes"].get<size_t>()) << "recipe reconstruction";
    auto ids = g_->tok->Encode(text, {.add_bos = false});
    ASSERT_TRUE(ids.ok());
    std::string joined;
    for (size_t i = 0; i < ids->size(); ++i) joined += (i ? "," : "") + std::to_string((*ids)[i]);
    EXPECT_EQ(ids->size(), c["n_ids"].get<size_t>()) << "long text " << n;
    EXPECT_EQ(Sha256::Hex(joined), c["ids_sha256"].get<std::string>()) << "long text " << n;
    ++n;
  }
  EXPECT_GE(n, 200);
}

TEST_P(TokenizerGoldenTest, DecodeMatchesHf) {
  int n = 0;
  for (const json& c : g_->cases) {
    if (c["cat"] == "long") continue;
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    std::string want, want_skip;
    if (c["cat"] == "decode") {
      want = c["text"];
      want_skip = c["text_skip"];
    } else {
      want = c.contains("decode") ? c["decode"] : c["text"];
      want_skip = c.contains("decode_skip") ? c["decode_skip"].get<std::string>() : want;
    }
    EXPECT_EQ(g_->tok->Decode(ids, false), want) << json(ids).dump();
    EXPECT_EQ(g_->tok->Decode(ids, true), want_skip) << json(ids).dump();
    ++n;
  }
  EXPECT_GT(n, 500);
}

// Streaming: every delta is valid UTF-8 and the deltas add up to the full decode.
TEST_P(TokenizerGoldenTest, StreamingDecodeAddsUpToDecode) {
  for (const json& c : g_->cases) {
    if (c["cat"] == "long") continue;
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    for (bool skip : {false, true}) {
      DecodeStream stream(*g_->tok, skip);
      std::string all;
      for (int32_t id : ids) {
        const std::string delta = stream.Step(id);
        ASSERT_TRUE(IsValidUtf8(delta)) << json(ids).dump();
        all += delta;
      }
      all += stream.Flush();
      ASSERT_EQ(all, g_->tok->Decode(ids, skip)) << json(ids).dump();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Hf, TokenizerGoldenTest, ::testing::Values("tiny", "gemma3"));

// ---- behaviour beyond the goldens ---------------------------------------------------------

const Tokenizer& Tiny() { return *LoadGoldens("tiny")->tok; }

// The tiny tokenizer was trained on chat transcripts, so its merges can spell <start_of_turn>:
// with special tokens off, neither the matcher nor BPE may produce a special id.
TEST(TokenizerTest, SpecialTokensCanBeTreatedAsText) {
  const Tokenizer& tok = Tiny();
  const int32_t sot = tok.TokenToId("<start_of_turn>");
  ASSERT_GE(sot, 0);
  const std::string text = "a<start_of_turn>b\n\n<bos><b>";
  auto with = tok.Encode(text, {.add_bos = false});
  auto without = tok.Encode(text, {.add_bos = false, .match_special_tokens = false});
  ASSERT_TRUE(with.ok() && without.ok());
  EXPECT_NE(std::find(with->begin(), with->end(), sot), with->end());
  for (int32_t id : *without) EXPECT_FALSE(tok.IsSpecial(id)) << id;
  // Non-special added tokens still match: the newline run and <b>.
  EXPECT_NE(std::find(without->begin(), without->end(), tok.TokenToId("\n\n")), without->end());
  EXPECT_NE(std::find(without->begin(), without->end(), tok.TokenToId("<b>")), without->end());
  EXPECT_EQ(tok.Decode(*without, false), text);
}

TEST(TokenizerTest, InvalidUtf8IsAnErrorNamingTheByte) {
  const Tokenizer& tok = Tiny();
  for (const auto& [text, byte] :
       std::vector<std::pair<std::string, int>>{{"ab\xff", 2},
                                                {"\xc3", 0},
                                                {"ok \xe2\x82", 3},
                                                {"\xed\xa0\x80", 0},  // a surrogate
                                                {"\xc0\xaf", 0},
                                                {"x\xf4\x90\x80\x80", 1},
                                                {std::string("a\0b", 3) + "\x80", 3}}) {
    auto ids = tok.Encode(text);
    ASSERT_FALSE(ids.ok());
    EXPECT_EQ(ids.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(ids.status().message(),
              "text is not valid UTF-8 (at byte " + std::to_string(byte) + ")");
  }
  EXPECT_TRUE(tok.Encode(std::string("a\0b", 3)).ok());  // NUL is valid UTF-8 (byte fallback)
}

TEST(TokenizerTest, DecodeDropsIdsWithoutTokens) {
  const Tokenizer& tok = Tiny();
  const int32_t h = tok.TokenToId("h");
  EXPECT_EQ(
      tok.Decode(std::vector<int32_t>{-5, h, static_cast<int32_t>(tok.size()), 1 << 30, h}, false),
      "hh");
}

// Encoding stays linear: 8× the text must not take anywhere near 64× (quadratic) the time.
TEST(TokenizerTest, EncodingIsLinearInTheTextLength) {
  const Tokenizer& tok = Tiny();
  std::string unit;
  for (int i = 0; i < 100; ++i) unit += "the player stands near a tree " + std::to_string(i) + " ";
  auto time_for = [&](size_t bytes) {
    std::string text;
    while (text.size() < bytes) text += unit;
    text.resize(bytes);
    double best = 1e9;
    for (int rep = 0; rep < 3; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      auto ids = tok.Encode(text);
      EXPECT_TRUE(ids.ok());
      best = std::min(best,
                      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
  };
  const double small = time_for(32 << 10), large = time_for(256 << 10);
  EXPECT_LT(large, 24 * small + 0.05) << "32 kB: " << small << " s, 256 kB: " << large << " s";
}

// ---- tokenizer.json that must be refused ---------------------------------------------------

json TinyJson() {
  std::ifstream in(FixturePath("tokenizer/tiny/tokenizer.json"));
  return json::parse(in);
}

struct BadTokenizer {
  const char* name;
  std::function<void(json&)> edit;
  StatusCode code;
  const char* message;
};

std::vector<BadTokenizer> BadTokenizers() {
  const auto kInv = StatusCode::kInvalidArgument, kUnimpl = StatusCode::kUnimplemented;
  return {
      {"other_normalizer",
       [](json& j) {
         j["normalizer"] = {{"type", "NFKC"}};
       },
       kUnimpl, "normalizer {\"type\":\"NFKC\"} is not supported"},
      {"no_normalizer", [](json& j) { j["normalizer"] = nullptr; }, kUnimpl, "normalizer null"},
      {"other_pre_tokenizer",
       [](json& j) {
         j["pre_tokenizer"] = {{"type", "ByteLevel"}};
       },
       kUnimpl, "pre_tokenizer"},
      {"other_decoder",
       [](json& j) {
         j["decoder"] = {{"type", "ByteLevel"}};
       },
       kUnimpl, "decoder"},
      {"wordpiece", [](json& j) { j["model"]["type"] = "WordPiece"; }, kUnimpl, "model type"},
      {"dropout", [](json& j) { j["model"]["dropout"] = 0.1; }, kUnimpl, "BPE dropout"},
      {"no_model", [](json& j) { j.erase("model"); }, kInv, "\"model\" is missing"},
      {"sparse_vocab", [](json& j) { j["model"]["vocab"]["zzz_new"] = 100000; }, kInv,
       "model.vocab[\"zzz_new\"] = 100000 is not an id in [0, "},
      {"duplicate_id", [](json& j) { j["model"]["vocab"]["<pad>"] = 1; }, kInv,
       "model.vocab gives id 1 to two tokens"},
      {"merge_unknown_token",
       [](json& j) {
         j["model"]["merges"].push_back(json::array({"qqq", "zzz"}));
       },
       kInv, "(\"qqq\", \"zzz\"): \"qqq\" is not in the vocabulary"},
      {"merge_result_unknown",
       [](json& j) {
         j["model"]["merges"].push_back(json::array({"<0x41>", "<0x42>"}));
       },
       kInv, "\"<0x41><0x42>\" is not in the vocabulary"},
      {"merge_bad_string", [](json& j) { j["model"]["merges"].push_back("a b c"); }, kInv,
       "is not two tokens separated by one space"},
      {"merge_not_pair", [](json& j) { j["model"]["merges"].push_back(json::array({"a"})); }, kInv,
       "must be \"a b\" or [\"a\", \"b\"]"},
      {"missing_byte_token",
       [](json& j) {  // renamed, so the vocabulary stays dense
         j["model"]["vocab"]["<0x7f>"] = j["model"]["vocab"]["<0x7F>"];
         j["model"]["vocab"].erase("<0x7F>");
       },
       kInv, "byte_fallback is on but the vocabulary lacks <0x7F>"},
      {"unk_not_in_vocab", [](json& j) { j["model"]["unk_token"] = "<nope>"; }, kInv,
       "model.unk_token \"<nope>\" is not in the vocabulary"},
      {"added_normalized", [](json& j) { j["added_tokens"][0]["normalized"] = true; }, kUnimpl,
       "normalized=true is not supported"},
      {"added_lstrip", [](json& j) { j["added_tokens"][5]["lstrip"] = true; }, kUnimpl,
       "lstrip=true is not supported"},
      {"added_id_conflict", [](json& j) { j["added_tokens"][0]["id"] = 5; }, kInv,
       "\"<pad>\" has id 5 but the vocabulary gives it 0"},
      {"added_steals_vocab_id",
       [](json& j) {
         j["added_tokens"].push_back({{"id", 10}, {"content", "<new>"}, {"special", true}});
       },
       kInv, "id 10 of \"<new>\" belongs to vocabulary token"},
      {"added_empty", [](json& j) { j["added_tokens"][0]["content"] = ""; }, kInv,
       "content of 0 bytes"},
      {"added_without_id", [](json& j) { j["added_tokens"][0].erase("id"); }, kInv,
       "must have an integer \"id\""},
      {"odd_post_processor",
       [](json& j) {
         j["post_processor"] = {{"type", "RobertaProcessing"}};
       },
       kUnimpl, "post_processor"},
      {"bos_unknown",
       [](json& j) { j["post_processor"]["special_tokens"]["<bos>"]["ids"] = {999999}; }, kUnimpl,
       "post_processor"},
  };
}

class BadTokenizerTest : public ::testing::TestWithParam<BadTokenizer> {};

TEST_P(BadTokenizerTest, RefusedWithItsOwnMessage) {
  json j = TinyJson();
  GetParam().edit(j);
  auto tok = Tokenizer::FromJson(j.dump(), "tok.json");
  ASSERT_FALSE(tok.ok()) << GetParam().name << " was accepted";
  EXPECT_EQ(tok.status().code(), GetParam().code) << tok.status().ToString();
  EXPECT_NE(tok.status().message().find(GetParam().message), std::string::npos)
      << "message: " << tok.status().message() << "\nexpected to contain: " << GetParam().message;
  EXPECT_EQ(tok.status().message().rfind("tok.json", 0), 0u) << tok.status().message();
}

INSTANTIATE_TEST_SUITE_P(Table, BadTokenizerTest, ::testing::ValuesIn(BadTokenizers()),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(TokenizerLoadTest, SizeDepthAndSyntax) {
  TokenizerLimits small;
  small.max_file_bytes = 100;
  EXPECT_NE(Tokenizer::FromJson(TinyJson().dump(), "t.json", small)
                .status()
                .message()
                .find("over the limit of 100"),
            std::string::npos);
  EXPECT_NE(Tokenizer::FromJson(std::string(50, '[') + std::string(50, ']'), "t.json")
                .status()
                .message()
                .find("nested deeper than 8"),
            std::string::npos);
  EXPECT_NE(Tokenizer::FromJson("{\"model\": ", "t.json").status().message().find("invalid JSON"),
            std::string::npos);
  EXPECT_EQ(Tokenizer::Load("/nonexistent/tokenizer.json").status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace vlmserve
