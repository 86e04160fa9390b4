// FakeModelRunner: a ModelRunner for transport, queue and cancellation tests — never for serving
// or fidelity tests. It has a real model's config (so prompts and limits behave), checks each step
// row as a real runner does (ValidateStepRow: tokens, whole images, block tables), and samples a
// fixed sequence: the token of draw d is first_token + d % cycle. It can sleep per step, counts
// what it was asked to do, and can be told to throw once (exception safety tests).
#pragma once

#include <atomic>
#include <chrono>
#include <set>
#include <stdexcept>
#include <thread>

#include "model/model_runner.h"

namespace vlmserve::testing {

class FakeModelRunner : public ModelRunner {
 public:
  FakeModelRunner(Gemma3Config config, std::chrono::milliseconds delay, int32_t first_token = 300,
                  int32_t cycle = 5, int64_t kv_pages = 1024)
      : config_(std::move(config)),
        delay_(delay),
        first_(first_token),
        cycle_(cycle),
        pools_{kv_pages, kv_pages} {}

  const Gemma3Config& config() const override { return config_; }
  const char* device() const override { return "fake"; }
  KvPoolSizes kv_pages() const override { return pools_; }
  StatusOr<ImageHandle> EncodeImages(std::span<const float>, int64_t n) override {
    if (n < 1) return InvalidArgumentError("no images");
    images_.insert(next_);
    return next_++;
  }
  void ReleaseImages(ImageHandle h) override { images_.erase(h); }
  size_t live_image_batches() const override { return images_.size(); }
  // async_vision_us ≥ 0: behaves like a runner that queues vision (CUDA's second stream) and
  // reports that device time per batch.
  bool EncodesAsync() const override { return async_vision_us.load() >= 0; }
  int64_t ImagesDeviceMicros(ImageHandle h) const override {
    return images_.count(h) ? async_vision_us.load() : -1;
  }
  StatusOr<std::vector<float>> ReadImages(ImageHandle) const override {
    return UnimplementedError("the fake runner computes no soft tokens");
  }

  StatusOr<std::vector<StepOutput>> Step(std::span<const StepRow> rows) override {
    if (throw_next.exchange(false)) throw std::runtime_error("fake runner: injected failure");
    if (broken.load()) return InternalError("fake runner: illegal memory access");
    for (const StepRow& r : rows) {
      RETURN_IF_ERROR(ValidateStepRow(r, config_, pools_, true, true));
    }
    std::vector<StepOutput> out;
    for (const StepRow& r : rows) {
      StepOutput o;
      if (r.sample) {
        const int64_t token = first_ + static_cast<int64_t>(r.draw % static_cast<uint64_t>(cycle_));
        if (token < 0 || token >= config_.text.vocab_size) {
          throw std::out_of_range("fake runner: token " + std::to_string(token) + " is not an id");
        }
        o.token = static_cast<int32_t>(token);
        // With an allowed-token mask (action mode): the first allowed id from there on, so a
        // fake action is still a valid one.
        for (int64_t k = 0; r.allowed && k < config_.text.vocab_size; ++k) {
          const int64_t id = (token + k) % config_.text.vocab_size;
          if (MaskAllows(r.allowed, id)) {
            o.token = static_cast<int32_t>(id);
            break;
          }
        }
      }
      if (r.start == 0) ++prefills;
      out.push_back(std::move(o));
    }
    ++calls;
    std::this_thread::sleep_for(delay_);
    return out;
  }

  Status Health() const override {
    return broken.load() ? InternalError("fake runner: the device is gone") : Status::Ok();
  }

  std::atomic<int> calls{0}, prefills{0};
  std::atomic<bool> throw_next{false};  // the next Step throws (a bug in a runner)
  std::atomic<bool> broken{false};      // Step fails and Health reports the device unusable
  std::atomic<int64_t> async_vision_us{-1};

 private:
  Gemma3Config config_;
  std::chrono::milliseconds delay_;
  int32_t first_, cycle_;
  KvPoolSizes pools_;
  std::set<ImageHandle> images_;
  ImageHandle next_ = 1;
};

}  // namespace vlmserve::testing
