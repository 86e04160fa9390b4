// PredictRequest validation and conversion (see validate.h).
#include "server/validate.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/utf8.h"

namespace vlmserve {
namespace {

Status CheckText(const std::string& text, const char* field, uint64_t max_bytes) {
  if (text.size() > max_bytes) {
    return InvalidArgumentError(std::string(field) + " is " + std::to_string(text.size()) +
                                " bytes, over the limit of " + std::to_string(max_bytes));
  }
  if (size_t bad = FindInvalidUtf8(text); bad != std::string::npos) {
    return InvalidArgumentError(std::string(field) + " is not valid UTF-8 (at byte " +
                                std::to_string(bad) + ")");
  }
  if (size_t nul = text.find('\0'); nul != std::string::npos) {
    return InvalidArgumentError(std::string(field) + " contains a NUL character (at byte " +
                                std::to_string(nul) + ")");
  }
  return Status::Ok();
}

bool IsIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == ':' || c == '-';
}

StatusOr<ImageBytes> CheckImage(v1::Image& image, const std::string& what, const ImageLimits& lim) {
  ImageBytes f;
  switch (image.source_case()) {
    case v1::Image::kEncoded:
      if (image.encoded().empty()) return InvalidArgumentError(what + ": empty image data");
      if (image.encoded().size() > lim.max_encoded_bytes) {
        return InvalidArgumentError(
            what + ": encoded image is " + std::to_string(image.encoded().size()) +
            " bytes, over the limit of " + std::to_string(lim.max_encoded_bytes));
      }
      f.bytes = std::move(*image.mutable_encoded());
      return f;
    case v1::Image::kRaw: {
      v1::RawImage& raw = *image.mutable_raw();
      RETURN_IF_ERROR(CheckImageSize(raw.width(), raw.height(), lim, what + ": raw image"));
      const uint64_t need =
          uint64_t{raw.width()} * raw.height() * 3;  // ≤ 3 · max_pixels: no overflow
      if (raw.rgb().size() != need) {
        return InvalidArgumentError(what + ": raw RGB data is " + std::to_string(raw.rgb().size()) +
                                    " bytes, but " + std::to_string(raw.width()) + "x" +
                                    std::to_string(raw.height()) + "x3 needs " +
                                    std::to_string(need));
      }
      f.raw = true;
      f.width = raw.width();
      f.height = raw.height();
      f.bytes = std::move(*raw.mutable_rgb());
      return f;
    }
    case v1::Image::SOURCE_NOT_SET:
      break;
  }
  return InvalidArgumentError(what + " has no image data (set encoded or raw)");
}

}  // namespace

Status CheckId(const std::string& id, const char* field, uint64_t max_bytes) {
  if (id.size() > max_bytes || !std::all_of(id.begin(), id.end(), IsIdChar)) {
    return InvalidArgumentError(std::string(field) + " must be 1 to " + std::to_string(max_bytes) +
                                " characters of [A-Za-z0-9._:-] (got " + std::to_string(id.size()) +
                                " bytes)");
  }
  return Status::Ok();
}

