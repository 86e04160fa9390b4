// The request pipeline (see processor.h).
#include "model/processor.h"

namespace vlmserve {
namespace {

StatusOr<RgbImage> Decode(const ImageBytes& f, const ImageLimits& lim, std::string what) {
  if (!f.name.empty()) what = f.name;
  const auto* p = reinterpret_cast<const uint8_t*>(f.bytes.data());
  if (f.raw) return RawRgbImage(f.width, f.height, {p, f.bytes.size()}, lim, what);
  return DecodeImage({p, f.bytes.size()}, lim, what);
}

}  // namespace

uint64_t ImageInput::bytes() const {
  uint64_t n = grid ? grid->bytes.size() : 0;
  for (const ImageBytes& f : frames) n += f.bytes.size();
  return n;
}

StatusOr<RgbImage> LoadInputImage(const ImageInput& in, const ImageLimits& lim) {
  if (in.grid && !in.frames.empty())
    return InvalidArgumentError("give either frames or grid, not both");
  if (in.grid) return Decode(*in.grid, lim, "grid");
  if (in.frames.empty()) return InvalidArgumentError("no image: give 1 to 4 frames or a grid");
  if (in.frames.size() > 4) {
    return InvalidArgumentError("at most 4 frames, got " + std::to_string(in.frames.size()));
  }
  std::vector<RgbImage> frames;
  for (size_t i = 0; i < in.frames.size(); ++i) {
    ASSIGN_OR_RETURN(RgbImage f, Decode(in.frames[i], lim, "frames[" + std::to_string(i) + "]"));
    frames.push_back(std::move(f));
  }
  return ComposeGrid(frames);
}

StatusOr<PixelValues> Gemma3Processor::PreprocessInput(const ImageInput& input, uint32_t size,
                                                       bool pan_and_scan, const ImageLimits& limits,
                                                       uint32_t* image_width,
                                                       uint32_t* image_height) {
  ASSIGN_OR_RETURN(RgbImage source, LoadInputImage(input, limits));
  if (image_width) *image_width = source.width;
  if (image_height) *image_height = source.height;
  PreprocessOptions po;
  po.size = size;
  po.pan_and_scan = pan_and_scan;
  return PreprocessImage(source, po);
}

StatusOr<Gemma3Processor> Gemma3Processor::Create(const Tokenizer& tokenizer,
                                                  const Gemma3Config& config,
                                                  const ProcessorLimits& limits) {
  ASSIGN_OR_RETURN(PromptBuilder builder,
                   PromptBuilder::Create(tokenizer, config.mm_tokens_per_image, limits.prompt));
  return Gemma3Processor(config, std::move(builder), limits);
}

StatusOr<ModelInputs> Gemma3Processor::Process(const ProcessorInput& in) const {
  ModelInputs out;
  const bool has_image = in.images && !in.images->empty();
  if (has_image) {
    if (!config_.has_vision) return InvalidArgumentError("this model is text-only: send no frames");
    ASSIGN_OR_RETURN(
        PixelValues pv,
        PreprocessInput(*in.images, static_cast<uint32_t>(config_.vision.image_size),
                        in.pan_and_scan, limits_.image, &out.image_width, &out.image_height));
    out.pixel_values = std::move(pv.values);
    out.num_crops = pv.num_crops;
  }
  std::vector<PromptMessage> messages;
  if (!in.system_prompt.empty()) {
    messages.push_back({Role::kSystem, {PromptPart::Text(std::string(in.system_prompt))}});
  }
  PromptMessage user{Role::kUser, {}};
  if (has_image) user.parts.push_back(PromptPart::Image(out.num_crops));
  user.parts.push_back(PromptPart::Text(std::string(in.prompt)));
  messages.push_back(std::move(user));
  ASSIGN_OR_RETURN(out.prompt, builder_.Build(messages));
  // The invariant the model relies on: one pixel image per image sequence of the prompt.
  const size_t per_image = 3 * static_cast<size_t>(config_.vision.image_size) *
                           static_cast<size_t>(config_.vision.image_size);
  const size_t pixel_images = has_image ? out.pixel_values.size() / per_image : 0;
  if (pixel_images != out.prompt.images.size()) {
    return InternalError("the prompt has " + std::to_string(out.prompt.images.size()) +
                         " image sequences but there are " + std::to_string(pixel_images) +
                         " pixel images");
  }
  return out;
}

}  // namespace vlmserve
