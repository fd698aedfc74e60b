#include "runtime/core/log.hpp"

#include <cstdio>
#include <mutex>
#include <set>

#include "runtime/core/check.hpp"

namespace longctx::log {
namespace {
std::mutex g_mutex;

void write(const char* level, const std::string& message) {
  std::lock_guard<std::mutex> lock(g_mutex);
  const int rank = process_rank();
  if (rank >= 0)
    std::fprintf(stderr, "[longctx %s r%d] %s\n", level, rank, message.c_str());
  else
    std::fprintf(stderr, "[longctx %s] %s\n", level, message.c_str());
  std::fflush(stderr);
}
}  // namespace

void info(const std::string& message) {
  if (process_rank() <= 0) write("info", message);
}
void info_all(const std::string& message) { write("info", message); }
void warn(const std::string& message) { write("warn", message); }
void warn_once(const std::string& message) {
  if (process_rank() > 0) return;
  static std::set<std::string> seen;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (!seen.insert(message).second) return;
  }
  write("warn", message);
}
void error(const std::string& message) { write("error", message); }

}  // namespace longctx::log
