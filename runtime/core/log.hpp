// Logging: every line says which rank wrote it. info() prints on rank 0 only (the progress a person
// reads); warn() and error() print on every rank that has something to say.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace longctx::log {

void info(const std::string& message);         // rank 0 only, to stderr
void info_all(const std::string& message);     // every rank, to stderr
void warn(const std::string& message);         // every rank that calls it
// A warning every rank would print alike (about the configuration): rank 0 prints it, once per process.
void warn_once(const std::string& message);
void error(const std::string& message);
// The error that ends a job: under mpirun (world_size > 1) as error() says it, naming the rank ([longctx
// error r1] ...); in a job of one process as the config phase's errors read ("longctx: error: ...").
void ending_error(const std::string& message, int world_size);
// `text` for the terminal: control characters other than those in `keep` as \xNN (so text from a file or the
// user cannot move the cursor, clear the screen or fake a line), bytes past ASCII that are no whole UTF-8
// character (binary) or a C1 control too, at most `limit` characters (then "..."),
// and with `ascii_only` also every byte past ASCII and the backslash (bytes that may be binary). What every
// function above prints (keep "\t"), for the few messages printed without them; "\t\n" for text of ours
// alone (the resolved config), "" for names from a file (ckpt's listings).
std::string printable(const std::string& text, const char* keep = "\t", size_t limit = std::string::npos,
                      bool ascii_only = false);
// `path` as a shell reads it back as one argument naming that file, for a command a message suggests
// (`longctx data verify PATH`): after ./ where it starts with '-' (else read as an option); as it is when it
// holds only letters, digits and _ . / : @ % + = , -; else in single quotes (a ' inside as '\''), so that a
// path with a blank, '$' or '*' pastes as that path; with a control character, in $'...' with \xNN (bash,
// zsh, ksh), as the line that prints it escapes control characters.
std::string shell_path(const std::string& path);

// Progress of long work through `total` bytes (data import, ckpt verify): an info() line at most every
// LONGCTX_PROGRESS_SECONDS (30 s), "WHAT: 512 of 2048 MiB (25%), 150 MB/s". Nothing for work that ends sooner,
// or a total of 0.
class ByteProgress {
 public:
  static constexpr uint64_t kUnknownTotal = UINT64_MAX;  // a stream: "WHAT: 512 MiB so far, 150 MB/s"
  ByteProgress(std::string what, uint64_t total);
  // `done` bytes so far.
  void update(uint64_t done);

 private:
  std::string what_;
  uint64_t total_;
  std::chrono::steady_clock::time_point started_, reported_;
};

}  // namespace longctx::log
