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

struct ServeRequest {
  std::string request_id, session_id;
  ImageInput images;  // frames composed into the grid, or one image; empty for text-only models
  std::string prompt, system_prompt;
  int32_t max_new_tokens = 64;
  SamplingParams sampling;
  bool pan_and_scan = false;
  // Cancel this session's older queued or running requests: only the newest frames matter.
  bool latest_frame_wins = false;
  std::chrono::steady_clock::time_point received = std::chrono::steady_clock::now();
  // The caller's deadline (gRPC's, converted); max() = none.
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();

  // Bytes this request holds while it waits (images and texts): what admission by bytes counts.
  uint64_t HeldBytes() const { return images.bytes() + prompt.size() + system_prompt.size(); }
};

enum class FinishReason { kStop, kLength };  // a stop id / max_new_tokens

// The text read as an action when it is a JSON object of strings (best effort until the action
// grammar guarantees it).
struct ParsedAction {
  std::string button, reasoning, context;
  std::map<std::string, std::string> fields;  // any other string members
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
  ServeTimings timings;
};

// Receives one request's output: zero or more OnDelta, then exactly one OnResult or OnError, all
// on the engine thread (engine/README.md).
class ResponseSink {
 public:
  virtual ~ResponseSink() = default;
  virtual void OnDelta(std::vector<int32_t> token_ids, std::string text) = 0;
  virtual void OnResult(ServeResult result) = 0;
  virtual void OnError(Status status) = 0;
};

// Fills `action` from `text` when it is a JSON object; leaves it empty otherwise.
void ParseActionText(const std::string& text, ParsedAction* action);

}  // namespace vlmserve
