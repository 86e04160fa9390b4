// Start-up description of the server's settings (see options.h).
#include "server/options.h"

#include <sstream>

namespace vlmserve {

std::string DescribeOptions(const ServerOptions& o) {
  std::ostringstream s;
  s << "model=" << (o.model_dir.empty() ? "<built-in>" : o.model_dir) << " device=" << o.device
    << " listen=" << o.listen << ":" << o.port << " reflection=" << (o.reflection ? "on" : "off")
    << " max_message_bytes=" << o.max_message_bytes << " max_frames=" << o.max_frames
    << " max_prompt_bytes=" << o.max_prompt_bytes
    << " max_system_prompt_bytes=" << o.max_system_prompt_bytes
    << " max_new_tokens_cap=" << o.max_new_tokens_cap
    << " default_max_new_tokens=" << o.default_max_new_tokens << " max_context_tokens="
    << (o.max_context_tokens ? std::to_string(o.max_context_tokens) : "model")
    << " max_image_side=" << o.image.max_side << " max_image_pixels=" << o.image.max_pixels
    << " max_image_bytes=" << o.image.max_encoded_bytes
    << " max_jpeg_scans=" << o.image.max_jpeg_scans << " max_queue=" << o.max_queue;
  return s.str();
}

}  // namespace vlmserve
