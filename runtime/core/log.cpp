#include "runtime/core/log.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <set>
#include <utility>

#include "runtime/core/check.hpp"
#include "runtime/core/heartbeat.hpp"

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

namespace {

// The length of the UTF-8 character at `at` (2 to 4 bytes) where one starts there, is whole and is no C1
// control (U+0080..U+009F, which terminals may take as ESC: U+009B is CSI); else 0.
size_t utf8_character(const std::string& text, size_t at) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(at);
  const size_t length = lead >= 0xc2 && lead <= 0xdf   ? 2
                        : lead >= 0xe0 && lead <= 0xef ? 3
                        : lead >= 0xf0 && lead <= 0xf4 ? 4
                                                       : 0;
  if (length == 0 || at + length > text.size()) return 0;
  for (size_t i = 1; i < length; ++i)
    if ((byte(at + i) & 0xc0) != 0x80) return 0;
  if (lead == 0xc2 && byte(at + 1) < 0xa0) return 0;  // C1 controls
  return length;
}

}  // namespace

// Messages name files and values from the user's input, and an ESC, CR or LF in a file name must not reach
// the terminal raw (clear it, fake a line); a NUL no longer cuts the message.
std::string printable(const std::string& text, const char* keep, size_t limit, bool ascii_only) {
  std::string out;
  out.reserve(std::min(text.size(), limit));
  for (size_t i = 0; i < text.size(); ++i) {
    if (out.size() >= limit) return out + "...";
    const char ch = text[i];
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x80 && !ascii_only) {  // whole UTF-8 characters as they are; other bytes (binary) escaped
      if (const size_t length = utf8_character(text, i); length > 0) {
        out.append(text, i, length);
        i += length - 1;
        continue;
      }
    } else if ((c >= 0x20 && c < 0x7f && (!ascii_only || c != '\\')) || (c != 0 && std::strchr(keep, c))) {
      out += ch;
      continue;
    }
    char escaped[8];
    std::snprintf(escaped, sizeof(escaped), "\\x%02x", c);
    out += escaped;
  }
  return out;
}

std::string shell_path(const std::string& path) {
  const std::string word = !path.empty() && path[0] == '-' ? "./" + path : path;
  const auto plain = [](unsigned char c) { return std::isalnum(c) || (c != 0 && std::strchr("_./:@%+=,-", c)); };
  if (!word.empty() && std::all_of(word.begin(), word.end(), plain)) return word;
  const auto control = [](unsigned char c) { return c < 0x20 || c == 0x7f; };
  if (std::none_of(word.begin(), word.end(), control)) {
    std::string quoted = "'";
    for (const char ch : word) quoted += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
    return quoted + "'";
  }
  std::string quoted = "$'";
  for (const char ch : word) {
    const auto c = static_cast<unsigned char>(ch);
    if (control(c)) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", c);
      quoted += escaped;
    } else {
      quoted += c == '\'' || c == '\\' ? "\\" + std::string(1, ch) : std::string(1, ch);
    }
  }
  return quoted + "'";
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
void ending_error(const std::string& message, int world_size) {
  if (world_size > 1) {
    error(message);
    return;
  }
  std::lock_guard<std::mutex> lock(g_mutex);
  std::fprintf(stderr, "longctx: error: %s\n", printable(message).c_str());
  std::fflush(stderr);
}

ByteProgress::ByteProgress(std::string what, uint64_t total)
    : what_(std::move(what)), total_(total), started_(std::chrono::steady_clock::now()), reported_(started_) {}

void ByteProgress::update(uint64_t done) {
  const auto now = std::chrono::steady_clock::now();
  // The period of every progress line (LONGCTX_PROGRESS_SECONDS; before: 10 s whatever it said).
  static const double period = Heartbeat::period_seconds();
  if (total_ == 0 || std::chrono::duration<double>(now - reported_).count() < period) return;
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
