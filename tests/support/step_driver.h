// StepDriver: drives a ModelRunner through Step the way the engine does — block tables from a
// KvManager, prefill in chunks that never split an image, one draw counter per sequence — for the
// runner tests that look at logits (the old Prefill/Extend/Decode shape, built on Step).
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <vector>

#include "engine/kv_manager.h"
#include "engine/serve_engine.h"
#include "model/model_runner.h"

namespace vlmserve::testing {

class StepDriver {
 public:
  // `release_window`: free sliding pages behind the window after each step, as the engine does
  // (false keeps them, to prove released pages are never read).
  explicit StepDriver(ModelRunner& runner, bool release_window = true)
      : runner_(runner),
        kv_(runner.kv_pages(), runner.config().text.sliding_window,
            runner.config().text.NumLayersOfType(LayerType::kFullAttention) > 0,
            runner.config().text.NumLayersOfType(LayerType::kSlidingAttention) > 0),
        release_(release_window) {}

  // A row for `tokens` appended to `seq` (tables filled in by Run).
  StepRow Row(SequenceId seq, std::span<const int32_t> tokens, LogitsMode logits) {
    StepRow r;
    r.sequence = seq;
    r.tokens = tokens;
    r.start = kv_.length(seq);
    r.logits = logits;
    r.draw = draws_[seq];
    return r;
  }

  // Runs `rows` as one Step (each row's pages first; sliding pages behind the window after).
  StatusOr<std::vector<StepOutput>> Run(std::vector<StepRow> rows) {
    for (StepRow& r : rows) {
      RETURN_IF_ERROR(kv_.Grow(r.sequence, r.start + static_cast<int64_t>(r.tokens.size())));
    }
    for (StepRow& r : rows) {
      r.full_table = kv_.full_table(r.sequence);
      r.sliding_table = kv_.sliding_table(r.sequence);
    }
    auto out = runner_.Step(rows);
    if (out.ok()) {
      for (const StepRow& r : rows) {
        if (r.sample) ++draws_[r.sequence];
        if (release_) kv_.ReleaseBeforeWindow(r.sequence, r.start + r.tokens.size());
      }
    }
    return out;
  }

  // The whole prompt in chunks of at most `max_chunk` tokens (0 = one); returns the logits of
  // every prompt position [n, vocab] (all_logits) or of the last one.
  StatusOr<std::vector<float>> Prefill(SequenceId seq, std::span<const int32_t> ids,
                                       std::span<const uint8_t> types, ImageHandle images,
                                       int64_t max_chunk, bool all_logits) {
    std::vector<float> logits;
    int64_t image = 0;
    for (const auto& [b, e] : PrefillChunks(types, max_chunk)) {
      StepRow r =
          Row(seq, ids.subspan(b, e - b), all_logits ? LogitsMode::kAll : LogitsMode::kLast);
      r.token_types = types.subspan(b, e - b);
      std::vector<ImageRef> refs;
      for (int64_t i = b; i < e; ++i) {
        if (types[i] == 1 && (i == b || types[i - 1] != 1)) refs.push_back({images, image++});
      }
      r.images = refs;
      r.sample = e == static_cast<int64_t>(ids.size());
      ASSIGN_OR_RETURN(auto out, Run({r}));
      if (all_logits || r.sample) {
        if (!all_logits) logits.clear();
        logits.insert(logits.end(), out[0].logits.begin(), out[0].logits.end());
      }
    }
    return logits;
  }

  // Appends `tokens` to `seq` in one row; logits of every new position or of the last.
  StatusOr<StepOutput> Extend(SequenceId seq, std::span<const int32_t> tokens, bool all_logits) {
    ASSIGN_OR_RETURN(auto out,
                     Run({Row(seq, tokens, all_logits ? LogitsMode::kAll : LogitsMode::kLast)}));
    return std::move(out[0]);
  }

  void Release(SequenceId seq) {
    kv_.Free(seq);
    draws_.erase(seq);
  }
  KvManager& kv() { return kv_; }

 private:
  ModelRunner& runner_;
  KvManager kv_;
  bool release_;
  std::map<SequenceId, uint64_t> draws_;
};

}  // namespace vlmserve::testing
