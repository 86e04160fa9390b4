// Metrics rendering (see server_metrics.h).
#include "server/server_metrics.h"

#include "common/metrics.h"
#include "server/status_map.h"

namespace vlmserve {

std::string RenderMetrics(const VlmService& service, const ServeEngine* engine) {
  std::string out;
  const ServiceCounters& c = service.counters();
  WriteHeader(&out, "vlmserve_requests_total", "counter",
              "Predict calls that ended, by gRPC status code.");
  for (int code = 0; code < ServiceCounters::kCodes; ++code) {
    WriteSample(&out, "vlmserve_requests_total",
                std::string("code=\"") + GrpcCodeName(static_cast<grpc::StatusCode>(code)) + "\"",
                static_cast<double>(c.ended[code].load()));
  }
  WriteHeader(&out, "vlmserve_unparseable_requests_total", "counter",
              "Requests that were not a valid PredictRequest (INVALID_ARGUMENT).");
  WriteSample(&out, "vlmserve_unparseable_requests_total", "",
              static_cast<double>(c.unparseable.load()));
  WriteHeader(&out, "vlmserve_stream_write_timeouts_total", "counter",
              "Calls cut because the client read nothing for --stream-write-timeout.");
  WriteSample(&out, "vlmserve_stream_write_timeouts_total", "",
              static_cast<double>(c.write_timeouts.load()));
  WriteHeader(&out, "vlmserve_live_calls", "gauge", "Predict calls in progress.");
  WriteSample(&out, "vlmserve_live_calls", "", static_cast<double>(service.live_calls()));
  if (!engine) return out;

  const EngineStats s = engine->stats();
  const SchedulerConfig& sc = engine->scheduler_config();
  auto gauge = [&out](const char* name, const char* help, double v) {
    WriteHeader(&out, name, "gauge", help);
    WriteSample(&out, name, "", v);
  };
  auto counter = [&out](const char* name, const char* help, double v) {
    WriteHeader(&out, name, "counter", help);
    WriteSample(&out, name, "", v);
  };
  gauge("vlmserve_queue_depth", "Requests accepted and not yet running (preparing or waiting).",
        static_cast<double>(s.queued));
  gauge("vlmserve_queued_bytes", "Bytes (images + texts) the queued requests hold.",
        static_cast<double>(s.queued_bytes));
  gauge("vlmserve_running_requests", "Requests admitted to the running batch.",
        static_cast<double>(s.running));
  counter("vlmserve_generated_tokens_total", "Tokens generated and streamed.",
          static_cast<double>(s.generated_tokens));
  counter("vlmserve_forced_tokens_total",
          "Generated tokens the action grammar forced (jump-forward), appended without sampling.",
          static_cast<double>(s.forced_tokens));
  counter("vlmserve_sampled_tokens_total", "Generated tokens sampled from the model.",
          static_cast<double>(s.sampled_tokens));
  counter("vlmserve_preemptions_total",
          "Running requests preempted (recomputed later) because the KV cache ran out of pages.",
          static_cast<double>(s.preemptions));
  counter("vlmserve_prefix_cache_hits_total",
          "KV pages (16 tokens each) taken from the prefix cache instead of computed.",
          static_cast<double>(s.kv.prefix_hits));
  counter("vlmserve_engine_steps_total", "Model steps run.", static_cast<double>(s.steps));
  counter("vlmserve_requests_expired_in_queue_total",
          "Requests whose deadline passed before they started (never started).",
          static_cast<double>(s.expired_in_queue));
  counter("vlmserve_requests_superseded_total",
          "Requests cancelled by a newer latest_frame_wins request of their session.",
          static_cast<double>(s.superseded));
  gauge("vlmserve_kv_live_sequences", "Sequences holding KV pages.",
        static_cast<double>(s.kv.live_sequences));
  WriteHeader(&out, "vlmserve_kv_pages_used", "gauge",
              "KV-cache pages in use (sequences and the prefix cache), by pool.");
  WriteSample(&out, "vlmserve_kv_pages_used", "pool=\"full\"",
              static_cast<double>(s.kv.full_pages_used));
  WriteSample(&out, "vlmserve_kv_pages_used", "pool=\"sliding\"",
              static_cast<double>(s.kv.sliding_pages_used));
  // The pools' sizes. Typed counter: the exposition format reserves "_total" for counters (and
  // promtool rejects a gauge named so); it never changes, which a counter may do. The same values
  // are the gauge vlmserve_kv_pages_capacity.
  for (const char* name : {"vlmserve_kv_pages_total", "vlmserve_kv_pages_capacity"}) {
    const bool total = std::string(name) == "vlmserve_kv_pages_total";
    WriteHeader(&out, name, total ? "counter" : "gauge", "KV-cache pages, by pool.");
    WriteSample(&out, name, "pool=\"full\"", static_cast<double>(sc.full_pool_pages));
    WriteSample(&out, name, "pool=\"sliding\"", static_cast<double>(sc.sliding_pool_pages));
  }
  gauge("vlmserve_kv_prefix_cache_pages", "Prefix-cache entries (one page per pool each).",
        static_cast<double>(s.kv.cached_pages));

  const EngineMetrics& m = engine->metrics();
  WriteHeader(&out, "vlmserve_batch_rows", "histogram", "Rows (sequences) per model step.");
  WriteHistogram(&out, "vlmserve_batch_rows", "", m.batch_rows.Get());
  WriteHeader(&out, "vlmserve_time_to_first_token_seconds", "histogram",
              "From a request's arrival to its first generated token.");
  WriteHistogram(&out, "vlmserve_time_to_first_token_seconds", "", m.time_to_first_token.Get());
  WriteHeader(&out, "vlmserve_request_duration_seconds", "histogram",
              "From a request's arrival to its result (successful requests).");
  WriteHistogram(&out, "vlmserve_request_duration_seconds", "", m.request_duration.Get());
  WriteHeader(&out, "vlmserve_phase_seconds", "histogram",
              "Time of a successful request in each phase: queue, preprocess, vision, prefill, "
              "decode.");
  for (int i = 0; i < 5; ++i) {
    WriteHistogram(&out, "vlmserve_phase_seconds",
                   std::string("phase=\"") + EngineMetrics::kPhases[i] + "\"", m.phase[i].Get());
  }
  return out;
}

}  // namespace vlmserve
