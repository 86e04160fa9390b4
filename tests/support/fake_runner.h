// FakeModelRunner: a ModelRunner for transport, queue and cancellation tests — never for serving
// or fidelity tests. It has a real model's config (so prompts and limits behave), returns zero soft
// tokens, and produces a fixed token sequence (first_token, first_token + 1, …, cycling through
// `cycle` ids) with an optional delay per model call, counting what it was asked to do; it can be
// told to throw once (exception safety tests).
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <stdexcept>
#include <thread>

#include "model/model_runner.h"

namespace vlmserve::testing {

class FakeModelRunner : public ModelRunner {
 public:
  FakeModelRunner(Gemma3Config config, std::chrono::milliseconds delay, int32_t first_token = 300,
                  int32_t cycle = 5)
      : config_(std::move(config)), delay_(delay), first_(first_token), cycle_(cycle) {}

  const Gemma3Config& config() const override { return config_; }
  const char* device() const override { return "fake"; }
  StatusOr<std::vector<float>> EncodeImages(std::span<const float>, int64_t n) override {
    return std::vector<float>(
        static_cast<size_t>(n * config_.mm_tokens_per_image * config_.text.hidden_size), 0.f);
  }
  StatusOr<std::vector<std::vector<float>>> Prefill(
      std::span<const PrefillRequest> batch) override {
    std::vector<std::vector<float>> out;
    for (const PrefillRequest& r : batch) {
      steps_[r.id] = 0;
      out.push_back(Logits(r.id));
    }
    ++calls;
    ++prefills;
    std::this_thread::sleep_for(delay_);
    return out;
  }
  StatusOr<std::vector<std::vector<float>>> Extend(std::span<const ExtendRequest> batch) override {
    if (throw_next.exchange(false)) throw std::runtime_error("fake runner: injected failure");
    std::vector<std::vector<float>> out;
    for (const ExtendRequest& r : batch) {
      if (!steps_.count(r.id)) return NotFoundError("no sequence " + std::to_string(r.id));
      steps_[r.id] += static_cast<int64_t>(r.ids.size());
      out.push_back(Logits(r.id));
    }
    ++calls;
    std::this_thread::sleep_for(delay_);
    return out;
  }
  void Release(SequenceId id) override {
    steps_.erase(id);
    ++releases;
  }
  size_t live_sequences() const override { return steps_.size(); }

  std::atomic<int> calls{0}, releases{0}, prefills{0};
  std::atomic<bool> throw_next{false};  // the next Extend/Decode throws (a bug in a runner)

 private:
  std::vector<float> Logits(SequenceId id) {
    std::vector<float> l(static_cast<size_t>(config_.text.vocab_size), 0.f);
    const int64_t token = first_ + steps_[id] % cycle_;
    if (token < 0 || token >= config_.text.vocab_size) {
      throw std::out_of_range("fake runner: token " + std::to_string(token) + " is not an id");
    }
    l[static_cast<size_t>(token)] = 10.f;
    return l;
  }
  Gemma3Config config_;
  std::chrono::milliseconds delay_;
  int32_t first_, cycle_;
  std::map<SequenceId, int64_t> steps_;
};

}  // namespace vlmserve::testing
