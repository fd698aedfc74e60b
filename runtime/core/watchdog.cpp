#include "runtime/core/watchdog.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

namespace longctx::watchdog {
namespace {

using Clock = std::chrono::steady_clock;

class Watchdog {
 public:
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  void arm(double seconds, std::function<void(const std::string&)> expire, const std::string& set_by) {
    std::lock_guard<std::mutex> lock(mutex_);
    set_by_ = set_by;
    // Clock::duration counts nanoseconds in int64 (292 years): a larger --comm-timeout ("never", 1e10)
    // would overflow into the past and end every job at once. 1e9 s is never in practice.
    timeout_ = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(std::min(seconds, 1e9)));
    expire_ = std::move(expire);
    armed_ = true;
    if (!thread_.joinable()) thread_ = std::thread([this] { watch(); });
    wake_.notify_all();
  }

  void disarm() {
    std::lock_guard<std::mutex> lock(mutex_);
    armed_ = false;
    wake_.notify_all();
  }

  void enter(const std::string& what, std::function<std::string()> note) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (depth_++ == 0) {  // the outermost region names the wait
      what_ = what;
      note_ = std::move(note);
    }
    last_ = Clock::now();
    wake_.notify_all();
  }

  void leave() {
    std::lock_guard<std::mutex> lock(mutex_);
    --depth_;
    last_ = Clock::now();
  }

  void progress() {
    std::lock_guard<std::mutex> lock(mutex_);
    last_ = Clock::now();
  }

 private:
  void watch() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stop_) {
      if (!armed_ || depth_ == 0) {
        wake_.wait(lock);
        continue;
      }
      const Clock::time_point deadline = last_ + timeout_;
      if (Clock::now() < deadline) {
        wake_.wait_until(lock, deadline);
        continue;  // re-read: progress may have moved the deadline, or the region ended
      }
      std::ostringstream message;
      message << what_ << ": no progress for " << std::chrono::duration<double>(timeout_).count()
              << " s; a rank (this one or another) is stuck or gone (MPI_Init, MPI-IO, MPI_Bcast, "
                 "MPI_Comm_create_group, MPI_Finalize, NCCL's set-up and release and the start-up's collectives "
                 "have no timeout of their own; "
              << set_by_ << ")";
      auto expire = expire_;
      auto note = note_;
      lock.unlock();
      // A write that failed on one rank can leave the ranks in different collectives inside HDF5: the
      // note names the likely cause (a full disk), which MPI-IO's own error does not. It may itself touch
      // the stalled file system (statvfs on an NFS server that stopped answering blocks), so it runs on a
      // thread of its own for at most 2 s; the job then ends without it.
      if (note) {
        auto task = std::make_shared<std::packaged_task<std::string()>>([note] {
          try {
            return note();
          } catch (...) {
            return std::string();
          }
        });
        std::future<std::string> text = task->get_future();
        std::thread([task] { (*task)(); }).detach();
        if (text.wait_for(std::chrono::seconds(2)) == std::future_status::ready) message << text.get();
      }
      message << ". Ending the job.";
      expire(message.str());  // aborts the job; if it returns, watch no more
      return;
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::thread thread_;
  bool stop_ = false, armed_ = false;
  Clock::duration timeout_{};
  std::function<void(const std::string&)> expire_;
  std::string set_by_;
  int depth_ = 0;
  std::string what_;
  std::function<std::string()> note_;
  Clock::time_point last_{};
};

Watchdog& instance() {
  static Watchdog watchdog;
  return watchdog;
}

}  // namespace

void arm(double timeout_seconds, std::function<void(const std::string& message)> expire, const std::string& set_by) {
  instance().arm(timeout_seconds, std::move(expire), set_by);
}

void disarm() { instance().disarm(); }

Guard::Guard(const std::string& what, std::function<std::string()> note) { instance().enter(what, std::move(note)); }
Guard::~Guard() { instance().leave(); }

void progress() { instance().progress(); }

}  // namespace longctx::watchdog
