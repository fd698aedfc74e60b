#include "io/durable.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <utility>

#include "io/activation_dump.hpp"
#include "io/attend_file.hpp"
#include "io/checkpoint.hpp"
#include "io/h5.hpp"
#include "io/token_dataset.hpp"
#include "runtime/core/error.hpp"
#include "runtime/core/log.hpp"

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

// What a non-file at a path is, for messages.
std::string kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "not a regular file";
}

// Why `temporary` (with lstat `info`) may not be written through, or "" when it may.
std::string unusable_because(const std::string& temporary, const struct stat& info) {
  if (S_ISLNK(info.st_mode)) {
    std::error_code error;
    const std::string target = std::filesystem::read_symlink(temporary, error).string();
    return "is a symbolic link" + (target.empty() ? std::string() : " (to '" + target + "')") +
           "; outputs are written only into a file of their own there, never through a link";
  }
  if (!S_ISREG(info.st_mode)) return "is " + kind_of(info.st_mode) + ", where a temporary file is written";
  if (info.st_nlink > 1)
    return "has " + std::to_string(info.st_nlink) + " hard links; writing it would change the other names' file too";
  return "";
}

[[noreturn]] void refuse_temporary(const std::string& named, const std::string& temporary, const std::string& why) {
  throw UsageError(named + "'" + temporary + "' " + why + ": remove '" + temporary + "' (or choose another output)");
}

[[noreturn]] void refuse_in_use(const std::string& named, const std::string& temporary) {
  throw TemporaryInUse(named + "'" + temporary + "' is being written by another running process (it holds the file's "
                   "lock): wait for it to finish, or choose another output");
}

struct flock lock_request(short type) {
  struct flock lock {};
  lock.l_type = type;
  lock.l_whence = SEEK_SET;
  lock.l_start = kTemporaryLockByte;
  lock.l_len = 1;
  return lock;
}

// errno values that mean "this file system (or kernel) has no such locks": the claim goes on unlocked.
bool locks_unsupported(int error) { return error == EINVAL || error == ENOLCK || error == ENOSYS || error == EOPNOTSUPP; }

}  // namespace

TemporaryFile::TemporaryFile(TemporaryFile&& other) noexcept
    : fd_(other.fd_), path_(std::move(other.path_)), left_over_(other.left_over_) {
  other.fd_ = -1;
}

TemporaryFile& TemporaryFile::operator=(TemporaryFile&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = other.fd_;
    path_ = std::move(other.path_);
    left_over_ = other.left_over_;
    other.fd_ = -1;
  }
  return *this;
}

TemporaryFile::~TemporaryFile() { close(); }

void TemporaryFile::close() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void unlink_if_same_file(const char* path, dev_t device, ino_t inode) noexcept {
  struct stat named {};
  if (::lstat(path, &named) == 0 && named.st_dev == device && named.st_ino == inode) ::unlink(path);
}

void TemporaryFile::remove_if_held() noexcept {
  struct stat held {};
  if (fd_ >= 0 && ::fstat(fd_, &held) == 0) unlink_if_same_file(path_.c_str(), held.st_dev, held.st_ino);
}

