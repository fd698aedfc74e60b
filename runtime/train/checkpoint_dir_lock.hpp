// checkpoint.dir's lock. Rank 0 holds an exclusive lock on <checkpoint.dir>/.longctx.lock for the whole
// run (the kernel drops it when the process ends, kill -9 included): two runs sharing one directory would
// prune and rename each other's checkpoints. The file names the holder. A file system without flock (some
// Lustre mounts) gets a warning and no lock.
#pragma once

#include <optional>
#include <string>

namespace longctx::train {

// The file in checkpoint.dir that rank 0 locks for the run.
inline constexpr const char* kLockFile = ".longctx.lock";

// Rank 0: creates `dir` (and the directories missing on its way) and takes its lock for this process's
// lifetime, writing the holder into the file (synced: other ranks read it back). UsageError naming
// checkpoint.dir when the directory cannot be made or another run holds the lock. Again: nothing.
void lock_checkpoint_dir(const std::string& dir);
// A run refused after the config phase made checkpoint.dir (another rank's check failed, or the ranks'
// comparison did): the lock file and the directories this run created go again, so that exit 2 / 3 leave
// nothing behind. A directory that is not empty by then (someone else's file) stays.
void unlock_checkpoint_dir();
// Rank 0, before each checkpoint: the locked file must still be <checkpoint.dir>/.longctx.lock. A directory
// removed (or moved) while the run held it was made again by the next checkpoint, without the lock, and a
// second run was let in: both wrote checkpoints, latest and log.jsonl there.
void require_checkpoint_dir_lock(const std::string& dir);
// The holder a lock file names ("pid N on HOST, since ..."), trailing blanks cut; nullopt when nothing
// could be read. Closes `fd`.
std::optional<std::string> read_lock_holder(int fd);

}  // namespace longctx::train
