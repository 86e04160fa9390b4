// The CPU ops' worker pool (see parallel.h).
#include "kernels/cpu/parallel.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/thread_name.h"

namespace vlmserve {
namespace {

using RangeFn = std::function<void(int64_t, int64_t)>;

int ThreadsFromEnvironment() {
  if (const char* env = std::getenv("VLMSERVE_CPU_THREADS"); env && *env) {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    if (end && *end == '\0' && n >= 1) return static_cast<int>(std::min(n, 256L));
  }
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

// Workers 1 … threads−1 wait for a new generation, then claim ranges of `grain_` items from an
// atomic counter with the caller until none are left (uneven items, e.g. a long prefill chunk
// next to one-token decode rows, balance themselves). The caller waits only for the workers that
// joined while the region was open: one that wakes after the caller has claimed the last item
// (a wake-up takes tens of µs on a busy machine) finds the region closed and never touches it,
// so a small region never waits for a wake-up. Shared state is under mu_.
class Pool {
 public:
  explicit Pool(int threads) : threads_(threads), pid_(::getpid()) {
    for (int w = 1; w < threads_; ++w) {
      workers_.emplace_back([this, w] {
        SetThreadName("vlm-cpu-" + std::to_string(w));
        Work(w);
      });
    }
  }

  int threads() const { return threads_; }

  // False (nothing run) when the pool is busy or this is a forked child: the caller runs inline.
  bool TryRun(int64_t items, const RangeFn& fn) {
    if (::getpid() != pid_) return false;
    std::unique_lock<std::mutex> region(region_, std::try_to_lock);
    if (!region.owns_lock()) return false;
    const int helpers = static_cast<int>(std::min<int64_t>(threads_, items)) - 1;
    const int64_t grain = std::max<int64_t>(1, items / (4 * (helpers + 1)));
    {
      std::lock_guard<std::mutex> lock(mu_);
      fn_ = &fn;
      items_ = items;
      grain_ = grain;
      next_.store(0);
      helpers_ = helpers;
      open_ = true;
      active_ = 0;
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    std::exception_ptr mine;
    try {
      Claim(fn, items, grain);
    } catch (...) {
      mine = std::current_exception();
      next_.store(items);  // the others stop claiming
    }
    std::unique_lock<std::mutex> lock(mu_);
    open_ = false;  // late workers stay out; fn lives on our stack: wait for those inside
    done_.wait(lock, [this] { return active_ == 0; });
    fn_ = nullptr;
    if (!mine) mine = error_;
    if (mine) std::rethrow_exception(mine);
    return true;
  }

 private:
  void Work(int w) {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      wake_.wait(lock, [&] { return generation_ != seen; });
      seen = generation_;
      if (!open_ || w > helpers_) continue;  // too late, or fewer items than threads
      ++active_;
      const RangeFn* fn = fn_;
      const int64_t items = items_, grain = grain_;
      lock.unlock();
      std::exception_ptr error;
      try {
        Claim(*fn, items, grain);
      } catch (...) {
        error = std::current_exception();
        next_.store(items);
      }
      lock.lock();
      if (error && !error_) error_ = error;
      if (--active_ == 0) done_.notify_one();
    }
  }

  void Claim(const RangeFn& fn, int64_t items, int64_t grain) {
    for (int64_t b = next_.fetch_add(grain); b < items; b = next_.fetch_add(grain)) {
      fn(b, std::min(items, b + grain));
    }
  }

  const int threads_;
  const pid_t pid_;
  std::mutex region_;  // held by the caller for a whole parallel region
  std::mutex mu_;
  std::condition_variable wake_, done_;
  uint64_t generation_ = 0;
  const RangeFn* fn_ = nullptr;
  int64_t items_ = 0, grain_ = 1;
  std::atomic<int64_t> next_{0};  // the next unclaimed item
  int helpers_ = 0, active_ = 0;  // workers allowed in this region / inside it now
  bool open_ = false;             // the caller is still claiming
  std::exception_ptr error_;
  std::vector<std::thread> workers_;
};

std::mutex pool_mu;
Pool* pool = nullptr;  // never destroyed: workers blocked on wake_ at exit are harmless, while
                       // joining them from a static destructor could race a thread in a region
std::atomic<Pool*> pool_ready{nullptr};

Pool& ThePool(int threads_if_new = 0) {
  if (Pool* p = pool_ready.load(std::memory_order_acquire)) return *p;
  std::lock_guard<std::mutex> lock(pool_mu);
  if (!pool) {
    pool = new Pool(threads_if_new > 0 ? threads_if_new : ThreadsFromEnvironment());
    pool_ready.store(pool, std::memory_order_release);
  }
  return *pool;
}

}  // namespace

int CpuThreads() { return ThePool().threads(); }

bool SetCpuThreads(int n) {
  const int want = n > 0 ? std::min(n, 256) : ThreadsFromEnvironment();
  return ThePool(want).threads() == want;
}

void ParallelFor(int64_t items, int64_t cost_per_item, const RangeFn& fn) {
  if (items <= 0) return;
  const bool worth_it =
      items > 1 && cost_per_item > 0 && cost_per_item >= (kParallelMinWork + items - 1) / items;
  if (!worth_it || ThePool().threads() <= 1 || !ThePool().TryRun(items, fn)) fn(0, items);
}

}  // namespace vlmserve