TemporaryFile TemporaryFile::claim(const std::string& path) {
  const std::string named = "temporary file ";
  // A crashed run's file, once removed, stays open (and locked) here until the new file is claimed: its
  // inode number is then not the new file's.
  TemporaryFile left_over;
  // A few tries: the name may be renamed or removed by its holder between our open and our lock.
  for (int attempt = 0; attempt < 8; ++attempt) {
    struct stat before {};
    const bool existed = ::lstat(path.c_str(), &before) == 0;
    if (existed) {
      const std::string why = unusable_because(path, before);
      if (!why.empty()) refuse_temporary(named, path, why);
    }
    // O_NOFOLLOW: a link made after the lstat is not followed (ELOOP); O_NONBLOCK: nor does a FIFO hang us.
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644);
    if (fd < 0) {
      const int error = errno;
      struct stat now {};
      if ((error == ELOOP || error == EISDIR || error == ENXIO) && ::lstat(path.c_str(), &now) == 0)
        refuse_temporary(named, path, unusable_because(path, now));
      fail("cannot create", path, error);
    }
    TemporaryFile file;
    file.fd_ = fd;
    file.path_ = path;
    struct stat opened {};
    if (::fstat(fd, &opened) != 0) fail("cannot stat", path, errno);
    if (!S_ISREG(opened.st_mode)) refuse_temporary(named, path, "is " + kind_of(opened.st_mode));
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    struct flock lock = lock_request(F_WRLCK);
    if (::fcntl(fd, F_OFD_SETLK, &lock) != 0) {
      const int error = errno;
      if (error == EAGAIN || error == EACCES) refuse_in_use(named, path);
      if (!locks_unsupported(error)) fail("cannot lock", path, error);
    }
    // Still the file the name holds? (Its holder may have renamed it away before letting go of it.)
    struct stat now {};
    if (::lstat(path.c_str(), &now) != 0 || now.st_dev != opened.st_dev || now.st_ino != opened.st_ino) continue;
    if (now.st_nlink > 1) refuse_temporary(named, path, unusable_because(path, now));
    if (existed && before.st_dev == now.st_dev && before.st_ino == now.st_ino) {
      // A crashed run's file. Removed, not reused: ranks of that run may still be alive, with its device
      // and inode registered for removal (atomic_output.hpp, RegisteredClaim), and must not remove ours.
      if (left_over.fd_ < 0) {
        log::info("replacing " + path + ", left by an earlier run that did not finish");
        if (::unlink(path.c_str()) != 0 && errno != ENOENT) fail("cannot remove", path, errno);
        left_over = std::move(file);
        continue;
      }
      // Another one, put there and left meanwhile (a rare race): reused, emptied.
      if (::ftruncate(fd, 0) != 0) fail("cannot truncate", path, errno);
    }
    file.left_over_ = left_over.fd_ >= 0;
    return file;
  }
  throw InternalError("cannot claim temporary file " + path + ": it kept being replaced by another process");
}

namespace {
bool g_stdin_closed = false;
bool g_stdout_closed = false;
}  // namespace

void occupy_closed_standard_streams() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    int opened = fd == 1 ? ::open("/dev/full", O_WRONLY) : -1;  // the lowest free number: fd
    if (opened < 0) opened = ::open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
    if (opened != fd && opened >= 0) {
      ::dup2(opened, fd);
      ::close(opened);
    }
    if (fd == 0) g_stdin_closed = true;
    if (fd == 1) g_stdout_closed = true;
  }
}

bool standard_input_was_closed() { return g_stdin_closed; }
bool standard_output_was_closed() { return g_stdout_closed; }

std::string check_standard_output() {
  errno = 0;
  std::cout.flush();  // (through stdio's buffer: its failure is the errno of stdio's write)
  int error = errno;
  if (std::fflush(stdout) != 0 && error == 0) error = errno;
  if (!std::ferror(stdout) && std::cout.good()) return "";
  if (g_stdout_closed) return "standard output was closed when longctx started";
  return error != 0 ? std::strerror(error) : "a write to it failed";  // (its errno is gone: an earlier flush)
}

std::string non_regular_kind(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0 || S_ISREG(info.st_mode)) return "";
  return kind_of(info.st_mode);
}

std::string output_target(const std::string& path) {
  // The chain by hand (canonical() fails where the last target does not exist yet: a link made before the
  // first run, into a results directory, was replaced by a file), each hop relative to its link's directory.
  std::filesystem::path at = path;
  for (int hop = 0; hop < 40; ++hop) {
    struct stat info {};
    if (::lstat(at.c_str(), &info) != 0 || !S_ISLNK(info.st_mode)) break;
    std::error_code error;
    const std::filesystem::path next = std::filesystem::read_symlink(at, error);
    if (error) return path;
    at = next.is_absolute() ? next : at.parent_path() / next;  // (not normalized: "d/.." is d's parent)
  }
  if (at == std::filesystem::path(path)) return path;
  struct stat info {};
  if (::lstat(at.c_str(), &info) == 0) {
    // A loop, or a link to a directory, a device: the given name, so that the refusal names what was typed.
    if (S_ISLNK(info.st_mode) || !S_ISREG(info.st_mode)) return path;
    return at.string();
  }
  // Not there yet: written there where its directory is (the link then leads to it), else the link is replaced.
  const std::filesystem::path parent = at.parent_path().empty() ? "." : at.parent_path();
  std::error_code error;
  return std::filesystem::is_directory(parent, error) ? at.string() : path;
}

