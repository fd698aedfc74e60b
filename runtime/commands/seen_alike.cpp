// What the ranks of a job must see alike on their file systems (Command::shared_inputs), where one node's
// view can differ from another's: a relative path from another working directory, a node-local directory
// of the same name.
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "io/durable.hpp"
#include "runtime/commands/commands.hpp"

namespace longctx::cli {

int open_made_elsewhere(const std::string& path, double patience_seconds) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  // A network file system may answer from a lookup it cached when the file did not exist yet: listing
  // the directory (and its parent) makes it look again.
  const std::string dir = io::directory_of(path);
  const double nap = std::min(0.5, std::max(patience_seconds, 0.0) / 10);
  for (int attempt = 0; fd < 0 && errno == ENOENT && attempt < 10; ++attempt) {
    for (const std::string& d : {io::directory_of(dir), dir})
      if (DIR* listing = ::opendir(d.c_str())) ::closedir(listing);
    ::usleep(static_cast<useconds_t>(nap * 1e6));
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  }
  return fd;
}

double patience_for(const comm::Communicator& world) { return std::min(5.0, world.timeout_seconds() / 2); }

std::string probe_directory(comm::Communicator& world, const std::string& dir) {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  const std::string text = "made by rank 0, pid " + std::to_string(::getpid()) + " on " + host;
  const std::string probe = dir + "/.longctx-probe." + std::to_string(::getpid()) + "." + host;
  std::vector<int> made{0};
  if (world.rank() == 0) {
    const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd >= 0) {
      made[0] = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
      ::close(fd);
      if (!made[0]) ::unlink(probe.c_str());
    }
  }
  // Rank 0 removes its probe when done, also when a collective below throws (a timeout).
  struct Remove {
    bool owner;
    const std::string& path;
    ~Remove() {
      if (owner) ::unlink(path.c_str());
    }
  } remove{world.rank() == 0 && made[0] != 0, probe};
  world.broadcast(Span<int>(made), 0);
  if (!made[0]) return "(not checked: rank 0 could not make a file there)";
  const std::string path = comm::broadcast_text(world, probe, 0);  // rank 0's name: its pid and host
  std::string seen;
  const int fd = open_made_elsewhere(path, patience_for(world));
  if (fd < 0) {
    seen = "(no " + path.substr(path.rfind('/') + 1) + ": " + std::strerror(errno) + ")";
  } else {
    char got[512] = {};
    const ssize_t n = ::pread(fd, got, sizeof got - 1, 0);
    ::close(fd);
    seen = "\"" + std::string(got, n > 0 ? static_cast<size_t>(n) : 0) + "\" in it";
  }
  world.barrier();  // every rank has looked
  return seen;
}

}  // namespace longctx::cli
