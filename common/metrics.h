// Metric primitives and the Prometheus text exposition format (version 0.0.4): counters, gauges
// and histograms that any thread may update, and the writers that print them. The engine keeps
// its histograms here; server/metrics_http.cc serves them at /metrics.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace vlmserve {

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);  // ascending; +Inf is implicit
  void Observe(double value);
  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;  // per bound, then +Inf (= count)
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot Get() const;

 private:
  mutable std::mutex mu_;
  std::vector<double> bounds_;
  std::vector<uint64_t> buckets_;  // per bound, then +Inf (not cumulative)
  double sum_ = 0;
};

// Exponential bounds: start, start·factor, ... (n of them).
std::vector<double> ExponentialBounds(double start, double factor, int n);

// Writers for the text format. `labels` is "" or `key="value",...` (values already escaped).
void WriteHeader(std::string* out, const std::string& name, const char* type,
                 const std::string& help);
void WriteSample(std::string* out, const std::string& name, const std::string& labels,
                 double value);
void WriteHistogram(std::string* out, const std::string& name, const std::string& labels,
                    const Histogram::Snapshot& h);
// A label value escaped as the format requires (backslash, quote, newline).
std::string EscapeLabelValue(const std::string& v);

}  // namespace vlmserve
