// The scheduler is a pure function: each case below is a state and the plan it must give —
// budgets, image spans, admission by pages and the running cap, FIFO without starvation,
// preemption of the most recent admission, deadlines and cancels, sessions, prefix sharing.
#include "engine/scheduler.h"

#include <gtest/gtest.h>

namespace vlmserve {
namespace {

SchedulerConfig Config(int64_t budget = 64, int64_t pages = 100, int64_t max_running = 8) {
  SchedulerConfig c;
  c.token_budget = budget;
  c.max_running = max_running;
  c.max_images_per_batch = 4;
  c.full_pool_pages = pages;
  c.sliding_pool_pages = pages;
  c.sliding_window = 1000;
  return c;
}

SchedSeq Waiting(uint64_t id, int64_t total, int64_t images = 0) {
  SchedSeq s;
  s.id = id;
  s.arrival = id;
  s.state = SchedSeq::State::kWaiting;
  s.total = total;
  s.images = images;
  for (int64_t i = 0; i < images; ++i) s.image_runs.push_back({4 + 20 * i, 4 + 20 * i + 16});
  return s;
}

SchedSeq Running(uint64_t id, int64_t computed, int64_t total, bool decoding) {
  SchedSeq s;
  s.id = id;
  s.arrival = id;
  s.admitted = id;
  s.state = SchedSeq::State::kRunning;
  s.computed = computed;
  s.total = total;
  s.decoding = decoding;
  s.full_table_pages = s.sliding_table_pages = s.sliding_live_pages = (computed + 15) / 16;
  return s;
}

SchedulerInput Input(SchedulerConfig c, std::vector<SchedSeq> seqs, int64_t free_pages) {
  SchedulerInput in;
  in.config = c;
  in.seqs = std::move(seqs);
  in.free_full_pages = in.free_sliding_pages = free_pages;
  return in;
}

std::vector<uint64_t> RowIds(const SchedulerPlan& p) {
  std::vector<uint64_t> ids;
  for (const PlannedRow& r : p.rows) ids.push_back(r.id);
  return ids;
}

TEST(SchedulerTest, DecodeRowsFirstThenPrefillChunksUnderTheBudget) {
  // Three decoding sequences and one prefilling a 100-token prompt, budget 64.
  const SchedulerPlan p = Schedule(Input(Config(64),
                                         {Running(1, 40, 41, true), Running(2, 30, 31, true),
                                          Running(3, 0, 100, false), Running(4, 50, 51, true)},
                                         100));
  EXPECT_EQ(RowIds(p), (std::vector<uint64_t>{1, 2, 4, 3}));
  ASSERT_EQ(p.rows.size(), 4u);
  EXPECT_TRUE(p.rows[0].sample);
  EXPECT_EQ(p.rows[3].begin, 0);
  EXPECT_EQ(p.rows[3].end, 61);  // 64 − 3 decode rows
  EXPECT_FALSE(p.rows[3].sample);
  EXPECT_TRUE(p.preempt.empty() && p.admit.empty() && p.drop.empty());
}

TEST(SchedulerTest, AChunkNeverSplitsAnImage) {
  SchedSeq s = Waiting(1, 60, 1);  // image at [4, 20)
  s.state = SchedSeq::State::kRunning;
  s.admitted = 1;
  s.vision_done = true;
  // Budget 10: the chunk stops before the image.
  SchedulerPlan p = Schedule(Input(Config(10), {s}, 100));
  ASSERT_EQ(p.rows.size(), 1u);
  EXPECT_EQ(p.rows[0].end, 4);
  // From the image's start with 10 tokens left: the 16-token image waits for a fuller budget.
  s.computed = 4;
  p = Schedule(Input(Config(10), {s}, 100));
  EXPECT_TRUE(p.rows.empty());
  // With 20 it goes whole, and the cut after it lands in text.
  p = Schedule(Input(Config(20), {s}, 100));
  ASSERT_EQ(p.rows.size(), 1u);
  EXPECT_EQ(p.rows[0].end, 24);
  EXPECT_EQ(ChunkEnd(0, 60, 100, s.image_runs), 60);
}

TEST(SchedulerTest, VisionBeforePrefillInBatchesCappedByImages) {
  // Admitted with images: encoded in this step (one batch, at most 4 images), prefilled next.
  std::vector<SchedSeq> seqs = {Waiting(1, 80, 2), Waiting(2, 80, 2), Waiting(3, 80, 1)};
  SchedulerPlan p = Schedule(Input(Config(512), seqs, 100));
  EXPECT_EQ(p.admit, (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_EQ(p.vision, (std::vector<uint64_t>{1, 2}));  // 2 + 2 images; 3 waits for the next batch
  EXPECT_TRUE(p.rows.empty());
  // A text-only request admitted now starts its prefill in the same step.
  p = Schedule(Input(Config(512), {Waiting(5, 30)}, 100));
  EXPECT_EQ(p.admit, (std::vector<uint64_t>{5}));
  ASSERT_EQ(p.rows.size(), 1u);
  EXPECT_EQ(p.rows[0].end, 30);
  EXPECT_TRUE(p.rows[0].sample);
}

TEST(SchedulerTest, AdmissionIsFifoByPagesAndTheRunningCap) {
  // 10 free pages: the first needs 4 (64 tokens), the second 7 (100): it does not fit, and the
  // third (2 pages) must not overtake it.
  SchedulerPlan p =
      Schedule(Input(Config(512), {Waiting(1, 64), Waiting(2, 100), Waiting(3, 20)}, 10));
  EXPECT_EQ(p.admit, (std::vector<uint64_t>{1}));
  // The running cap.
  p = Schedule(
      Input(Config(512, 100, 2), {Running(1, 10, 11, true), Waiting(2, 20), Waiting(3, 20)}, 100));
  EXPECT_EQ(p.admit, (std::vector<uint64_t>{2}));
  // Pages the prefix cache would share are not needed again.
  SchedSeq w = Waiting(4, 100);
  p = Schedule(Input(Config(512), {w}, 5));
  EXPECT_TRUE(p.admit.empty());
  w.prefix_pages = 3;
  p = Schedule(Input(Config(512), {w}, 5));
  EXPECT_EQ(p.admit, (std::vector<uint64_t>{4}));
}

TEST(SchedulerTest, NoPagesPreemptsTheMostRecentAdmission) {
  // Two decoding sequences each at a page boundary (each needs a new page), none free: the later
  // admission (2) is preempted and its pages give 1 what it needs.
  SchedulerPlan p =
      Schedule(Input(Config(64), {Running(1, 32, 33, true), Running(2, 32, 33, true)}, 0));
  EXPECT_EQ(p.preempt, (std::vector<uint64_t>{2}));
  EXPECT_EQ(RowIds(p), (std::vector<uint64_t>{1}));
  // The preempted sequence is not admitted again in the same step.
  EXPECT_TRUE(p.admit.empty());
  // Alone and without a page, a sequence preempts itself (it will be recomputed).
  p = Schedule(Input(Config(64), {Running(1, 32, 33, true)}, 0));
  EXPECT_EQ(p.preempt, (std::vector<uint64_t>{1}));
  EXPECT_TRUE(p.rows.empty());
}

TEST(SchedulerTest, DeadlinesCancelsAndSessions) {
  SchedSeq expired = Waiting(1, 20);
  expired.expired = true;
  expired.cancelled = true;  // both: the deadline is the reason
  SchedSeq cancelled = Running(2, 10, 11, true);
  cancelled.cancelled = true;
  SchedSeq old_frame = Running(3, 10, 11, true);
  old_frame.session = "agent-1";
  SchedSeq queued_frame = Waiting(4, 20);
  queued_frame.session = "agent-1";
  SchedSeq newest = Waiting(5, 20);
  newest.session = "agent-1";
  newest.latest_frame_wins = true;
  SchedSeq other_session = Running(6, 10, 11, true);
  other_session.session = "agent-2";
  const SchedulerPlan p = Schedule(Input(
      Config(512), {expired, cancelled, old_frame, queued_frame, newest, other_session}, 100));
  ASSERT_EQ(p.drop.size(), 4u);
  EXPECT_EQ(p.drop[0].id, 1u);
  EXPECT_EQ(p.drop[0].why, Drop::Why::kExpired);
  EXPECT_EQ(p.drop[1].why, Drop::Why::kCancelled);
  EXPECT_EQ(p.drop[2].id, 3u);
  EXPECT_EQ(p.drop[2].why, Drop::Why::kSuperseded);
  EXPECT_EQ(p.drop[2].by, 5u);
  EXPECT_EQ(p.drop[3].id, 4u);
  EXPECT_EQ(RowIds(p), (std::vector<uint64_t>{6, 5}));  // the other session runs; 5 starts
  EXPECT_EQ(p.admit, (std::vector<uint64_t>{5}));
}

TEST(SchedulerTest, NothingStarves) {
  // A long prompt arriving between short ones is prefilled chunk by chunk while the short ones
  // decode; every sequence makes progress in every step.
  std::vector<SchedSeq> seqs = {Running(1, 20, 21, true), Running(2, 0, 1000, false),
                                Running(3, 20, 21, true)};
  for (int step = 0; step < 20; ++step) {
    const SchedulerPlan p = Schedule(Input(Config(128), seqs, 1000));
    ASSERT_EQ(p.rows.size(), 3u) << step;
    for (const PlannedRow& r : p.rows) {
      for (SchedSeq& s : seqs) {
        if (s.id != r.id) continue;
        s.computed = r.end;
        if (r.sample) ++s.total;
        s.full_table_pages = s.sliding_table_pages = s.sliding_live_pages = (r.end + 15) / 16;
      }
    }
  }
  EXPECT_GE(seqs[1].computed, 1000);  // the whole prompt in ⌈1000 / 126⌉ = 8 of the 20 steps
  EXPECT_EQ(seqs[0].total, 21 + 20);
}

TEST(SchedulerTest, IdleWhenNothingCanHappen) {
  EXPECT_TRUE(Schedule(Input(Config(), {}, 10)).idle());
  SchedSeq preparing = Waiting(1, 10);
  preparing.state = SchedSeq::State::kPreparing;
  EXPECT_TRUE(Schedule(Input(Config(), {preparing}, 10)).idle());
}

}  // namespace
}  // namespace vlmserve
