#include "runtime/core/log.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <set>
#include <utility>

#include "runtime/core/check.hpp"

namespace longctx::log {
namespace {
std::mutex g_mutex;

void write(const char* level, const std::string& message) {
  const std::string text = printable(message);
  std::lock_guard<std::mutex> lock(g_mutex);
  const int rank = process_rank();
  if (rank >= 0)
    std::fprintf(stderr, "[longctx %s r%d] %s\n", level, rank, text.c_str());
  else
    std::fprintf(stderr, "[longctx %s] %s\n", level, text.c_str());
  std::fflush(stderr);
}
}  // namespace

// Messages name files and values from the user's input, and an ESC, CR or LF in a file name must not reach
// the terminal raw (clear it, fake a line); a NUL no longer cuts the message.
std::string printable(const std::string& text, const char* keep, size_t limit, bool ascii_only) {
  std::string out;
  out.reserve(std::min(text.size(), limit));
  for (const char ch : text) {
    if (out.size() >= limit) return out + "...";
    const auto c = static_cast<unsigned char>(ch);
    if ((c >= 0x20 && c != 0x7f && (!ascii_only || (c < 0x7f && c != '\\'))) || (c != 0 && std::strchr(keep, c))) {
      out += ch;
    } else {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\x%02x", c);
      out += escaped;
    }
  }
  return out;
}

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

ByteProgress::ByteProgress(std::string what, uint64_t total)
    : what_(std::move(what)), total_(total), started_(std::chrono::steady_clock::now()), reported_(started_) {}

void ByteProgress::update(uint64_t done) {
  const auto now = std::chrono::steady_clock::now();
  if (total_ == 0 || now - reported_ < std::chrono::seconds(10)) return;
  reported_ = now;
  const double seconds = std::chrono::duration<double>(now - started_).count();
  const std::string rate = std::to_string(static_cast<int64_t>(double(done) / seconds / 1e6)) + " MB/s";
  if (total_ == kUnknownTotal) {
    info(what_ + ": " + std::to_string(done >> 20) + " MiB so far, " + rate);
    return;
  }
  info(what_ + ": " + std::to_string(done >> 20) + " of " + std::to_string(total_ >> 20) + " MiB (" +
       std::to_string(std::min<uint64_t>(100, 100 * done / total_)) + "%), " + rate);
}

}  // namespace longctx::log
