#include "io/durable.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "runtime/core/error.hpp"

namespace longctx::io {
namespace {

[[noreturn]] void fail(const std::string& what, const std::string& path, int error) {
  throw InternalError(what + " " + path + ": " + std::strerror(error));
}

void sync_path(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags);
  if (fd < 0) fail("cannot open for fsync", path, errno);
  if (::fsync(fd) != 0) {
    const int error = errno;
    ::close(fd);
    // Some file systems refuse fsync on directories; that is not a failure of ours.
    if (!((flags & O_DIRECTORY) && (error == EINVAL || error == EROFS))) fail("fsync failed for", path, error);
    return;
  }
  ::close(fd);
}

}  // namespace

std::string directory_of(const std::string& path) {
  const std::string parent = std::filesystem::path(path).parent_path().string();
  return parent.empty() ? "." : parent;
}

void sync_file(const std::string& path) { sync_path(path, O_RDONLY); }

void sync_directory(const std::string& directory) { sync_path(directory, O_RDONLY | O_DIRECTORY); }

void rename_durably(const std::string& from, const std::string& to) {
  if (std::rename(from.c_str(), to.c_str()) != 0) fail("cannot rename " + from + " to", to, errno);
  sync_directory(directory_of(to));
}

void write_text_durably(const std::string& path, const std::string& text) {
  const std::string temporary = path + ".tmp";
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) fail("cannot create", temporary, errno);
  size_t written = 0;
  while (written < text.size()) {
    const ssize_t n = ::write(fd, text.data() + written, text.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      ::close(fd);
      fail("cannot write", temporary, error);
    }
    written += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const int error = errno;
    ::close(fd);
    fail("fsync failed for", temporary, error);
  }
  if (::close(fd) != 0) fail("cannot close", temporary, errno);
  rename_durably(temporary, path);
}

}  // namespace longctx::io
