// Metric primitives and the text format (see metrics.h).
#include "common/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace vlmserve {

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), buckets_(bounds_.size() + 1, 0) {}

void Histogram::Observe(double value) {
  const size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), value) -
                                       bounds_.begin());
  std::lock_guard<std::mutex> lock(mu_);
  ++buckets_[i];
  sum_ += value;
}

Histogram::Snapshot Histogram::Get() const {
  std::lock_guard<std::mutex> lock(mu_);
  Snapshot s;
  s.bounds = bounds_;
  uint64_t acc = 0;
  for (uint64_t b : buckets_) s.cumulative.push_back(acc += b);
  s.sum = sum_;
  s.count = acc;
  return s;
}

std::vector<double> ExponentialBounds(double start, double factor, int n) {
  std::vector<double> b;
  for (int i = 0; i < n; ++i) b.push_back(start * std::pow(factor, i));
  return b;
}

namespace {

std::string Number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

}  // namespace

std::string EscapeLabelValue(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

void WriteHeader(std::string* out, const std::string& name, const char* type,
                 const std::string& help) {
  *out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

void WriteSample(std::string* out, const std::string& name, const std::string& labels,
                 double value) {
  *out += name + (labels.empty() ? "" : "{" + labels + "}") + " " + Number(value) + "\n";
}

void WriteHistogram(std::string* out, const std::string& name, const std::string& labels,
                    const Histogram::Snapshot& h) {
  const std::string sep = labels.empty() ? "" : labels + ",";
  for (size_t i = 0; i < h.bounds.size(); ++i) {
    WriteSample(out, name + "_bucket", sep + "le=\"" + Number(h.bounds[i]) + "\"",
                static_cast<double>(h.cumulative[i]));
  }
  WriteSample(out, name + "_bucket", sep + "le=\"+Inf\"", static_cast<double>(h.count));
  WriteSample(out, name + "_sum", labels, h.sum);
  WriteSample(out, name + "_count", labels, static_cast<double>(h.count));
}

}  // namespace vlmserve
