// Making files survive a crash: POSIX fsync of files and directories, and rename / text writes that are
// either fully done or not done at all. A rename is only durable once the directory holding the new
// name has been fsynced; these helpers do that.
//
// Temporary files (`<out>.tmp`, written then renamed over `<out>`) are claimed, never opened blindly:
//   - the name is opened with O_NOFOLLOW and must be a plain file with one link: a symbolic link, a
//     hard link to some other file, a directory, a FIFO or a device found there is refused (UsageError,
//     "remove it"), so nothing but the output's own temporary file is ever written;
//   - while a writer holds it, it holds an open-file-description lock (fcntl F_OFD_SETLK) on one byte far
//     past any data (kTemporaryLockByte: MPI-IO's and HDF5's own locks never overlap it). A second
//     writer of the same output finds the lock and is refused instead of truncating the first one's file;
//   - a temporary file nobody holds is what a crashed or killed run left: the next writer of that output
//     takes it over (removes it and creates a new file there: another inode, which ranks of the crashed
//     run still alive do not know), so such files never pile up nor block a later run.
// On file systems without fcntl locks the claim still refuses links and non-files, and treats an
// existing temporary file as left over.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>
#include <utility>

#include "runtime/core/error.hpp"
#include "runtime/core/watchdog.hpp"

namespace longctx::io {

inline constexpr off_t kTemporaryLockByte = off_t{1} << 62;

// A temporary file another running process holds the lock of (it is writing that output now): a usage
// error, typed so that a writer of a small file may wait for the other to finish (train's log.summary).
class TemporaryInUse : public UsageError {
 public:
  using UsageError::UsageError;
};

// Unlinks `path` (itself: a link is not followed) only while it names the file of device `device` and
// inode `inode`, not one put at that name since. Async-signal-safe (lstat, unlink).
void unlink_if_same_file(const char* path, dev_t device, ino_t inode) noexcept;

// A claimed temporary file: its descriptor (read/write) and the lock, released by close() or the
// destructor (after the caller renamed or removed the file).
class TemporaryFile {
 public:
  TemporaryFile() = default;
  // Creates `path`. A left-over plain file there (a crashed run's, no longer held) is removed first, so
  // the new file is another inode. Throws UsageError naming `path` when it is not usable (see above) or
  // another process holds it.
  static TemporaryFile claim(const std::string& path);
  TemporaryFile(TemporaryFile&& other) noexcept;
  TemporaryFile& operator=(TemporaryFile&& other) noexcept;
  TemporaryFile(const TemporaryFile&) = delete;
  TemporaryFile& operator=(const TemporaryFile&) = delete;
  ~TemporaryFile();

  int fd() const { return fd_; }
  const std::string& path() const { return path_; }
  bool left_over() const { return left_over_; }  // took over a crashed run's file
  void close() noexcept;
  // Removes the file while `path()` still names the one held (same device and inode): since other ranks
  // may remove it on a failure (atomic_output.hpp, RegisteredClaim), and another run then claim the
  // name, holding the lock no longer proves the name is ours. Nothing when not held.
  void remove_if_held() noexcept;

