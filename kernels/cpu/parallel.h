// ParallelFor: the CPU ops' one way to use more than one core. A process-wide pool of persistent
// worker threads (hardware threads − 1; VLMSERVE_CPU_THREADS=N overrides, 1 turns it off) and the
// calling thread claim contiguous ranges of [0, items) until every item is done.
//
// Rules that keep results exact and the server safe:
// - Every item must compute the same bits whichever range it lands in (each op's items are
//   independent rows, heads or images), so outputs never depend on the thread count.
// - Small problems run inline: `cost_per_item × items` (in multiply-adds, roughly) below
//   kParallelMinWork is not worth waking a thread (a wake-up costs ~10–50 µs).
// - One parallel region at a time: a call made while the pool is busy (from inside a range, or
//   from a second engine thread) runs inline instead of waiting, so nesting never deadlocks.
// - A forked child (no workers there) runs everything inline.
#pragma once

#include <cstdint>
#include <functional>

namespace vlmserve {

// ~1 M multiply-adds ≈ 0.1–0.3 ms of one core: well above the cost of waking a worker.
inline constexpr int64_t kParallelMinWork = int64_t{1} << 20;

// Calls fn(begin, end) over disjoint ranges covering [0, items); returns when all are done.
void ParallelFor(int64_t items, int64_t cost_per_item,
                 const std::function<void(int64_t begin, int64_t end)>& fn);

// Threads a parallel region may use (1 = inline only): SetCpuThreads' value if it was called,
// else VLMSERVE_CPU_THREADS, else the hardware's. The pool starts on first use.
int CpuThreads();

// Fixes the pool's size before its first use (n ≥ 1; 0 = the default above), e.g. from the
// server's --cpu-threads. False if the pool already runs with a different size.
bool SetCpuThreads(int n);

}  // namespace vlmserve
