// vlmserve-tokenize: Gemma 3 tokenization from the command line, exact to HF tokenizers.
//
//   vlmserve-tokenize --tokenizer FILE [--no-bos] [--no-special-tokens]
//       stdin: JSON lines {"text": "..."}  →  stdout: one JSON array of ids per line
//   vlmserve-tokenize --tokenizer FILE --decode [--skip-special-tokens]
//       stdin: JSON lines [id, ...]        →  stdout: one {"text": "..."} per line
//
// Lines holding only whitespace are skipped. A bad line stops the program with a message naming
// the line (exit 1); a bad tokenizer.json or command line exits 1 / 2.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "model/text/tokenizer.h"

namespace vlmserve {
namespace {

int Fail(size_t line, const std::string& why) {
  std::fprintf(stderr, "vlmserve-tokenize: line %zu: %s\n", line, why.c_str());
  return 1;
}

int Run(int argc, char** argv) {
  CLI::App app{
      "vlmserve-tokenize: encode JSON lines {\"text\": ...} from stdin into JSON arrays "
      "of token ids (or decode arrays back to text with --decode), exactly as HF "
      "tokenizers does with the same tokenizer.json."};
  std::string path;
  bool no_bos = false, no_special = false, decode = false, skip_special = false;
  app.add_option("--tokenizer", path, "tokenizer.json (e.g. ../shared/gemma3/tokenizer.json)")
      ->required();
  app.add_flag("--no-bos", no_bos, "Do not prepend <bos> (encode)");
  app.add_flag("--no-special-tokens", no_special,
               "Treat special-token strings such as <start_of_turn> as plain text (encode)");
  app.add_flag("--decode", decode, "Read JSON arrays of ids and print {\"text\": ...}");
  app.add_flag("--skip-special-tokens", skip_special, "Leave special tokens out (decode)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  auto tok = Tokenizer::Load(path);
  if (!tok.ok()) {
    std::fprintf(stderr, "vlmserve-tokenize: error: %s\n", tok.status().ToString().c_str());
    return 1;
  }
  std::ios::sync_with_stdio(false);
  std::string line, out;
  for (size_t n = 1; std::getline(std::cin, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      return Fail(n, std::string("invalid JSON: ") + e.what());
    }
    out.clear();
    if (decode) {
      if (!j.is_array()) return Fail(n, "expected a JSON array of token ids");
      std::vector<int32_t> ids;
      for (const auto& v : j) {
        if (!v.is_number_integer()) return Fail(n, "token ids must be integers");
        const int64_t id = v.get<int64_t>();
        ids.push_back(id < INT32_MIN || id > INT32_MAX ? -1 : static_cast<int32_t>(id));
      }
      out = nlohmann::json{{"text", (*tok)->Decode(ids, skip_special)}}.dump();
    } else {
      if (!j.is_object() || !j.contains("text") || !j["text"].is_string()) {
        return Fail(n, "expected {\"text\": \"...\"}");
      }
      auto ids = (*tok)->Encode(j["text"].get_ref<const std::string&>(),
                                {.add_bos = !no_bos, .match_special_tokens = !no_special});
      if (!ids.ok()) return Fail(n, ids.status().ToString());
      out = "[";
      for (size_t i = 0; i < ids->size(); ++i) {
        if (i) out += ',';
        out += std::to_string((*ids)[i]);
      }
      out += ']';
    }
    out += '\n';
    std::fwrite(out.data(), 1, out.size(), stdout);
  }
  return 0;
}

}  // namespace
}  // namespace vlmserve

int main(int argc, char** argv) { return vlmserve::Run(argc, argv); }
