// Schedule: the iteration-level scheduler as a pure function of the engine's state — the same
// input always gives the same plan, so every decision is table-tested (tests/unit/scheduler_test).
//
// One plan per engine step, decided in this order:
//   1. drop   requests that must end now: cancelled, past their deadline, or superseded by a newer
//             request of the same session that asked for latest_frame_wins. Queued ones never
//             start; running ones stop at this step boundary.
//   2. rows   running sequences, oldest admission first: decode rows (their one pending token)
//             first, then prefill chunks, under the per-step token budget; a chunk never splits an
//             image's soft tokens (an image that does not fit the budget left waits a step). A row
//             that needs KV pages when none are free preempts the most recently admitted running
//             sequence (recompute: its pages are freed, it waits again at its arrival place and is
//             prefilled anew — prompt and generated tokens — with the same result).
//   3. admit  waiting sequences in arrival order (FIFO: a later one never overtakes one that does
//             not fit, so nothing starves), while the running-row cap and the free KV pages allow
//             the whole prompt (less what the prefix cache would share).
//   4. vision admitted sequences whose images are not encoded yet, oldest first, in one batch of at
//             most `max_images_per_batch` images (a sequence with more images than that goes
//             alone). A sequence's prefill starts in the step after its images are encoded.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace vlmserve {

struct SchedulerConfig {
  int64_t token_budget = 512;        // tokens per step (decode rows count one each); ≥ 1 image
  int64_t max_images_per_batch = 8;  // images per vision batch
  int64_t max_running = 64;          // sequences admitted at once (rows per step)
  int64_t full_pool_pages = 0, sliding_pool_pages = 0;  // the KV pools (0: no such layers)
  int64_t sliding_window = 0;
};

struct SchedSeq {
  uint64_t id = 0;
  uint64_t arrival = 0;  // order of arrival; smaller = older
  enum class State { kPreparing, kWaiting, kRunning } state = State::kWaiting;
  bool cancelled = false, expired = false;
  std::string session;  // "" = none
  bool latest_frame_wins = false;
  uint64_t admitted = 0;  // order of the last admission (running only)
  bool decoding = false;  // running and sampling: its next row holds generated tokens
  // Tokens: [0, total) known (prompt, then generated); [0, computed) in the KV cache. The next row
  // covers [computed, end) and samples when end == total.
  int64_t computed = 0, total = 0;
  std::vector<std::pair<int64_t, int64_t>>
      image_runs;            // soft-token runs [begin, end) in the prompt
  int64_t images = 0;        // images the prompt has (vision input)
  bool vision_done = false;  // its images are encoded (running only; false again if preempted)
  // KV pages it holds now: table lengths (released sliding entries included), for what a row needs.
  int64_t full_table_pages = 0, sliding_table_pages = 0;
  int64_t sliding_live_pages = 0;  // sliding pages not yet released (what dropping it frees)
  int64_t prefix_pages = 0;        // waiting: pages the prefix cache would share at admission
};

struct SchedulerInput {
  SchedulerConfig config;
  std::vector<SchedSeq> seqs;  // any order
  int64_t free_full_pages = 0, free_sliding_pages = 0;
};

struct PlannedRow {
  uint64_t id = 0;
  int64_t begin = 0, end = 0;  // tokens [begin, end) of the sequence
  bool sample = false;         // end == total
};

struct Drop {
  uint64_t id = 0;
  enum class Why { kCancelled, kExpired, kSuperseded } why = Why::kCancelled;
  uint64_t by = 0;  // kSuperseded: the newer request's id
};

struct SchedulerPlan {
  std::vector<Drop> drop;
  std::vector<uint64_t> preempt;  // running → waiting, in this order (pages freed first)
  std::vector<uint64_t> admit;    // waiting → running, in this order
  std::vector<uint64_t> vision;   // one EncodeImages batch, in this order
  std::vector<PlannedRow> rows;   // one Step, in this order
  bool idle() const {
    return drop.empty() && preempt.empty() && admit.empty() && vision.empty() && rows.empty();
  }
};

SchedulerPlan Schedule(const SchedulerInput& input);

// Pages a sequence needs beyond its tables to hold positions [0, end) (full and sliding pools).
int64_t PagesToGrow(int64_t table_pages, int64_t end);

// The end of the next chunk from `begin` under `budget` tokens that does not split an image run;
// `begin` when not even the first image fits (it must wait for a fuller budget).
int64_t ChunkEnd(int64_t begin, int64_t total, int64_t budget,
                 const std::vector<std::pair<int64_t, int64_t>>& image_runs);

}  // namespace vlmserve