void check_readable(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) {
    const int error = errno;
    if (error == ENOENT || error == ENOTDIR) return;
    throw InputError(path + ": cannot look it up (" + std::strerror(error) + ")");
  }
  const int wanted = S_ISDIR(info.st_mode) ? R_OK | X_OK : R_OK;
  if (::faccessat(AT_FDCWD, path.c_str(), wanted, AT_EACCESS) != 0 && errno == EACCES)
    throw InputError(path + ": cannot read it (" + std::strerror(EACCES) + ")");
}

std::string missing_file_text(const std::string& path, const std::string& what) {
  struct stat info {};
  if (::stat(path.c_str(), &info) == 0 || errno != ENOTDIR) return "no such " + what;
  // The first part of the path that is there and no directory (a trailing / makes the whole path one).
  for (size_t end = path.find('/', 1); end != std::string::npos; end = path.find('/', end + 1))
    if (const std::string part = path.substr(0, end); ::stat(part.c_str(), &info) == 0 && !S_ISDIR(info.st_mode))
      return "no such " + what + ": " + log::printable(part) + " is " +
             (S_ISREG(info.st_mode) ? "a file" : "no directory") + ", not a directory" +
             (end + 1 == path.size() ? " (drop the trailing /)" : "");
  return "no such " + what + " (a part of the path is no directory)";
}

bool temporary_in_use(const std::string& temporary) {
  const int fd = ::open(temporary.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return false;
  struct flock lock = lock_request(F_WRLCK);
  const bool held = ::fcntl(fd, F_OFD_GETLK, &lock) == 0 && lock.l_type != F_UNLCK;
  ::close(fd);
  return held;
}

void check_temporary_path(const std::string& named, const std::string& temporary) {
  struct stat info {};
  if (::lstat(temporary.c_str(), &info) != 0) return;
  const std::string prefix = named + ": its temporary file ";
  const std::string why = unusable_because(temporary, info);
  if (!why.empty()) refuse_temporary(prefix, temporary, why);
  if (temporary_in_use(temporary)) refuse_in_use(prefix, temporary);
}

std::string full_disk_note(const std::string& directory) {
  std::string note;
  std::error_code error;
  const std::filesystem::space_info space = std::filesystem::space(directory, error);
  if (!error && space.available < (uint64_t{4} << 20))
    note = " (the file system of " + directory + " has " + std::to_string(space.available) + " bytes free: full?)";
  // A file-size limit (a job's `ulimit -f`) fails a write as a full disk does, with SIGXFSZ ignored: named
  // too (before: under mpirun, "file write failed (Write failed)" alone; from the crash audit).
  struct rlimit limit {};
  if (::getrlimit(RLIMIT_FSIZE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY)
    note += " (this process's file-size limit, `ulimit -f`, is " + std::to_string(limit.rlim_cur) + " bytes)";
  return note;
}

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
    const int why = errno;
    if (why == EEXIST) return;  // a leftover of a killed run: the directory takes files
    // A full file system is exit 1, as a checkpoint that finds the disk full (before: exit 2, which a
    // script reads as "fix the command"; from an audit).
    throw_cannot_make_file(named + ": cannot create files in directory '" + directory + "' (" + std::strerror(why) + ")",
                           why);
  }
  ::close(fd);
  ::unlink(probe.c_str());
}

}  // namespace

void refuse_standard_output(const std::string& named, const std::string& option, const std::string& path,
                            const char* kind) {
  if (path == "-")
    throw UsageError(named + ": longctx writes this to a " + kind + ", not to standard output; name one (./- for a " +
                         kind + " called '-')",
                     option);
}