 private:
  int fd_ = -1;
  std::string path_;
  bool left_over_ = false;
};

// The up-front part of TemporaryFile::claim, which changes nothing: throws UsageError starting with
// `named` when `temporary` exists and could not be claimed (a link, not a plain file, held by a running
// writer). A missing or left-over temporary file passes.
void check_temporary_path(const std::string& named, const std::string& temporary);
// "" when `path` (links followed) is a regular file or does not exist; otherwise what it is instead: "a
// directory", "a FIFO (named pipe)", "a socket", "a character device", ...
std::string non_regular_kind(const std::string& path);

// Standard input, output and error closed at the start (`cmd <&-`, a daemon, cron) are opened on /dev/null
// (standard output on /dev/full, where writes fail: what a command prints there is its result, which
// check_standard_output reports lost), before MPI_Init: Open MPI's own pipes took the free numbers, so
// `data import --text -` read its pipe and waited forever, and what longctx printed would have gone into
// them. Called first thing in main().
void occupy_closed_standard_streams();
// Whether standard input was closed at the start (occupy_closed_standard_streams): `-` is then refused.
bool standard_input_was_closed();
// Whether standard output was closed at the start: a command whose result goes there is refused.
bool standard_output_was_closed();
// "" when everything printed to standard output was written (flushed now); else why not ("standard output
// was closed when longctx started", or the error of the write: No space left on device).
std::string check_standard_output();
// Throws InputError "PATH: cannot read it (Permission denied)" where this process may not read `path`
// (for a directory: list and enter it), or "cannot look it up" where a directory on the way is closed to
// it. A missing path passes: callers say "no such file" in their own words. Without it, a file a user
// may not read was "truncated, damaged or not HDF5", and a closed directory "no such file" or exit 1.
void check_readable(const std::string& path);
// Why `path`, which stat(2) does not find, is not there, for "PATH: <this>": "no such WHAT", or where a
// part of it is a file, "no such file: DIR is a file, not a directory" ("x.h5/": a trailing / asks for a
// directory; before, the file x.h5 was said not to be there).
std::string missing_file_text(const std::string& path, const std::string& what = "file");
// Whether a running process holds `temporary` (its lock); false for a missing file or one without locks.
bool temporary_in_use(const std::string& temporary);

// fsync(2) of a regular file's data and metadata. Throws InternalError naming the path.
void sync_file(const std::string& path);
// fsync(2) of a directory, which makes renames and creations inside it durable.
void sync_directory(const std::string& directory);
// rename(2) then fsync of the target's directory.
void rename_durably(const std::string& from, const std::string& to);
// Whether `error` (an errno) says the file system has no room: no block or inode left, or a quota.
bool out_of_space(int error);
// Throws `message`, about a file that cannot be made for `error`: InternalError (exit 1, saying to free
// space) where the file system is full, which is no fault of the options; else UsageError (exit 2), about
// `option` when one is named.
[[noreturn]] void throw_cannot_make_file(const std::string& message, int error, const std::string& option = "");
// Room for `bytes` of the file open as `fd` from `offset` on, allocated ahead of its writes (fallocate(2),
// the file's size unchanged; retried when a signal interrupts it): 0 when reserved, ENOSPC or EDQUOT when
// the file system has no such room, EOPNOTSUPP when it cannot reserve at all (and the like: the file is
// then written as it would be without).
int reserve_space(int fd, uint64_t offset, uint64_t bytes);
// Frees what reserve_space allocated past the file's end, up to `reserved_end` (HDF5 truncates only a file
// longer than its data, and ext4 punches no hole past the end): a shrinking truncate (one byte longer, then
// back), then fsync. Best effort: a file that was not reserved past its end is left alone.
void release_reserved_space(int fd, uint64_t reserved_end);
// Writes `text` to `path` atomically: `<path>.tmp` (claimed), fsync, rename, fsync directory.
void write_text_durably(const std::string& path, const std::string& text);
// write_text_durably in two steps, for a text that must appear only with another output: the constructor
// claims `<path>.tmp`, writes and fsyncs it (a full disk fails here); publish() renames it over `path`.
// Destroyed unpublished, it removes the temporary file.
class PreparedText {
 public:
  PreparedText(const std::string& path, const std::string& text);
  // The same with `<path>.tmp` claimed already (ClaimedEarly::take).
  PreparedText(const std::string& path, const std::string& text, TemporaryFile claimed);
  PreparedText(const PreparedText&) = delete;
  PreparedText& operator=(const PreparedText&) = delete;
  ~PreparedText();
  void publish();

