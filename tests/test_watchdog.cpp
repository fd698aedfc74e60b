// The watchdog (runtime/core/watchdog.hpp) ends a stalled region after its timeout with a message naming
// it, and a Guard's note, which may itself block on the stalled file system (statvfs on an NFS server that
// stopped answering), cannot keep the job from ending. One expiry per process: the watchdog stops watching
// once its action returns, so this file holds one test.
#include "runtime/core/watchdog.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <string>

namespace longctx {
namespace {

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
