// The watchdog (runtime/core/watchdog.hpp) ends a stalled region after its timeout with a message naming
// it, and a Guard's note, which may itself block on the stalled file system (statvfs on an NFS server that
// stopped answering), cannot keep the job from ending. One expiry per process: the watchdog stops watching
// once its action returns, so this file holds one test that expires.
#include "runtime/core/watchdog.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <string>
#include <thread>

namespace longctx {
namespace {

// A world of one after all (a launcher's task count that MPI does not see): Guards never end it (runs
// first: an expiry here would also stop the watchdog for the test below).
TEST(Watchdog, DisarmedGuardsDoNotEndTheJob) {
  std::atomic<bool> expired{false};
  watchdog::arm(0.05, [&expired](const std::string&) { expired = true; });
  watchdog::disarm();
  {
    watchdog::Guard guard("MPI_Init on a world of one");
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
  }
  EXPECT_FALSE(expired) << "a disarmed watchdog ended the job";
}

TEST(Watchdog, ABlockingNoteDoesNotKeepTheJobFromEnding) {
  std::promise<std::string> expired;
  std::future<std::string> message = expired.get_future();
  watchdog::arm(0.2, [&expired](const std::string& text) { expired.set_value(text); });
  std::promise<void> release;  // the note blocks until the end of the test
  std::shared_future<void> released = release.get_future().share();
  const auto start = std::chrono::steady_clock::now();
  {
    watchdog::Guard guard("writing stalled.h5", [released] {
      released.wait();
      return std::string(" (never seen)");
    });
    ASSERT_EQ(message.wait_for(std::chrono::seconds(30)), std::future_status::ready) << "the job did not end";
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::string text = message.get();
  EXPECT_NE(text.find("writing stalled.h5: no progress for 0.2 s"), std::string::npos) << text;
  EXPECT_EQ(text.find("never seen"), std::string::npos) << text;
  EXPECT_NE(text.find("Ending the job."), std::string::npos) << text;
  EXPECT_LT(seconds, 10.0) << "the note's wait is bounded (2 s)";
  release.set_value();
}

}  // namespace
}  // namespace longctx
