// What the transport hands the engine and gets back, in native types (protobuf stops in server/):
// a ServeRequest, its ServeResult (text, tokens, finish reason, the parsed action, usage, per-phase
// timings), and the ResponseSink through which the engine streams one request's output.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"
#include "kernels/cpu/sample.h"
#include "model/processor.h"

namespace vlmserve {

// ACTION: exactly one object of the action schema (engine/grammar/), then the turn ends.
enum class OutputMode { kAction, kText };

struct ServeRequest {
  std::string request_id, session_id;
  // Who sent it (an API key's name, or the peer's address): sessions are scoped to it, so one
  // client cannot supersede another's requests with latest_frame_wins.
  std::string client;
  ImageInput images;  // frames composed into the grid, or one image; empty for text-only models
  std::string prompt, system_prompt;
  int32_t max_new_tokens = 64;
  SamplingParams sampling;
  bool pan_and_scan = false;
  OutputMode output_mode = OutputMode::kAction;
  // Action mode: the default schema with only these buttons (empty = all), or a custom schema
  // (JSON text; empty = the default). Not both.
  std::vector<std::string> allowed_buttons;
  std::string action_schema;
  int32_t logprobs = 0;  // alternatives per streamed token (0 = no logprobs)
  // Cancel this session's older queued or running requests: only the newest frames matter.
  bool latest_frame_wins = false;
  std::chrono::steady_clock::time_point received = std::chrono::steady_clock::now();
  // The caller's deadline (gRPC's, converted); max() = none.
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();

  // Bytes this request holds while it waits (images and texts): what admission by bytes counts.
  uint64_t HeldBytes() const {
    return images.bytes() + prompt.size() + system_prompt.size() + action_schema.size();
  }
};

enum class FinishReason { kStop, kLength };  // a stop id or the action's end / max_new_tokens

// An action mode request's action, from the grammar's own parse (never a second parser).
struct ParsedAction {
  std::string button, reasoning, context;  // when the schema has these properties
  std::map<std::string, std::string> fields;  // every property: JSON text, strings unquoted
  float confidence = 0;  // P(first enum property's value) under the mask
  float logprob = 0;     // the sampled tokens' masked logprobs, summed
};

struct ServeTimings {  // microseconds
  int64_t queue_us = 0, preprocess_us = 0, vision_us = 0, prefill_us = 0, decode_us = 0;
  int64_t first_token_us = 0, total_us = 0;
};

struct ServeResult {
  std::string text;
  std::vector<int32_t> tokens;  // generated ids, without the stop id
  FinishReason finish = FinishReason::kLength;
  ParsedAction action;
  int32_t prompt_tokens = 0;
  int32_t images = 0;  // image sequences, pan & scan crops included
  int32_t forced_tokens = 0, sampled_tokens = 0;  // tokens = forced + sampled
  ServeTimings timings;
};

// One streamed token's probabilities (when the request asked for logprobs).
struct TokenLogprob {
  float logprob = 0;  // masked, temperature 1; 0 when forced
  bool forced = false;
  std::vector<std::pair<int32_t, float>> top;  // best first
};

// New output since the previous delta.
struct OutputDelta {
  std::vector<int32_t> ids;
  std::string text;
  std::vector<TokenLogprob> logprobs;  // one per id when asked, else empty
};

// Receives one request's output: zero or more OnDelta, then exactly one OnResult or OnError, all
// on the engine thread (engine/README.md).
class ResponseSink {
 public:
  virtual ~ResponseSink() = default;
  virtual void OnDelta(OutputDelta delta) = 0;
  virtual void OnResult(ServeResult result) = 0;
  virtual void OnError(Status status) = 0;
};

}  // namespace vlmserve