void check_output_path(const std::string& option, const std::string& path) {
  const std::string named = "--" + option + " '" + path + "'";
  if (path.empty()) throw UsageError("--" + option + ": empty path: give a file name", option);
  refuse_standard_output("--" + option + " -", option, path);
  if (path.back() == '/') throw UsageError(named + ": names a directory; give a file name");
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) throw UsageError(named + " is a directory; give a file name");
  // Outputs are written to <path>.tmp and renamed over <path>: that would replace a device or a pipe
  // (/dev/null as root) with a plain file.
  const std::filesystem::file_status status = std::filesystem::status(path, error);
  // (Before: the rename replaced a link that loops, which output_target leaves as given for this refusal.)
  if (error == std::errc::too_many_symbolic_link_levels)
    throw UsageError(named + " is a symbolic link that loops; remove it or give another name");
  if (std::filesystem::exists(status) && !std::filesystem::is_regular_file(status))
    throw UsageError(named + " exists and is not a regular file (a device or a pipe); outputs are written to a "
                     "temporary file and renamed over it: give a file name");
  require_writable_directory(named, directory_of(path));
  check_temporary_path(named, path + ".tmp");
}

namespace {

// The HDF5 superblock's signature, at byte 0 or at 512, 1024, 2048, ... (after a user block).
bool has_hdf5_signature(const std::string& path) {
  static const char kSignature[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (!file) return true;  // unreadable: the rename replaces it all the same; not ours to judge here
  bool found = false;
  for (long offset = 0; !found; offset = offset == 0 ? 512 : offset * 2) {
    char bytes[8];
    if (std::fseek(file, offset, SEEK_SET) != 0 || std::fread(bytes, 1, 8, file) != 8) break;
    found = std::memcmp(bytes, kSignature, 8) == 0;
  }
  std::fclose(file);
  return found;
}

}  // namespace

void check_hdf5_output_path(const std::string& option, const std::string& path, const std::string& writes_format,
                            const std::vector<std::string>& formatless_ok) {
  check_output_path(option, path);
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error) || std::filesystem::file_size(path, error) == 0 || error) return;
  try {
    check_readable(path);
  } catch (const InputError&) {  // (before: "is not an HDF5 file", or "cannot be read: damaged?")
    throw UsageError("--" + option + " '" + path + "' exists and this user may not read it, so what it is cannot be "
                     "told; writing would replace it: move it away or give another name");
  }
  if (!has_hdf5_signature(path))
    throw UsageError("--" + option + " '" + path + "' exists and is not an HDF5 file; writing would replace it: "
                     "move it away or give another name");
  // A longctx file of another kind: `data import --out ck/step_00000006.h5` replaced a run's checkpoint.
  std::string format;
  bool readable = true, formatless_output = false;
  try {
    const h5::File existing = h5::File::open(path, h5::Mode::read, MPI_COMM_NULL);
    if (existing.has_attribute("format")) format = existing.read_string_attribute("format");
    const std::vector<std::string> children = existing.children();
    formatless_output = format.empty() && !children.empty() && !formatless_ok.empty() &&
                        std::all_of(children.begin(), children.end(), [&](const std::string& name) {
                          return std::find(formatless_ok.begin(), formatless_ok.end(), name) != formatless_ok.end() &&
                                 existing.has_dataset(name);
                        });
  } catch (const h5::FileLocked&) {  // (before: "an HDF5 file that is not ... (it cannot be read: damaged?)")
    throw UsageError("--" + option + " '" + path + "' exists and another process has it open for writing (HDF5 "
                     "file locking); writing would replace it under that process: wait for it to close the file, or "
                     "give another name");
  } catch (const h5::FileMarkedOpen&) {  // (a FileLocked's "another process has it open" may be untrue here)
    throw UsageError("--" + option + " '" + path + "' exists and is marked as open for writing by an HDF5 "
                     "writer (one that has it open, or that ended without closing it); writing would replace it: "
                     "move it away or give another name");
  } catch (const std::exception&) {  // damaged
    readable = false;
  }
  if (formatless_output) return;
  static const std::pair<const char*, const char*> kKinds[] = {{kCheckpointFormat, "a longctx checkpoint"},
                                                              {kTokenFormat, "a longctx token dataset"},
                                                              {kActivationFormat, "a longctx activation dump"},
                                                              {kAttendOutputFormat, "a longctx attend output"}};
  std::string writes_kind = "a file of format " + writes_format;
  for (const auto& [name, kind] : kKinds) {
    if (writes_format == name) writes_kind = kind;
    if (format == name && format != writes_format)
      throw UsageError("--" + option + " '" + path + "' exists and is " + kind + " (format " + format +
                       "); writing would replace it: move it away or give another name");
  }
  if (writes_format.empty() || format == writes_format) return;
  throw UsageError("--" + option + " '" + path + "' exists and is an HDF5 file that is not " + writes_kind + " (" +
                   (!readable ? std::string("it cannot be read: damaged?")
                              : format.empty() ? std::string("it has no format attribute")
                                               : "format " + format) +
                   "); writing would replace it: move it away or give another name");
}

