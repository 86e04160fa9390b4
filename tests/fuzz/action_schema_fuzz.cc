// Fuzz target: arbitrary bytes as an action_schema → parse → compile → walk. A schema is either
// refused with INVALID_ARGUMENT or compiles into an automaton whose every reachable state can be
// completed; the walk takes bytes the automaton allows (choices drawn from the input's hash),
// checks Key(), ForcedBytes() and ShortestCompletion() on the way, and the masks of the tiny
// tokenizer's vocabulary are never empty in a live state. Bad schemas never crash.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string_view>

#include "engine/grammar/action_grammar.h"
#include "kernels/cpu/sample.h"
#include "model/text/tokenizer.h"

namespace {

const vlmserve::Tokenizer& Tok() {
  static std::unique_ptr<vlmserve::Tokenizer> tok = [] {
    auto t = vlmserve::Tokenizer::Load(VLMSERVE_SOURCE_DIR
                                       "/tests/fixtures/decoder/pool16_six_layers/tokenizer.json");
    if (!t.ok()) std::abort();
    return std::move(t).value();
  }();
  return *tok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vlmserve;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto schema = ParseActionSchema(text);
  if (!schema.ok()) {
    if (schema.status().code() != StatusCode::kInvalidArgument) std::abort();
    return 0;
  }
  static GrammarRegistry registry(Tok(), static_cast<int64_t>(Tok().size()),
                                  {.max_grammars = 4, .max_mask_bytes = 1 << 20});
  auto grammar = registry.Get(*schema);
  const ActionAutomaton& a = grammar->automaton();
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < size; ++i) h = (h ^ data[i]) * 1099511628211ull;
  GrammarState s = a.Start();
  for (int step = 0; step < 400 && !a.Complete(s); ++step) {
    // Completing from here always works.
    GrammarState c = s;
    if (!a.AdvanceBytes(&c, a.ShortestCompletion(s)) || !a.Complete(c)) std::abort();
    GrammarState f = s;
    if (!a.AdvanceBytes(&f, a.ForcedBytes(s))) std::abort();
    (void)a.Key(s);
    if (step % 16 == 0) {
      auto mask = grammar->Mask(s);
      bool any = false;
      for (uint32_t w : *mask) any |= w != 0;
      if (!any) std::abort();  // byte-fallback tokens cover every byte
    }
    uint8_t allowed[256];
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      GrammarState t = s;
      if (a.Advance(&t, static_cast<uint8_t>(b)) >= 0) allowed[n++] = static_cast<uint8_t>(b);
    }
    if (n == 0) std::abort();  // a live state always has a way on
    h = h * 6364136223846793005ull + 1442695040888963407ull;
    if (a.Advance(&s, allowed[(h >> 33) % static_cast<uint64_t>(n)]) < 0) std::abort();
  }
  return 0;
}
