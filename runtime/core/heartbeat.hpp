// A line every so often while one long piece of work runs (a forward pass of minutes, an eval cell), from a
// thread of its own, so that a job's log says it is alive between the lines its steps print. The period is
// 30 s, or LONGCTX_PROGRESS_SECONDS (a positive number of seconds).
// activity_heartbeat: a line for whatever activity::Scope has lasted a period.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace longctx {

class Heartbeat {
 public:
  // Off: nothing (ranks other than 0). On: log::info(line(seconds since the start)) each `period` seconds,
  // `line` called on the heartbeat's thread, until the Heartbeat ends; an empty line is not printed (a
  // period with nothing to say).
  Heartbeat(bool on, std::function<std::string(double seconds)> line, double period = period_seconds());
  ~Heartbeat();
  Heartbeat(const Heartbeat&) = delete;
  Heartbeat& operator=(const Heartbeat&) = delete;

  // The period: LONGCTX_PROGRESS_SECONDS where it is a positive, finite number, else 30.
  static double period_seconds();
  // The period `text` (LONGCTX_PROGRESS_SECONDS's value; nullptr or "": unset) gives, with a warning (once)
  // where it is not a positive number. The options' parse calls it at every command's start, so a bad value is
  // said before any work (before: only by the first long piece of work, minutes in, or never).
  static double period_from(const char* text);
  // `seconds` for a progress line: tenths below 10 s ("0.4", "12"), so a short period (LONGCTX_PROGRESS_SECONDS
  // =0.1) reads as it goes (before: "running, 0 s" twice).
  static std::string elapsed_text(double seconds);

 private:
  void run(double period_seconds);
  std::function<std::string(double)> line_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

// A Heartbeat for a run of many pieces of work, each an activity::Scope (a training step, an evaluation, a
// checkpoint): once the innermost scope has lasted a period (said within a quarter period of it), and once
// each period more, "<what>: running, N s" (N: the seconds since the scope began). Quick pieces print
// nothing: the run's own lines say it is alive.
Heartbeat activity_heartbeat(bool on);

}  // namespace longctx
