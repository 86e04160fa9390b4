// The scheduler's plan (see scheduler.h).
#include "engine/scheduler.h"

#include <algorithm>
#include <map>
#include <set>

#include "kernels/kv_layout.h"

namespace vlmserve {

int64_t PagesToGrow(int64_t table_pages, int64_t end) {
  return std::max<int64_t>(0, kv::PagesFor(end) - table_pages);
}

int64_t ChunkEnd(int64_t begin, int64_t total, int64_t budget,
                 const std::vector<std::pair<int64_t, int64_t>>& runs) {
  int64_t end = std::min(total, begin + std::max<int64_t>(budget, 0));
  for (const auto& [rb, re] : runs) {
    if (rb < end && end < re) {       // the cut falls inside this image
      end = rb > begin ? rb : begin;  // stop before it (or, if it starts here, wait for budget)
      break;
    }
  }
  return end;
}

SchedulerPlan Schedule(const SchedulerInput& in) {
  const SchedulerConfig& c = in.config;
  SchedulerPlan plan;
  std::vector<const SchedSeq*> by_arrival;
  for (const SchedSeq& s : in.seqs) by_arrival.push_back(&s);
  std::sort(by_arrival.begin(), by_arrival.end(),
            [](const SchedSeq* a, const SchedSeq* b) { return a->arrival < b->arrival; });

  // 1. Drops. The newest latest_frame_wins request of a session supersedes every older one.
  std::map<std::string, const SchedSeq*> newest;
  for (const SchedSeq* s : by_arrival) {
    if (s->latest_frame_wins && !s->session.empty()) newest[s->session] = s;  // later wins
  }
  std::set<uint64_t> gone;  // dropped or preempted this step
  int64_t free_full = in.free_full_pages, free_sliding = in.free_sliding_pages;
  for (const SchedSeq* s : by_arrival) {
    Drop d{s->id};
    if (s->expired) {  // first: a passed deadline also cancels the call, and is the reason
      d.why = Drop::Why::kExpired;
    } else if (s->cancelled) {
      d.why = Drop::Why::kCancelled;
    } else if (auto it = newest.find(s->session);
               !s->session.empty() && it != newest.end() && it->second->arrival > s->arrival) {
      d.why = Drop::Why::kSuperseded;
      d.by = it->second->id;
    } else {
      continue;
    }
    plan.drop.push_back(d);
    gone.insert(s->id);
    if (s->state == SchedSeq::State::kRunning) {  // its pages come back for this step's plan
      free_full += s->full_table_pages;
      free_sliding += s->sliding_live_pages;
    }
  }

  // Running sequences, oldest admission first.
  std::vector<const SchedSeq*> running;
  for (const SchedSeq* s : by_arrival) {
    if (s->state == SchedSeq::State::kRunning && !gone.count(s->id)) running.push_back(s);
  }
  std::sort(running.begin(), running.end(),
            [](const SchedSeq* a, const SchedSeq* b) { return a->admitted < b->admitted; });

  // Pages for a row; when short, preempt the most recently admitted other running sequences, then
  // the sequence itself. Returns whether the row can run.
  const bool has_full = c.full_pool_pages > 0, has_sliding = c.sliding_pool_pages > 0;
  auto fits = [&](const SchedSeq* s, int64_t end) {
    const int64_t nf = has_full ? PagesToGrow(s->full_table_pages, end) : 0;
    const int64_t ns = has_sliding ? PagesToGrow(s->sliding_table_pages, end) : 0;
    return std::pair<int64_t, int64_t>{nf, ns};
  };
  auto preempt = [&](const SchedSeq* v) {
    plan.preempt.push_back(v->id);
    gone.insert(v->id);
    free_full += v->full_table_pages;
    free_sliding += v->sliding_live_pages;
  };
  auto reserve = [&](const SchedSeq* s, int64_t end) {
    auto [nf, ns] = fits(s, end);
    for (auto it = running.rbegin(); (nf > free_full || ns > free_sliding) && it != running.rend();
         ++it) {
      if (*it == s || gone.count((*it)->id)) continue;
      preempt(*it);
    }
    if (nf > free_full || ns > free_sliding) {
      preempt(s);
      return false;
    }
    free_full -= nf;
    free_sliding -= ns;
    return true;
  };

  // 2. Rows: decode rows first, then prefill chunks, under the token budget.
  int64_t budget = c.token_budget;
  std::vector<PlannedRow> decode_rows, prefill_rows;
  for (const SchedSeq* s : running) {
    if (gone.count(s->id) || !s->decoding || budget <= 0) continue;
    const int64_t end = std::min(s->total, s->computed + budget);  // a long forced run may split
    if (end <= s->computed || !reserve(s, end)) continue;
    decode_rows.push_back({s->id, s->computed, end, end == s->total});
    budget -= end - s->computed;
  }
  for (const SchedSeq* s : running) {
    if (gone.count(s->id) || s->decoding || budget <= 0) continue;
    if (s->images > 0 && !s->vision_done) continue;  // its vision comes first
    const int64_t end = ChunkEnd(s->computed, s->total, budget, s->image_runs);
    if (end <= s->computed || !reserve(s, end)) continue;
    prefill_rows.push_back({s->id, s->computed, end, end == s->total});
    budget -= end - s->computed;
  }
  // Rows planned before a later preemption of their own sequence are dropped.
  for (const auto* rows : {&decode_rows, &prefill_rows}) {
    for (const PlannedRow& r : *rows) {
      if (!gone.count(r.id)) plan.rows.push_back(r);
    }
  }

  // 3. Admission, FIFO by arrival.
  int64_t live = 0;
  for (const SchedSeq* s : running) live += !gone.count(s->id);
  std::vector<const SchedSeq*> admitted;
  for (const SchedSeq* s : by_arrival) {
    if (s->state != SchedSeq::State::kWaiting || gone.count(s->id)) continue;
    if (live >= c.max_running) break;
    const int64_t pages = std::max<int64_t>(0, kv::PagesFor(s->total) - s->prefix_pages);
    if ((has_full && pages > free_full) || (has_sliding && pages > free_sliding)) break;
    if (has_full) free_full -= pages;
    if (has_sliding) free_sliding -= pages;
    plan.admit.push_back(s->id);
    admitted.push_back(s);
    ++live;
  }
  // A newly admitted text-only sequence starts its prefill in this step (its pages are reserved).
  for (const SchedSeq* s : admitted) {
    if (s->images > 0 || budget <= 0) continue;
    const int64_t end = ChunkEnd(s->computed, s->total, budget, s->image_runs);
    if (end <= s->computed) continue;
    plan.rows.push_back({s->id, s->computed, end, end == s->total});
    budget -= end - s->computed;
  }

  // 4. One vision batch: running and newly admitted sequences whose images are not encoded.
  int64_t images = 0;
  auto consider = [&](const SchedSeq* s) {
    if (s->images == 0 || (s->state == SchedSeq::State::kRunning && s->vision_done)) return;
    if (!plan.vision.empty() && images + s->images > c.max_images_per_batch) return;
    plan.vision.push_back(s->id);
    images += s->images;
  };
  for (const SchedSeq* s : running) {
    if (!gone.count(s->id)) consider(s);
  }
  for (const SchedSeq* s : admitted) consider(s);
  return plan;
}

}  // namespace vlmserve