void check_json_output_path(const std::string& option, const std::string& path, const std::string& writing) {
  check_output_path(option, path);
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error) || error) return;
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (!file) return;  // unreadable: the write fails and says so
  // NUL bytes too: what a power loss can leave of a log's last blocks (ext4), which a resume drops.
  int first = std::fgetc(file);
  while (first == ' ' || first == '\t' || first == '\n' || first == '\r' || first == '\0') first = std::fgetc(file);
  std::fclose(file);
  if (first == EOF || first == '{') return;
  const std::string what = has_hdf5_signature(path) ? "an HDF5 file" : "not a JSON file";
  throw UsageError("--" + option + " '" + path + "' exists and is " + what + "; " + writing +
                   ": move it away or give another name");
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

bool out_of_space(int error) { return error == ENOSPC || error == EDQUOT; }

void throw_cannot_make_file(const std::string& message, int error, const std::string& option) {
  if (out_of_space(error)) throw InternalError(message + "; free some space there and run again");
  throw UsageError(message, option);
}

int reserve_space(int fd, uint64_t offset, uint64_t bytes) {
  if (bytes == 0) return 0;
  if (fd < 0) return EOPNOTSUPP;
  for (;;) {
    if (::fallocate(fd, FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset), static_cast<off_t>(bytes)) == 0) return 0;
    // A large fallocate on tmpfs gives up on a pending signal (train's stop): again, as it did not reserve.
    if (errno == EINTR) continue;
    return out_of_space(errno) ? errno : EOPNOTSUPP;
  }
}

void release_reserved_space(int fd, uint64_t reserved_end) {
  struct stat written {};
  if (fd >= 0 && reserved_end > 0 && ::fstat(fd, &written) == 0 && reserved_end > static_cast<uint64_t>(written.st_size) &&
      ::ftruncate(fd, written.st_size + 1) == 0 && ::ftruncate(fd, written.st_size) == 0)
    ::fsync(fd);
}

void rename_durably(const std::string& from, const std::string& to) {
  if (std::rename(from.c_str(), to.c_str()) != 0) fail("cannot rename " + from + " to", to, errno);
  sync_directory(directory_of(to));
}

PreparedText::PreparedText(const std::string& path, const std::string& text)
    : PreparedText(path, text, TemporaryFile::claim(path + ".tmp")) {}

PreparedText::PreparedText(const std::string& path, const std::string& text, TemporaryFile claimed)
    : path_(path), temporary_(std::move(claimed)) {
  if (temporary_.fd() < 0 || temporary_.path() != path + ".tmp")
    throw InternalError("PreparedText " + path + ": not given the claim of " + path + ".tmp");
  const int fd = temporary_.fd();
  // Any failure from here on removes the temporary file: a failed write leaves nothing behind.
  const auto fail_and_remove = [&](const std::string& what, int error) {
    temporary_.remove_if_held();
    temporary_.close();
    fail(what, path_ + ".tmp", error);
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
}

PreparedText::~PreparedText() {
  if (!published_) temporary_.remove_if_held();
}

void PreparedText::publish() {
  published_ = true;
  try {
    rename_durably(temporary_.path(), path_);
  } catch (...) {
    temporary_.remove_if_held();  // gone already when only the directory fsync failed
    throw;
  }
}

void write_text_durably(const std::string& path, const std::string& text) { PreparedText(path, text).publish(); }

}  // namespace longctx::io
