// Gemma3Processor: the one request pipeline, shaped like HF's Gemma3Processor — an image input
// (1–4 frames composed into the 2×2 grid t0 t1 / t2 t3, or one pre-composed image) and the
// messages → token ids, token_type_ids, the pixel values of every image sequence the prompt holds
// (the full image, then its pan & scan crops) and where each one's soft tokens are. The server's
// engine, vlmserve-generate and vlmserve-preprocess (which stops after the pixels) all use it, so
// "the prompt's image sequences are the pixel images, in the same order" holds in one place.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "model/image/image.h"
#include "model/image/preprocess.h"
#include "model/text/prompt.h"
#include "model/text/tokenizer.h"
#include "model/weights/config.h"

namespace vlmserve {

// One image as it arrived: encoded bytes (PNG/JPEG, recognised by content) or raw RGB8.
struct ImageBytes {
  bool raw = false;
  std::string bytes;               // encoded image, or raw RGB8 (width * height * 3)
  uint32_t width = 0, height = 0;  // raw only
  std::string name;                // how errors name it; empty: "grid" or "frames[i]"
};

// A request's images: frames composed into the grid, or one image, or none (text only).
struct ImageInput {
  std::vector<ImageBytes> frames;  // 1-4, oldest first, all of one size
  std::optional<ImageBytes> grid;  // or one pre-composed image
  bool empty() const { return frames.empty() && !grid; }
  uint64_t bytes() const;  // what the images hold in memory
};

// Decodes the frames (errors name "frames[i]") or the grid and composes them: the image the model
// sees. INVALID_ARGUMENT for an empty input, both kinds at once, or more than 4 frames.
StatusOr<RgbImage> LoadInputImage(const ImageInput& input, const ImageLimits& limits);

struct ProcessorLimits {
  ImageLimits image;
  PromptLimits prompt;
};

struct ProcessorInput {
  const ImageInput* images = nullptr;  // null or empty: a text-only prompt
  std::string_view system_prompt;      // folded into the first user turn; empty = none
  std::string_view prompt;             // the user's text
  bool pan_and_scan = false;
};

// Everything the model needs for one request.
struct ModelInputs {
  Prompt prompt;                    // ids, token_type_ids, soft-token runs (in pixel order)
  std::vector<float> pixel_values;  // [prompt.images.size(), 3, S, S]
  int32_t num_crops = 0;            // pan & scan crops of the image (0 without pan & scan)
  uint32_t image_width = 0, image_height = 0;  // the composed image before resizing
};

class Gemma3Processor {
 public:
  // Keeps references to `tokenizer` and `config`, which must outlive the processor.
  static StatusOr<Gemma3Processor> Create(const Tokenizer& tokenizer, const Gemma3Config& config,
                                          const ProcessorLimits& limits = {});

  StatusOr<ModelInputs> Process(const ProcessorInput& input) const;

  // The image half alone (what vlmserve-preprocess writes): decode, compose, resize, normalise.
  static StatusOr<PixelValues> PreprocessInput(const ImageInput& input, uint32_t size,
                                               bool pan_and_scan, const ImageLimits& limits,
                                               uint32_t* image_width = nullptr,
                                               uint32_t* image_height = nullptr);

 private:
  Gemma3Processor(const Gemma3Config& config, PromptBuilder builder, ProcessorLimits limits)
      : config_(config), builder_(std::move(builder)), limits_(limits) {}
  const Gemma3Config& config_;
  PromptBuilder builder_;
  ProcessorLimits limits_;
};

}  // namespace vlmserve
