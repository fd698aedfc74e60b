// Making files survive a crash: POSIX fsync of files and directories, and rename / text writes that are
// either fully done or not done at all. A rename is only durable once the directory holding the new
// name has been fsynced; these helpers do that.
#pragma once

#include <string>

namespace longctx::io {

// fsync(2) of a regular file's data and metadata. Throws InternalError naming the path.
void sync_file(const std::string& path);
// fsync(2) of a directory, which makes renames and creations inside it durable.
void sync_directory(const std::string& directory);
// rename(2) then fsync of the target's directory.
void rename_durably(const std::string& from, const std::string& to);
// Writes `text` to `path` atomically: `<path>.tmp`, fsync, rename, fsync directory.
void write_text_durably(const std::string& path, const std::string& text);
// The directory part of `path` ("." when it has none).
std::string directory_of(const std::string& path);

// Checks, before any work, that `path` (given by `--option`) can become a file: not empty, not a
// directory, in a directory that exists and that this process may write (the temporary file and the
// rename both happen there). Throws UsageError naming the option.
void check_output_path(const std::string& option, const std::string& path);
// The same for a directory made on first use (create_directories): the nearest part of `directory`
// that exists must be a directory this process may write. Errors start with `named`.
void check_output_directory(const std::string& named, const std::string& directory);
// Whether two paths name the same file: the same file when both exist (links included), otherwise the
// same absolute path once the existing directories in it are resolved.
bool same_file(const std::string& a, const std::string& b);

}  // namespace longctx::io
