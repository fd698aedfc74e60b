// checkpoint.dir's lock: see checkpoint_dir_lock.hpp.
#include "runtime/train/checkpoint_dir_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <vector>

#include "io/durable.hpp"
#include "runtime/core/error.hpp"
#include "runtime/core/log.hpp"

namespace longctx::train {
namespace {

int g_checkpoint_lock = -1;  // rank 0's lock on <checkpoint.dir>/.longctx.lock, for the run's lifetime
// What lock_checkpoint_dir made, for a run refused before its first step (unlock_checkpoint_dir).
struct {
  std::string lock_file;                // the lock file's path, when this run created it
  std::vector<std::string> directories;  // the directories it created, outermost first
} g_checkpoint_dir_made;

}  // namespace

std::optional<std::string> read_lock_holder(int fd) {
  char text[256] = {};
  const ssize_t got = ::pread(fd, text, sizeof text - 1, 0);
  ::close(fd);
  if (got <= 0) return std::nullopt;
  std::string holder(text, static_cast<size_t>(got));
  while (!holder.empty() && std::isspace(static_cast<unsigned char>(holder.back()))) holder.pop_back();
  return holder;
}

void lock_checkpoint_dir(const std::string& dir) {
  if (g_checkpoint_lock >= 0) return;
  std::error_code error;
  // The directories missing on the way to `dir` as written (create_directories makes them so: "a/../b"
  // makes a, then b), outermost first: a refused run removes them again. "." and ".." are no directories
  // of their own.
  std::vector<std::string> missing;
  for (std::filesystem::path up = dir; !up.empty() && up != up.root_path(); up = up.parent_path()) {
    if (up.filename() == "." || up.filename() == ".." || up.filename().empty()) continue;
    if (std::filesystem::symlink_status(up, error).type() != std::filesystem::file_type::not_found) break;
    missing.insert(missing.begin(), up.string());
  }
  // A full file system or a quota is exit 1, as at the output-directory probe (which only root's runs make).
  std::filesystem::create_directories(dir, error);
  if (error)
    io::throw_cannot_make_file("checkpoint.dir=" + dir + ": cannot create it: " + error.message(), error.value(),
                               "checkpoint.dir");
  const std::string path = dir + "/" + kLockFile;
  for (;;) {
    bool created = true;
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0 && errno == EEXIST) {
      created = false;
      fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    }
    if (fd < 0) {
      const int why = errno;
      // A symbolic link there (O_NOFOLLOW: ELOOP) is no lock file of ours: said, with the fix (before: "Too many
      // levels of symbolic links" alone).
      std::error_code link_error;
      const bool link = why == ELOOP && std::filesystem::is_symlink(std::filesystem::symlink_status(path, link_error));
      io::throw_cannot_make_file("checkpoint.dir=" + dir + ": cannot open " + path + ": " +
                                     (link ? std::string("it is a symbolic link, which the lock file never is; remove "
                                                         "it (no run holds a lock through it)")
                                           : std::string(std::strerror(why))),
                                 why, "checkpoint.dir");
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int why = errno;
      if (why != EWOULDBLOCK) {
        ::close(fd);
        log::warn("checkpoint.dir=" + dir + ": this file system cannot lock " + path + " (" + std::strerror(why) +
                  "): nothing stops a second run from using the same directory at once");
        return;
      }
      const std::string who = read_lock_holder(fd).value_or("another run");
      throw UsageError("checkpoint.dir=" + dir + " is in use by a run still going (" + who +
                       "): two runs in one directory would delete each other's checkpoints; wait for it to end, "
                       "stop it, or choose another checkpoint.dir. If that host is down or that process is gone, "
                       "a network file system kept its lock: remove " + path, "checkpoint.dir");
    }
    // Locked; but a refused run removes the lock file it made (unlock_checkpoint_dir), and one opened just
    // before that is locked in vain: the file must still be there.
    struct stat locked {}, named {};
    if (::fstat(fd, &locked) == 0 && ::stat(path.c_str(), &named) == 0 && locked.st_dev == named.st_dev &&
        locked.st_ino == named.st_ino) {
      // Only now are the file and the directories this run's: a run refused after losing the race for
      // the lock (above) leaves the winner's alone.
      g_checkpoint_dir_made.directories = missing;
      if (created) g_checkpoint_dir_made.lock_file = path;
      g_checkpoint_lock = fd;
      break;
    }
    ::close(fd);
  }
  const int fd = g_checkpoint_lock;
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  const std::time_t now = std::time(nullptr);
  char since[32] = {};
  std::strftime(since, sizeof since, "%Y-%m-%d %H:%M:%S", std::localtime(&now));
  const std::string who = "pid " + std::to_string(::getpid()) + " on " + host + ", since " + since + "\n";
  // Synced: the other ranks read it back (shared_inputs), from other nodes of a network file system too.
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, who.data(), who.size(), 0) != static_cast<ssize_t>(who.size()) ||
      ::fsync(fd) != 0)
    log::warn("checkpoint.dir=" + dir + ": cannot write " + path + " (" + std::strerror(errno) +
              "); the lock holds, unnamed");
}

void unlock_checkpoint_dir() {
  // Unlinked while still locked: a run that opened it meanwhile and locks it after the close sees it gone
  // (lock_checkpoint_dir checks) and makes a new one.
  if (!g_checkpoint_dir_made.lock_file.empty()) ::unlink(g_checkpoint_dir_made.lock_file.c_str());
  if (g_checkpoint_lock >= 0) ::close(g_checkpoint_lock);
  g_checkpoint_lock = -1;
  for (auto dir = g_checkpoint_dir_made.directories.rbegin(); dir != g_checkpoint_dir_made.directories.rend(); ++dir)
    if (::rmdir(dir->c_str()) != 0) break;
  g_checkpoint_dir_made = {};
}

void require_checkpoint_dir_lock(const std::string& dir) {
  if (g_checkpoint_lock < 0) return;  // no lock (a file system without flock: warned at the start)
  const std::string path = dir + "/" + kLockFile;
  struct stat held {}, there {};
  if (::fstat(g_checkpoint_lock, &held) != 0 || ::stat(path.c_str(), &there) != 0 || held.st_dev != there.st_dev ||
      held.st_ino != there.st_ino)
    throw InternalError("checkpoint.dir=" + dir + " was removed or replaced while this run held it (its lock file " +
                        path + " is gone or another): no checkpoint is written where another run may be writing; "
                        "nothing of this step was saved");
}

}  // namespace longctx::train
