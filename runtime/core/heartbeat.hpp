// A line every so often while one long piece of work runs (a forward pass of minutes, an eval cell), from a
// thread of its own, so that a job's log says it is alive between the lines its steps print. The period is
// 30 s, or LONGCTX_PROGRESS_SECONDS (a positive number of seconds).
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace longctx {

class Heartbeat {
 public:
  // Off: nothing (ranks other than 0). On: log::info(line(seconds since the start)) each period, `line`
  // called on the heartbeat's thread, until the Heartbeat ends.
  Heartbeat(bool on, std::function<std::string(double seconds)> line);
  ~Heartbeat();
  Heartbeat(const Heartbeat&) = delete;
  Heartbeat& operator=(const Heartbeat&) = delete;

  // The period: LONGCTX_PROGRESS_SECONDS where it is a positive, finite number, else 30.
  static double period_seconds();

 private:
  void run(double period_seconds);
  std::function<std::string(double)> line_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace longctx
