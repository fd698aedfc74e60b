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

namespace {

// `directory` must exist, be a directory, and let this process create files in it.
void require_writable_directory(const std::string& named, const std::string& directory) {
  std::error_code error;
  if (!std::filesystem::is_directory(directory, error))
    throw UsageError(named + ": " + (std::filesystem::exists(directory, error)
                                         ? "'" + directory + "' is not a directory"
                                         : "directory '" + directory + "' does not exist"));
  if (::access(directory.c_str(), W_OK | X_OK) != 0)
    throw UsageError(named + ": cannot write in directory '" + directory + "' (" + std::strerror(errno) + ")");
  if (::geteuid() != 0) return;
  // access() grants root everything, also where no file can be made (/sys, /proc): try making one.
  const std::string probe = directory + "/.longctx-write-test." + std::to_string(::getpid());
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return;  // a leftover of a killed run: the directory takes files
    throw UsageError(named + ": cannot create files in directory '" + directory + "' (" + std::strerror(errno) + ")");
  }
  ::close(fd);
  ::unlink(probe.c_str());
}

}  // namespace

void check_output_path(const std::string& option, const std::string& path) {
  const std::string named = "--" + option + " '" + path + "'";
  if (path.empty()) throw UsageError("--" + option + ": empty path");
  if (path.back() == '/') throw UsageError(named + ": names a directory; give a file name");
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) throw UsageError(named + " is a directory; give a file name");
  // Outputs are written to <path>.tmp and renamed over <path>: that would replace a device or a pipe
  // (/dev/null as root) with a plain file.
  const std::filesystem::file_status status = std::filesystem::status(path, error);
  if (std::filesystem::exists(status) && !std::filesystem::is_regular_file(status))
    throw UsageError(named + " exists and is not a regular file (a device or a pipe); outputs are written to a "
                     "temporary file and renamed over it: give a file name");
  require_writable_directory(named, directory_of(path));
}

void check_output_directory(const std::string& named, const std::string& directory) {
  namespace fs = std::filesystem;
  std::error_code error;
  fs::path existing = fs::absolute(directory, error);
  while (!existing.empty() && !fs::exists(existing, error) && existing != existing.parent_path())
    existing = existing.parent_path();
  require_writable_directory(named, existing.string());
}

bool same_file(const std::string& a, const std::string& b) {
  namespace fs = std::filesystem;
  std::error_code error;
  if (fs::exists(a, error) && fs::exists(b, error)) return fs::equivalent(a, b, error);
  const fs::path x = fs::weakly_canonical(fs::absolute(a, error), error);
  const fs::path y = fs::weakly_canonical(fs::absolute(b, error), error);
  return x == y;
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
  // Any failure from here on removes the temporary file: a failed write leaves nothing behind.
  const auto fail_and_remove = [&](const std::string& what, int error) {
    ::close(fd);
    std::remove(temporary.c_str());
    fail(what, temporary, error);
  };
  size_t written = 0;
  while (written < text.size()) {
    const ssize_t n = ::write(fd, text.data() + written, text.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_and_remove("cannot write", errno);
    }
    written += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) fail_and_remove("fsync failed for", errno);
  if (::close(fd) != 0) {
    const int error = errno;
    std::remove(temporary.c_str());
    fail("cannot close", temporary, error);
  }
  try {
    rename_durably(temporary, path);
  } catch (...) {
    std::remove(temporary.c_str());  // gone already when only the directory fsync failed
    throw;
  }
}

}  // namespace longctx::io