 private:
  std::string path_;
  TemporaryFile temporary_;
  bool published_ = false;
};
// The directory part of `path` ("." when it has none).
std::string directory_of(const std::string& path);
// For the message of a failed write: " (the file system of <directory> has N bytes free: full?)" when it
// has less than 4 MiB free, and the process's file-size limit where it has one; else "". MPI-IO does not
// say why a write failed ("file write failed").
std::string full_disk_note(const std::string& directory);
// Runs `write`; an InternalError it throws gets full_disk_note(directory) added, unless it says so already.
template <class Write>
void noting_a_full_disk(const std::string& directory, Write&& write) {
  try {
    write();
  } catch (const InternalError& e) {
    const std::string what = e.what();
    if (what.find("No space left") != std::string::npos || what.find("File too large") != std::string::npos) throw;
    const std::string note = full_disk_note(directory);
    if (note.empty()) throw;
    throw InternalError(what + note);
  }
}
// noting_a_full_disk under a watchdog::Guard named `what` whose expiry message names a full disk of
// `directory` too: a write that fails on one rank can leave the others waiting inside HDF5.
template <class Write>
void guarded_write(const std::string& what, const std::string& directory, Write&& write) {
  watchdog::Guard guard(what, [directory] { return full_disk_note(directory); });
  noting_a_full_disk(directory, std::forward<Write>(write));
}

// The file that writing `path` replaces: where `path` is a symbolic link (chain), the file it leads to,
// also one not there yet whose directory is (a link made before the first run), so the link stays and
// leads to the new file; otherwise `path` itself (a link loop, a link to a directory or device, which the
// output checks then refuse by the given name; a link into a missing directory is replaced). What every
// output does: --output, --report, --out, dump.activations, log.jsonl, log.summary (before: the first four
// replaced the link by a file).
std::string output_target(const std::string& path);
// An output `path` of "-" (`named`: how the option and value read in the message): refused, UsageError for
// `option`. It would be a file or directory called "-" (`--report -` made one, exit 0, for a user who
// wanted the JSON on standard output).
void refuse_standard_output(const std::string& named, const std::string& option, const std::string& path,
                            const char* kind = "file");
// Checks, before any work, that `path` (given by `--option`) can become a file: not "-", not empty, not a
// directory, in a directory that exists and that this process may write (the temporary file and the
// rename both happen there), and that `<path>.tmp` can be claimed (check_temporary_path). Throws
// UsageError naming the option.
void check_output_path(const std::string& option, const std::string& path);
// check_output_path for an HDF5 output, which also refuses to replace an existing file that is not HDF5
// (a config file or a script named by mistake), or one of another longctx format than `writes_format`
// (its root `format` attribute: a checkpoint, a token dataset, an activation dump or an attend output
// named by mistake): UsageError naming the option. An output with a format of its own (`writes_format`
// given) replaces only an earlier file of that format: an HDF5 file without one (an attend input, a file
// of another tool) or one that cannot be read (a damaged checkpoint to salvage) is refused too (before:
// `data import --out` replaced them, and `attend --output` another run's q, k, v). Except a file without
// a format whose root holds nothing but datasets named in `formatless_ok` (the outputs of a version that
// wrote no format). An empty file may go.
void check_hdf5_output_path(const std::string& option, const std::string& path, const std::string& writes_format = "",
                            const std::vector<std::string>& formatless_ok = {});
// check_output_path for a JSON output (a report replaced whole, a JSON-lines log appended to), which also
// refuses an existing file that is not JSON, i.e. whose first byte other than white space or NUL is not `{`
// (a checkpoint, an input or a config file named by mistake): UsageError naming the option and saying
// what writing would do (`writing`: "writing would replace it", "appending would damage it"). An empty
// file may go.
void check_json_output_path(const std::string& option, const std::string& path, const std::string& writing);
// The same for a directory made on first use (create_directories): the nearest part of `directory`
// that exists must be a directory this process may write. Errors start with `named`.
void check_output_directory(const std::string& named, const std::string& directory);
// Whether two paths name the same file: the same file when both exist (links included), otherwise the
// same absolute path once the existing directories in it are resolved.
bool same_file(const std::string& a, const std::string& b);

}  // namespace longctx::io
