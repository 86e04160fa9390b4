// The server's metrics in the Prometheus text format: call outcomes from the service, queue,
// batches, latencies, phases, KV pages and tokens from the engine (null before a model is served).
// Names and meanings: docs/operations.md.
#pragma once

#include <string>

#include "engine/serve_engine.h"
#include "server/service.h"

namespace vlmserve {

std::string RenderMetrics(const VlmService& service, const ServeEngine* engine);

}  // namespace vlmserve
