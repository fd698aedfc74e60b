// log.jsonl's lines across restarts and resumes: see json_log.hpp for the protocol.
#include "runtime/train/json_log.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <random>
#include <string_view>
#include <thread>
#include <vector>

#include "io/durable.hpp"
#include "runtime/cli/ini.hpp"
#include "runtime/core/check.hpp"
#include "runtime/core/error.hpp"
#include "runtime/core/fingerprint.hpp"
#include "runtime/core/log.hpp"

namespace longctx::train {

std::string json_number(double x) {
  if (!std::isfinite(x)) return "null";  // JSON has no nan / inf
  return cli::double_text(x);  // the fewest digits that read back x
}

bool valid_run_id(const std::string& id) {
  return !id.empty() && id.size() <= 32 &&
         std::all_of(id.begin(), id.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

std::string new_run_id(MPI_Comm comm, int rank) {
  uint64_t id = 0;
  if (rank == 0) {
    std::random_device device;
    id = (static_cast<uint64_t>(device()) << 32) ^ device();
  }
  if (comm != MPI_COMM_NULL) LONGCTX_CHECK_MPI(MPI_Bcast(&id, 1, MPI_UINT64_T, 0, comm));
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(id));
  return text;
}

namespace {

// Whether `text` is one JSON object, by its shape: '{' first and '}' last (blanks aside), braces and brackets
// balanced outside strings, and every string closed. What a write cut short leaves is not (a cut within the
// object loses its closing brace).
bool whole_json_object(std::string_view text) {
  const size_t first = text.find_first_not_of(" \t\r"), last = text.find_last_not_of(" \t\r");
  if (first == text.npos || text[first] != '{' || text[last] != '}') return false;
  std::vector<char> open;
  bool in_string = false;
  for (size_t i = first; i <= last; ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '{' || c == '[') open.push_back(c);
    else if (c == '}' || c == ']') {
      if (open.empty() || open.back() != (c == '}' ? '{' : '[')) return false;
      open.pop_back();
      if (open.empty() && i != last) return false;  // one object, nothing after it
    } else if (c == '\0') {
      return false;  // what a power loss leaves
    }
  }
  return !in_string && open.empty();
}

// LONGCTX_FAULT_SLOW_LOG_REWRITE_MS: a resume waits this long between reading log.jsonl and renaming its
// rewrite over it, so that a test can append another run's lines meanwhile.
void slow_rewrite_for_tests() {
  static const long delay_ms = [] {
    const char* delay = std::getenv("LONGCTX_FAULT_SLOW_LOG_REWRITE_MS");
    return delay ? std::atol(delay) : 0L;
  }();
  if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
}

// An exclusive flock on the directory that holds the log file, for as long as it lives. Every run's appends
// and rewrites of a log.jsonl take it: a rewrite (read, write a new file, rename it over) would otherwise
// drop the lines another run appends between its read and its rename (from the race audit: a resume lost up
// to 10 of another job's lines). The directory, as its inode stays while the file's is renamed over. Never
// a hang: a holder that does not let go in 30 s (a stopped process) is written past, said once; a file
// system without flock goes unlocked.
class LogLock {
 public:
  explicit LogLock(const std::string& file) {
    const std::filesystem::path dir = std::filesystem::path(file).parent_path();
    fd_ = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd_ < 0) return;
    // Once given up on, not waited for again (each line would wait its 30 s).
    static bool gave_up = false;
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(gave_up ? 0 : 30);
    while (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      if (errno != EWOULDBLOCK && errno != EINTR) break;  // (ENOLCK, EINVAL: no locks here)
      if (std::chrono::steady_clock::now() > give_up) {
        gave_up = true;
        log::warn_once("log.jsonl=" + file + ": another process has held its directory's lock for 30 s; writing " +
                       "without it (a run that resumes with the same log.jsonl meanwhile may drop a line of this one)");
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  ~LogLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  LogLock(const LogLock&) = delete;
  LogLock& operator=(const LogLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace

JsonLog::JsonLog(const std::string& path, bool active, int64_t kept_through, const std::string& checkpoint_dir,
                 const std::string& run_id)
    : path_(path), run_id_(run_id) {
  if (!active || path.empty()) return;
  const LogLock lock(file_path());  // until this run appends: its rewrites keep what others append meanwhile
  Contents file = read();
  // A last line that is a whole JSON object but has no '\n' (another tool's `echo -n`, json.dump) is kept:
  // given its line break (before: dropped as torn, though no run of ours wrote it).
  const auto end_whole_last_line = [&] {
    const size_t last_line = file.lines.empty() ? 0 : file.lines.back().end;
    if (!file.torn || !whole_json_object(std::string_view(file.text).substr(last_line))) return;
    file = parse(file.text + "\n");
    io::write_text_durably(file_path(), file.text);
    log::info("log.jsonl: its last line had no line break; added");
  };
  if (kept_through >= 0) {
    end_whole_last_line();
    trim_after(file, kept_through, run_id);
  } else {  // a fresh run appends, as it always has
    if (!checkpoint_dir.empty()) {  // (first: it knows the file by its inode, which a rewrite changes)
      note_ = log_start_path(checkpoint_dir);
      drop_earlier_start(file);
    }
    end_whole_last_line();
    // A last line without its '\n' (a run killed mid-write) would have this run's first line glued to it.
    if (file.torn) {
      file = parse(file.text.substr(0, file.lines.empty() ? 0 : file.lines.back().end));
      io::write_text_durably(file_path(), file.text);
      log::info("log.jsonl: dropped its torn last line (an earlier run stopped while writing it)");
    }
    int64_t earlier = 0;
    for (const Line& line : file.lines) earlier += line.end - line.begin > 1;  // not a blank line
    if (earlier > 0) {
      log::warn("log.jsonl=" + path + " already holds " + std::to_string(earlier) + " line(s) of an earlier run; "
                "this run starts at step 1 and appends after them (remove the file to start it clean)");
      // Step 1 is logged whatever log.every says: where the steps go down is where this run's lines
      // start, which a resume needs before any checkpoint (trim_after).
      log_step_one_ = true;
    }
  }
  struct stat before {};
  created_ = ::stat(path.c_str(), &before) != 0;
  errno = 0;
  out_.open(path, std::ios::app);
  if (!out_)  // (why: before, a read-only file's refusal said none)
    throw UsageError("log.jsonl=" + path + ": cannot open for appending" +
                     (errno != 0 ? std::string(" (") + std::strerror(errno) + ")" : std::string()));
  remember_open_file();
  start_note(file.text);  // `file` is the file as this run starts appending to it
}

// A run that stopped before its first line (refused as its work began: a token past the file's vocab) leaves
// no empty log.jsonl it made, as nothing else of it is left (before: an empty file; from an audit).
JsonLog::~JsonLog() {
  if (!created_ || !out_.is_open()) return;
  out_.close();
  struct stat info {};
  if (::stat(path_.c_str(), &info) == 0 && info.st_dev == open_device_ && info.st_ino == open_inode_ &&
      info.st_size == 0)
    std::remove(file_path().c_str());
}

void JsonLog::forget_start() {
  if (note_.empty()) return;
  std::remove(note_.c_str());
  std::remove((note_ + ".tmp").c_str());  // (a kill between its write and rename leaves it)
  note_.clear();
}

void JsonLog::write(const std::string& line) {
  if (!out_.is_open()) return;
  const LogLock lock(file_path());
  append(line);
}

// Under the LogLock.
void JsonLog::append(const std::string& line) {
  reopen_if_moved();
  out_ << line << "\n" << std::flush;
  if (!out_) throw InternalError("log.jsonl=" + path_ + ": write failed (disk full?); the checkpoints are unaffected");
  end_ += line.size() + 1;
  if (!note_.empty()) write_note();
}

void JsonLog::complete_kept_step(const std::string& line) {
  if (!out_.is_open()) return;
  if (!holds_kept_step_) return write(line);
  const LogLock lock(file_path());
  reopen_if_moved();
  const Contents file = read();
  // The last line with its text (the file may have got other runs' lines after it since).
  const Line* kept = nullptr;
  for (const Line& l : file.lines) {
    const bool same = l.end - l.begin == kept_line_.size() + 1 &&
                      file.text.compare(l.begin, kept_line_.size(), kept_line_) == 0;
    if (same) kept = &l;
  }
  if (!kept) return append(line);  // gone (the file was replaced): the line is not lost
  out_.close();
  io::write_text_durably(file_path(), file.text.substr(0, kept->begin) + line + "\n" + file.text.substr(kept->end));
  out_.open(path_, std::ios::app);
  if (!out_) throw InternalError("log.jsonl=" + path_ + ": cannot open for appending after rewriting it");
  remember_open_file();
}

// Where a rewrite goes: the file the name leads to, so that a link named log.jsonl stays a link to it
// (before: the link was replaced by a file, and its target kept the dropped lines and got no more).
std::string JsonLog::file_path() const { return io::output_target(path_); }

// The file as it is (empty when there is none), read once.
JsonLog::Contents JsonLog::read() const {
  std::ifstream in(path_);
  return parse(in ? std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()) : std::string());
}

// `text` in lines: what the file holds after it was cut to `text` (no need to read it again).
JsonLog::Contents JsonLog::parse(std::string text_of_file) {
  Contents file;
  file.text = std::move(text_of_file);
  const std::string& text = file.text;
  for (size_t begin = 0; begin < text.size();) {
    const size_t end = text.find('\n', begin);
    if (end == std::string::npos) {
      file.torn = true;
      break;
    }
    // Searched within the line only (a search to the end of the file for a key a line lacks made reading
    // a long log quadratic).
    const std::string_view line(text.data() + begin, end - begin);
    const size_t at = line.find("\"step\": ");
    const int64_t line_step = at != line.npos ? std::strtoll(text.c_str() + begin + at + 8, nullptr, 10) : -1;
    std::string run;
    if (const size_t key = line.find(kRunKey); key != line.npos) {
      const size_t from = key + std::strlen(kRunKey), to = line.find('"', from);
      if (to != line.npos) run = std::string(line.substr(from, to - from));
    }
    file.lines.push_back({begin, end + 1, line_step, std::move(run)});
    begin = end + 1;
  }
  return file;
}

std::string JsonLog::prefix_fingerprint(const std::string& text, size_t bytes) {
  return Fingerprint().add(text.data(), std::min(bytes, text.size())).hex();
}

// Not synced: a note lost in a crash is older than the file, which then keeps its lines.
void JsonLog::remember_open_file() {
  struct stat info {};
  if (::stat(path_.c_str(), &info) != 0) return;
  open_device_ = info.st_dev;
  open_inode_ = info.st_ino;
}

// A log.jsonl removed or replaced while the run writes to it (a log rotation, a mistaken rm) is opened
// again by name, and that is said (before: the lines went on into the removed file, unseen, exit 0).
void JsonLog::reopen_if_moved() {
  struct stat info {};
  if (::stat(path_.c_str(), &info) == 0 && info.st_dev == open_device_ && info.st_ino == open_inode_) return;
  out_.close();
  out_.clear();
  const Contents file = read();
  out_.open(path_, std::ios::app);
  if (!out_)
    throw InternalError("log.jsonl=" + path_ + ": removed or replaced while the run wrote to it, and cannot be opened "
                        "again; the checkpoints are unaffected");
  // (Before: "the earlier ones went with the old", where a resume of another run had kept them in the new.)
  log::warn("log.jsonl=" + path_ + ": removed or replaced while the run wrote to it; its next lines go to the file " +
            "now at that name (" + (file.text.empty() ? "a new one" : "appended") + "), the earlier ones are " +
            "where that left them (a log rotation: in the old file; another run resumed with this log.jsonl: " +
            "kept in the new one)");
  remember_open_file();
  start_note(file.text);  // this start's lines begin here now
}

// The note of where this start's lines begin: after `text`, the file out_ appends to as it holds now.
void JsonLog::start_note(const std::string& text) {
  if (note_.empty()) return;
  begin_ = end_ = text.size();
  before_ = prefix_fingerprint(text, begin_);
  write_note();
}

// Said once when it fails (a full disk): a restart then keeps this start's lines, as without a note.
// Written beside and renamed over, so that a kill leaves the last note whole (before: truncated, then
// written; a SIGKILL between the two left it empty, and the restart kept this start's lines, which it then
// logged again; from the crash audit). Its run id ("-": none) tells this start's lines past its end.
void JsonLog::write_note() {
  const std::string next = note_ + ".tmp";
  std::ofstream note(next, std::ios::trunc);
  note << static_cast<uint64_t>(open_inode_) << " " << begin_ << " " << end_ << " " << before_ << " "
       << (run_id_.empty() ? "-" : run_id_) << "\n";
  note.close();
  if (note && std::rename(next.c_str(), note_.c_str()) == 0) return;
  const int error = errno;
  std::remove(next.c_str());
  if (note_failed_) return;
  note_failed_ = true;
  log::warn("log.jsonl: cannot write " + note_ + " (" + std::strerror(error) + "): if this run stops before its " +
            "first checkpoint, a restart in the same checkpoint.dir keeps the lines it wrote and appends after them");
}

// The lines an earlier start of this run wrote, as its note gives them, when the file is as that start
// left it: dropped, from the file and from `file`.
void JsonLog::drop_earlier_start(Contents& file) const {
  std::ifstream in(note_);
  uint64_t inode = 0;
  size_t begin = 0, end = 0;
  std::string before, run = "-";
  struct stat info {};
  if (!(in >> inode >> begin >> end >> before) || ::stat(path_.c_str(), &info) != 0 ||
      static_cast<uint64_t>(info.st_ino) != inode || begin > end || end > file.text.size() || begin == file.text.size() ||
      prefix_fingerprint(file.text, begin) != before)
    return;
  in >> run;  // (none in a note of an earlier version)
  // Whole lines past the note's end: that start's where every line from its begin on carries its run id (a
  // kill between a line and its note; before: all kept, then logged again); else another writer appended
  // (also between that start's lines, which its end, a count of that start's bytes, does not show: from the
  // regression audit), and the file is kept.
  const bool past_end = std::any_of(file.lines.begin(), file.lines.end(), [&](const Line& l) { return l.end > end; });
  if (past_end)
    for (const Line& line : file.lines)
      if (line.begin >= begin && (run == "-" || line.run != run)) return;
  int64_t dropped = 0;
  for (const Line& line : file.lines) dropped += line.begin >= begin;
  file = parse(file.text.substr(0, begin));
  io::write_text_durably(file_path(), file.text);
  log::info("log.jsonl: dropped " + std::to_string(dropped) + " line(s) of an earlier start of this run, which stopped " +
            "before its first checkpoint (" + note_ + "); this run logs those steps again");
}

// Only this run's lines: those with its run id. A run without one (resumed from a checkpoint written
// before runs had ids) wrote lines without one: its own are the untagged lines from where their steps
// last went down (a fresh run appended to an earlier run's file starts again at step 1, which it always
// logs). Another run's lines stay wherever they are (before: two jobs logging to one file, the resumed
// one dropped the other's later lines).
void JsonLog::trim_after(const Contents& file, int64_t step, const std::string& run_id) {
  const std::vector<Line>& lines = file.lines;
  size_t run_begin = 0;
  for (size_t i = 0, previous = lines.size(); i < lines.size(); ++i) {
    if (lines[i].step < 0 || !lines[i].run.empty()) continue;
    if (previous < lines.size() && lines[i].step <= lines[previous].step) run_begin = i;
    previous = i;
  }
  const auto ours = [&](size_t i) {
    return run_id.empty() ? lines[i].run.empty() && i >= run_begin : lines[i].run == run_id;
  };
  std::string kept;
  int64_t dropped = file.torn ? 1 : 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (ours(i) && lines[i].step > step) {
      ++dropped;
      continue;
    }
    if (ours(i) && lines[i].step == step) {
      holds_kept_step_ = true;
      kept_line_ = file.text.substr(lines[i].begin, lines[i].end - lines[i].begin - 1);
    }
    kept.append(file.text, lines[i].begin, lines[i].end - lines[i].begin);
  }
  if (dropped == 0) return;
  slow_rewrite_for_tests();
  io::write_text_durably(file_path(), kept);
  log::info("log.jsonl: dropped " + std::to_string(dropped) + " line(s) after step " + std::to_string(step) +
            " (or torn), which this run logs again from its checkpoint");
}

}  // namespace longctx::train