StatusOr<ServeRequest> ValidatePredictRequest(v1::PredictRequest& in, const ServerOptions& opt,
                                              const ModelFacts& model,
                                              const std::string& fallback_id) {
  ServeRequest r;
  // Identity first: ids are echoed in trailing metadata and logs, so nothing else may use them
  // before they are known to be short and plain.
  RETURN_IF_ERROR(CheckId(in.request_id(), "request_id", opt.max_request_id_bytes));
  RETURN_IF_ERROR(CheckId(in.session_id(), "session_id", opt.max_request_id_bytes));
  r.request_id = in.request_id().empty() ? fallback_id : in.request_id();
  r.session_id = in.session_id();

  // Images: exactly one of frames (1..max_frames) and grid, for a multimodal model.
  const bool has_frames = in.frames_size() > 0, has_grid = in.has_grid();
  if (has_frames && has_grid) return InvalidArgumentError("give either frames or grid, not both");
  if (model.has_vision && !has_frames && !has_grid) {
    return InvalidArgumentError("the request has no image: give 1 to " +
                                std::to_string(opt.max_frames) + " frames or a grid");
  }
  if (!model.has_vision && (has_frames || has_grid)) {
    return InvalidArgumentError("this model is text-only: send no frames or grid");
  }
  if (in.frames_size() > static_cast<int>(opt.max_frames)) {
    return InvalidArgumentError("at most " + std::to_string(opt.max_frames) + " frames, got " +
                                std::to_string(in.frames_size()));
  }
  for (int i = 0; i < in.frames_size(); ++i) {
    ASSIGN_OR_RETURN(ImageBytes f, CheckImage(*in.mutable_frames(i),
                                              "frames[" + std::to_string(i) + "]", opt.image));
    r.images.frames.push_back(std::move(f));
  }
  // Raw frames declare their sizes: a mismatch is caught here, before anything is decoded.
  for (size_t i = 1; i < r.images.frames.size(); ++i) {
    if (r.images.frames[i].raw && r.images.frames[0].raw &&
        (r.images.frames[i].width != r.images.frames[0].width ||
         r.images.frames[i].height != r.images.frames[0].height)) {
      return InvalidArgumentError("frames[" + std::to_string(i) + "] is " +
                                  std::to_string(r.images.frames[i].width) + "x" +
                                  std::to_string(r.images.frames[i].height) + " but frames[0] is " +
                                  std::to_string(r.images.frames[0].width) + "x" +
                                  std::to_string(r.images.frames[0].height) +
                                  "; all frames of a grid must have the same size");
    }
  }
  if (has_grid) {
    ASSIGN_OR_RETURN(ImageBytes g, CheckImage(*in.mutable_grid(), "grid", opt.image));
    r.images.grid = std::move(g);
  }

  // Text.
  RETURN_IF_ERROR(CheckText(in.prompt(), "prompt", opt.max_prompt_bytes));
  RETURN_IF_ERROR(CheckText(in.system_prompt(), "system_prompt", opt.max_system_prompt_bytes));
  r.prompt = std::move(*in.mutable_prompt());
  r.system_prompt = std::move(*in.mutable_system_prompt());

  // Generation options: unset fields take the defaults.
  const v1::GenerationOptions& o = in.options();
  r.max_new_tokens = static_cast<int32_t>(opt.default_max_new_tokens);
  if (o.has_max_new_tokens()) {
    if (o.max_new_tokens() < 1 || o.max_new_tokens() > opt.max_new_tokens_cap) {
      return InvalidArgumentError("options.max_new_tokens must be between 1 and " +
                                  std::to_string(opt.max_new_tokens_cap) + ", got " +
                                  std::to_string(o.max_new_tokens()));
    }
    r.max_new_tokens = static_cast<int32_t>(o.max_new_tokens());
  }
  if (o.has_temperature()) {
    if (!std::isfinite(o.temperature()) || o.temperature() < 0) {
      return InvalidArgumentError("options.temperature must be a finite number ≥ 0, got " +
                                  std::to_string(o.temperature()));
    }
    r.sampling.temperature = o.temperature();
  }
  if (o.has_top_p()) {
    if (!std::isfinite(o.top_p()) || o.top_p() <= 0 || o.top_p() > 1) {
      return InvalidArgumentError("options.top_p must be in (0, 1], got " +
                                  std::to_string(o.top_p()));
    }
    r.sampling.top_p = o.top_p();
  }
  if (o.has_top_k()) {
    if (o.top_k() > model.vocab_size) {
      return InvalidArgumentError("options.top_k must be at most the vocabulary size " +
                                  std::to_string(model.vocab_size) + ", got " +
                                  std::to_string(o.top_k()));
    }
    r.sampling.top_k = static_cast<int32_t>(o.top_k());
  }
  if (o.has_seed()) r.sampling.seed = o.seed();
  switch (o.output_mode()) {
    case v1::OUTPUT_MODE_UNSPECIFIED:
    case v1::OUTPUT_MODE_ACTION_JSON:
      r.output_mode = OutputMode::kAction;
      break;
    case v1::OUTPUT_MODE_TEXT:
      r.output_mode = OutputMode::kText;
      break;
    default:
      return InvalidArgumentError("options.output_mode " +
                                  std::to_string(static_cast<int>(o.output_mode())) +
                                  " is not a known output mode");
  }
  // The action options; the schema itself is compiled (and refused) by the engine.
  if (r.output_mode == OutputMode::kText &&
      (o.allowed_buttons_size() > 0 || !o.action_schema().empty())) {
    return InvalidArgumentError(std::string("options.") +
                                (o.allowed_buttons_size() > 0 ? "allowed_buttons" : "action_schema") +
                                " needs OUTPUT_MODE_ACTION_JSON (or unset), not OUTPUT_MODE_TEXT");
  }
  if (o.allowed_buttons_size() > 0 && !o.action_schema().empty()) {
    return InvalidArgumentError(
        "options.allowed_buttons narrows the default action schema; it cannot be used with "
        "options.action_schema");
  }
  if (o.allowed_buttons_size() > 64) {
    return InvalidArgumentError("options.allowed_buttons has " +
                                std::to_string(o.allowed_buttons_size()) + " entries; at most 64");
  }
  for (const std::string& b : o.allowed_buttons()) r.allowed_buttons.push_back(b.substr(0, 64));
  if (o.action_schema().size() > opt.max_action_schema_bytes) {
    return InvalidArgumentError("options.action_schema is " +
                                std::to_string(o.action_schema().size()) +
                                " bytes, over the limit of " +
                                std::to_string(opt.max_action_schema_bytes));
  }
  r.action_schema = o.action_schema();
  if (o.logprobs() > kMaxLogprobs) {
    return InvalidArgumentError("options.logprobs must be at most " + std::to_string(kMaxLogprobs) +
                                ", got " + std::to_string(o.logprobs()));
  }
  r.logprobs = static_cast<int32_t>(o.logprobs());
  if (o.pan_and_scan() && !model.has_vision) {
    return InvalidArgumentError("options.pan_and_scan needs a multimodal model");
  }
  r.pan_and_scan = o.pan_and_scan();
  if (o.latest_frame_wins() && r.session_id.empty()) {
    return InvalidArgumentError("options.latest_frame_wins needs a session_id");
  }
  r.latest_frame_wins = o.latest_frame_wins();
  return r;
}

}  // namespace vlmserve
