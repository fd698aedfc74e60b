#include "runtime/core/heartbeat.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "runtime/core/activity.hpp"
#include "runtime/core/log.hpp"

namespace longctx {

Heartbeat::Heartbeat(bool on, std::function<std::string(double seconds)> line, double period)
    : line_(std::move(line)) {
  if (on) thread_ = std::thread([this, period] { run(period); });
}

Heartbeat::~Heartbeat() {
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::string Heartbeat::elapsed_text(double seconds) {
  char text[32];
  std::snprintf(text, sizeof text, "%.*f", seconds < 9.95 ? 1 : 0, seconds);
  return text;
}

double Heartbeat::period_seconds() { return period_from(std::getenv("LONGCTX_PROGRESS_SECONDS")); }

double Heartbeat::period_from(const char* text) {
  if (!text || !*text) return 30;
  char* end = nullptr;
  const double seconds = std::strtod(text, &end);
  if (*end != '\0' || !(seconds > 0) || !std::isfinite(seconds)) {
    log::warn_once(std::string("LONGCTX_PROGRESS_SECONDS='") + text +
                   "' is not a positive number of seconds: progress lines come every 30 s");
    return 30;
  }
  // The clock counts nanoseconds in int64 (292 years): a longer wait (1e10 s, given to silence the lines)
  // overflowed into the past and said the work millions of times a second. 1e9 s is never in practice.
  return std::min(seconds, 1e9);
}

void Heartbeat::run(double period_seconds) {
  const auto start = std::chrono::steady_clock::now();
  const auto period = std::chrono::duration<double>(period_seconds);
  std::unique_lock<std::mutex> lock(mutex_);
  while (!wake_.wait_for(lock, period, [this] { return stop_; })) {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const std::string line = line_(seconds);
    if (!line.empty()) log::info(line);
  }
}

Heartbeat activity_heartbeat(bool on) {
  const double period = Heartbeat::period_seconds();
  // Ticks four times a period: a piece of work is said once it has lasted a period (within a quarter of
  // one), then once each period more (before: ticks a period apart from the run's start, so one that
  // lasted less than two periods could go unsaid).
  return Heartbeat(
      on,
      [period, said = std::string(), periods = int64_t{0}](double) mutable {
        const activity::Now now = activity::now();
        if (now.what.empty() || now.seconds < period) return std::string();
        const auto reached = static_cast<int64_t>(now.seconds / period);
        if (now.what == said && reached <= periods) return std::string();
        said = now.what;
        periods = reached;
        return now.what + ": running, " + Heartbeat::elapsed_text(now.seconds) + " s";
      },
      period / 4);
}

}  // namespace longctx
