// Tokenizer encode throughput (MB/s, one thread) on a long mixed text, as JSON. The baseline is
// bench/tokenizer_baseline.py: HF tokenizers on the same text, same machine, RAYON_NUM_THREADS=1.
// The text: every prompt/whitespace/CJK/emoji/script/control case of the golden file, in file
// order, joined with "\n" and repeated to at least --mb megabytes (the baseline builds the same).
//
//   vlmserve_bench_tokenizer --tokenizer FILE --cases tests/fixtures/tokenizer/gemma3_cases.jsonl
//                            [--mb 4] [--repeats 7]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/text/tokenizer.h"

int main(int argc, char** argv) {
  std::string tok_path, cases_path;
  double mb = 4;
  int repeats = 7;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--tokenizer"))
      tok_path = argv[i + 1];
    else if (!std::strcmp(argv[i], "--cases"))
      cases_path = argv[i + 1];
    else if (!std::strcmp(argv[i], "--mb"))
      mb = std::atof(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--repeats"))
      repeats = std::max(1, std::atoi(argv[i + 1]));
  }
  if (tok_path.empty() || cases_path.empty()) {
    std::fprintf(stderr, "usage: %s --tokenizer FILE --cases FILE [--mb N] [--repeats N]\n",
                 argv[0]);
    return 2;
  }
  const auto t_load = std::chrono::steady_clock::now();
  auto tok = vlmserve::Tokenizer::Load(tok_path);
  if (!tok.ok()) {
    std::fprintf(stderr, "%s\n", tok.status().ToString().c_str());
    return 1;
  }
  const double load_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count();
  std::string unit;
  std::vector<std::string> prompts;  // the "prompt" cases: short, like a server's requests
  std::ifstream in(cases_path);
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    const std::string cat = j["cat"];
    if (j.contains("text") && cat != "added" && cat != "decode" && cat != "meta") {
      unit += j["text"].get<std::string>() + "\n";
      if (cat == "prompt") prompts.push_back(j["text"]);
    }
  }
  std::string text;
  while (text.size() < mb * 1e6) text += unit;

  std::vector<double> secs;
  size_t n_ids = 0;
  for (int r = 0; r <= repeats; ++r) {  // run 0 is the warm-up
    const auto t0 = std::chrono::steady_clock::now();
    auto ids = (*tok)->Encode(text, {.add_bos = false});
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!ids.ok()) return 1;
    n_ids = ids->size();
    if (r > 0) secs.push_back(s);
  }
  std::sort(secs.begin(), secs.end());
  const double median = secs[(secs.size() - 1) / 2];

  // Short prompts one by one (the per-request cost in the server), 20 passes over them.
  size_t prompt_bytes = 0;
  for (const auto& p : prompts) prompt_bytes += p.size();
  std::vector<double> psecs;
  for (int r = 0; r <= repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int pass = 0; pass < 20; ++pass)
      for (const auto& p : prompts) (void)(*tok)->Encode(p, {.add_bos = true});
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r > 0) psecs.push_back(s);
  }
  std::sort(psecs.begin(), psecs.end());
  const double pmedian = psecs[(psecs.size() - 1) / 2];
  std::printf(
      "{\"bench\": \"tokenizer_encode\", \"impl\": \"vlmserve\", \"bytes\": %zu, \"ids\": %zu, "
      "\"repeats\": %d, \"median_s\": %.4f, \"mb_per_s\": %.2f, \"prompts\": %zu, "
      "\"prompt_us_each\": %.2f, \"prompt_mb_per_s\": %.2f, \"load_s\": %.2f}\n",
      text.size(), n_ids, repeats, median, text.size() / median / 1e6, prompts.size(),
      pmedian / (20.0 * prompts.size()) * 1e6, 20.0 * prompt_bytes / pmedian / 1e6, load_s);
  return 0;
}
