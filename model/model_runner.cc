// Step validation shared by every runner (see model_runner.h).
#include "model/model_runner.h"

#include "kernels/kv_layout.h"

namespace vlmserve {

Status ValidateStepRow(const StepRow& r, const Gemma3Config& config, const KvPoolSizes& pools,
                       bool has_full, bool has_sliding) {
  const std::string what = "step row of sequence " + std::to_string(r.sequence);
  const int64_t n = static_cast<int64_t>(r.tokens.size());
  const Gemma3TextConfig& t = config.text;
  if (n == 0) return InvalidArgumentError(what + ": no tokens");
  if (r.start < 0 || r.start + n > t.max_position_embeddings) {
    return OutOfRangeError(what + ": positions " + std::to_string(r.start) + ".." +
                           std::to_string(r.start + n - 1) + " exceed max_position_embeddings " +
                           std::to_string(t.max_position_embeddings));
  }
  if (!r.token_types.empty() && static_cast<int64_t>(r.token_types.size()) != n) {
    return InvalidArgumentError(what + ": " + std::to_string(r.token_types.size()) +
                                " token types for " + std::to_string(n) + " tokens");
  }
  // Image soft-token runs: each whole (mm_tokens_per_image long: a chunk never splits an image)
  // and matched by one ImageRef.
  size_t runs = 0;
  for (int64_t i = 0; i < n; ++i) {
    const bool soft = !r.token_types.empty() && r.token_types[static_cast<size_t>(i)] == 1;
    if (!soft) {
      if (r.tokens[static_cast<size_t>(i)] < 0 ||
          r.tokens[static_cast<size_t>(i)] >= t.vocab_size) {
        return InvalidArgumentError(
            what + ": token id " + std::to_string(r.tokens[static_cast<size_t>(i)]) +
            " at position " + std::to_string(r.start + i) + " is outside the vocabulary of " +
            std::to_string(t.vocab_size));
      }
      continue;
    }
    int64_t end = i;
    while (end < n && r.token_types[static_cast<size_t>(end)] == 1) ++end;
    if (end - i != config.mm_tokens_per_image) {
      return InvalidArgumentError(
          what + ": an image's soft tokens at positions " + std::to_string(r.start + i) + ".." +
          std::to_string(r.start + end - 1) + " are " + std::to_string(end - i) + ", not " +
          std::to_string(config.mm_tokens_per_image) +
          " (a prefill chunk must not split an image)");
    }
    ++runs;
    i = end - 1;
  }
  if (runs != r.images.size()) {
    return InvalidArgumentError(what + ": " + std::to_string(runs) + " image runs but " +
                                std::to_string(r.images.size()) + " images");
  }
  // Block tables: every page a position of this row writes, and every page its queries read.
  const int64_t pages = kv::PagesFor(r.start + n);
  auto check_table = [&](std::span<const int32_t> table, int64_t pool, int64_t first_page,
                         const char* kind) -> Status {
    if (static_cast<int64_t>(table.size()) < pages) {
      return InvalidArgumentError(what + ": the " + std::string(kind) + " block table has " +
                                  std::to_string(table.size()) + " pages; positions up to " +
                                  std::to_string(r.start + n - 1) + " need " +
                                  std::to_string(pages));
    }
    for (int64_t p = first_page; p < pages; ++p) {
      const int32_t page = table[static_cast<size_t>(p)];
      if (page < 0 || page >= pool) {
        return InvalidArgumentError(what + ": " + std::string(kind) + " block table entry " +
                                    std::to_string(p) + " is page " + std::to_string(page) +
                                    ", not one of the pool's " + std::to_string(pool));
      }
    }
    return Status::Ok();
  };
  if (has_full) RETURN_IF_ERROR(check_table(r.full_table, pools.full_pages, 0, "full-layer"));
  if (has_sliding) {
    const int64_t first = kv::LogicalPage(kv::FirstSlidingKey(r.start, t.sliding_window));
    RETURN_IF_ERROR(check_table(r.sliding_table, pools.sliding_pages, first, "sliding-layer"));
  }
  if (r.sample) {
    RETURN_IF_ERROR(ValidateSamplingParams(r.sampling, t.vocab_size).WithPrefix(what));
    if (r.allowed) {
      bool any = false;
      for (int64_t id = 0; id < t.vocab_size && !any; ++id) any = MaskAllows(r.allowed, id);
      if (!any) return InvalidArgumentError(what + ": the allowed-token mask allows no token");
    }
    if (r.top_logprobs < 0 || r.top_logprobs > t.vocab_size) {
      return InvalidArgumentError(what + ": top_logprobs " + std::to_string(r.top_logprobs) +
                                  " is outside [0, vocab_size]");
    }
  }
  return Status::Ok();
}

Status ValidateImageRef(const StepRow& row, const ImageRef& ref, int64_t batch_images) {
  if (batch_images < 0) {
    return InvalidArgumentError("step row of sequence " + std::to_string(row.sequence) +
                                ": no encoded images with handle " + std::to_string(ref.handle));
  }
  if (ref.index < 0 || ref.index >= batch_images) {
    return InvalidArgumentError("step row of sequence " + std::to_string(row.sequence) +
                                ": image " + std::to_string(ref.index) + " of a batch of " +
                                std::to_string(batch_images));
  }
  return Status::Ok();
}

}  // namespace vlmserve
