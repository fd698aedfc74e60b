#include "runtime/core/log.hpp"

#include <cstdio>
#include <mutex>
#include <set>

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

// Control characters other than tabs as \xNN: messages name files and values from the user's input, and
// an ESC, CR or LF in a file name must not reach the terminal raw (clear it, fake a line); a NUL no longer
// cuts the message. Line breaks are kept only in text that is ours alone (the resolved config).
std::string printable(const std::string& message, bool keep_line_breaks) {
  std::string out;
  out.reserve(message.size());
  for (const char ch : message) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c >= 0x20 && c != 0x7f) || (c == '\n' && keep_line_breaks) || c == '\t') {
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

}  // namespace longctx::log
