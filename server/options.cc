// Start-up description of the server's settings (see options.h).
#include "server/options.h"

#include <sstream>

namespace vlmserve {

std::string DescribeOptions(const ServerOptions& o) {
  std::ostringstream s;
  s << "model=" << (o.model_dir.empty() ? "<built-in>" : o.model_dir)
    << " adapter=" << (o.adapter_dir.empty() ? "none" : o.adapter_dir) << " device=" << o.device
    << " listen=" << o.listen << ":" << o.port << " reflection=" << (o.reflection ? "on" : "off")
    << " metrics_port="
    << (o.metrics_port < 0 ? std::string("off") : std::to_string(o.metrics_port))
    << " max_message_bytes=" << o.max_message_bytes << " max_frames=" << o.max_frames
    << " max_prompt_bytes=" << o.max_prompt_bytes
    << " max_system_prompt_bytes=" << o.max_system_prompt_bytes
    << " max_new_tokens_cap=" << o.max_new_tokens_cap
    << " default_max_new_tokens=" << o.default_max_new_tokens << " max_context_tokens="
    << (o.max_context_tokens ? std::to_string(o.max_context_tokens) : "model")
    << " max_image_side=" << o.image.max_side << " max_image_pixels=" << o.image.max_pixels
    << " max_image_bytes=" << o.image.max_encoded_bytes
    << " max_jpeg_scans=" << o.image.max_jpeg_scans << " max_queue=" << o.max_queue
    << " max_queued_bytes=" << o.max_queued_bytes
    << " kv_cache_tokens=" << (o.kv_cache_tokens ? std::to_string(o.kv_cache_tokens) : "auto")
    << " kv_cache_bytes=" << (o.kv_cache_bytes ? std::to_string(o.kv_cache_bytes) : "auto")
    << " gpu_memory_fraction=" << o.gpu_memory_fraction << " prefill_chunk_tokens="
    << (o.prefill_chunk_tokens ? std::to_string(o.prefill_chunk_tokens) : "budget")
    << " max_running=" << o.max_running << " step_token_budget=" << o.step_token_budget
    << " max_images_per_batch=" << o.max_images_per_batch
    << " preprocess_threads=" << o.preprocess_threads
    << " cpu_threads=" << (o.cpu_threads ? std::to_string(o.cpu_threads) : "auto")
    << " prefix_cache=" << (o.prefix_cache ? "on" : "off")
    << " jump_forward=" << (o.jump_forward ? "on" : "off")
    << " max_action_schema_bytes=" << o.max_action_schema_bytes
    << " grammar_cache=" << o.grammar_cache << " grammar_mask_bytes=" << o.grammar_mask_bytes
    << " stream_write_timeout_ms=" << o.stream_write_timeout.count()
    << " max_streams_per_connection=" << o.max_streams_per_connection
    << " keepalive_time_ms=" << o.keepalive_time.count()
    << " keepalive_timeout_ms=" << o.keepalive_timeout.count()
    << " min_client_ping_interval_ms=" << o.min_client_ping_interval.count()
    << " max_connection_idle_ms=" << o.max_connection_idle.count()
    << " max_connection_age_ms=" << o.max_connection_age.count()
    << " max_connection_age_grace_ms=" << o.max_connection_age_grace.count()
    << " drain_timeout_ms=" << o.drain_timeout.count() << " tls="
    << (o.tls_cert.empty()        ? "off"
        : o.tls_client_ca.empty() ? "on"
                                  : "mtls")
    << " api_keys=" << (o.api_key_file.empty() ? "off" : "on")
    << " public_model_info=" << (o.public_model_info ? "on" : "off")
    << " public_reflection=" << (o.public_reflection ? "on" : "off")
    << " health_port=" << (o.health_port < 0 ? std::string("off") : std::to_string(o.health_port))
    << " max_concurrent_per_client=" << o.max_concurrent_per_client
    << " max_rps_per_client=" << o.max_rps_per_client << " log_format=" << o.log_format;
  if (o.test_token_delay.count() > 0) {
    s << " TEST_TOKEN_DELAY_MS=" << o.test_token_delay.count()
      << " (test hook: not for production)";
  }
  return s.str();
}

EngineOptions EngineOptionsFor(const ServerOptions& o) {
  EngineOptions eo;
  eo.adapter_dir = o.adapter_dir;
  eo.image_limits = o.image;
  eo.prompt_limits.max_text_bytes = o.max_prompt_bytes + o.max_system_prompt_bytes;
  eo.max_queue = o.max_queue;
  eo.max_queued_bytes = o.max_queued_bytes;
  eo.max_context_tokens = o.max_context_tokens;
  eo.kv_cache_tokens = o.kv_cache_tokens;
  eo.kv_cache_bytes = o.kv_cache_bytes;
  eo.gpu_memory_fraction = o.gpu_memory_fraction;
  eo.prefill_chunk_tokens = o.prefill_chunk_tokens;
  eo.max_running = o.max_running;
  eo.step_token_budget = o.step_token_budget;
  eo.max_images_per_batch = o.max_images_per_batch;
  eo.preprocess_threads = o.preprocess_threads;
  eo.prefix_cache = o.prefix_cache;
  eo.jump_forward = o.jump_forward;
  eo.grammar.max_grammars = o.grammar_cache;
  eo.grammar.max_mask_bytes = o.grammar_mask_bytes;
  eo.test_token_delay = o.test_token_delay;
  return eo;
}

}  // namespace vlmserve
