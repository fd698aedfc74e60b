#include "runtime/commands/train_resume.hpp"

#include <filesystem>
#include <vector>

#include "io/checkpoint.hpp"
#include "runtime/core/activity.hpp"
#include "runtime/core/log.hpp"
#include "runtime/train/checkpoint_dir_lock.hpp"

namespace longctx::cli {
namespace {

// What a refused resume from `latest` adds to its message: the older checkpoints in `dir`, newest first, and
// how to resume from one; "" when there is none. By name only (no file is opened: every rank says it).
// `latest`: the checkpoint `latest` names, which is damaged; "" when `latest` itself is unusable (names a
// file that is not there, holds no name): then every checkpoint in `dir` is listed.
std::string older_checkpoints_hint(const std::string& dir, const std::string& latest) {
  std::vector<std::string> older;  // oldest first
  const std::optional<int64_t> latest_step = io::step_in_file_name(latest);
  for (const std::string& path : io::list_checkpoints(dir)) {
    const std::optional<int64_t> step = io::step_in_file_name(path);
    if (step && (latest.empty() || (latest_step && *step < *latest_step))) older.push_back(path);
  }
  if (older.empty()) return "";
  return ". Nothing was changed. " + std::string(latest.empty() ? "Checkpoints" : "Older checkpoints") + " in " +
         dir + ", newest first: " + io::newest_first_names(older) + ". " +
         (latest.empty() ? "" : "If " + std::filesystem::path(latest).filename().string() + " is damaged, ") +
         "`longctx ckpt verify " + log::shell_path(dir) + "` says which are whole; to resume from one, write its " +
         "name into " + dir + "/latest" + " (the steps after it are trained again)";
}

}  // namespace

StartingPoint start_from_checkpoint_dir(const TrainOptions& r, train::Trainer& trainer, const train::Dataset& data,
                                        const std::string& config_text, MPI_Comm mpi, int P, RunRecord& record) {
  StartingPoint start;
  try {  // a resume refused here (exit 2 / 3) removes the lock file this run made, as the config phase's refusals
    start.data_file = data.file_identity();
    std::optional<std::string> latest;
    try {
      if (!r.checkpoint_dir.empty()) latest = io::find_latest_checkpoint(r.checkpoint_dir);
    } catch (const InputError& e) {  // `latest` names a file that is gone, or holds no name: which are there
      throw InputError(e.what() + older_checkpoints_hint(r.checkpoint_dir, ""));
    }
    if (!latest && !r.checkpoint_dir.empty()) {  // (before: a fresh start beside step_9.h5, without a word)
      if (const std::string note = io::misnamed_checkpoints_note(r.checkpoint_dir); !note.empty())
        log::warn_once("checkpoint.dir=" + r.checkpoint_dir + " holds no committed checkpoint" + note +
                       ": this run starts at step 0");
      // Said also where nothing is amiss: a relative checkpoint.dir from another working directory was a
      // fresh start that looked like a resume (from the user-mistakes audit).
      std::error_code error;
      const std::filesystem::path dir(r.checkpoint_dir);
      log::info("checkpoint.dir=" + r.checkpoint_dir +
                (dir.is_relative() ? " (" + std::filesystem::absolute(dir, error).lexically_normal().string() + ")"
                                   : std::string()) +
                " holds no checkpoint: a fresh run, from step 1");
    }
    if (latest) {
      try {
        const activity::Scope doing("resuming from " + *latest);
        start.stored = train::load_checkpoint(trainer, *latest, config_text, mpi, start.data_file);
      } catch (const train::CheckpointOfAnotherModel&) {
        throw;  // its own message says what to do; an older checkpoint holds that model too
      } catch (const InputError& e) {
        // A damaged latest is refused (resuming elsewhere silently would train steps again): the message
        // says which older checkpoints there are and how to resume from one.
        throw InputError(e.what() + older_checkpoints_hint(r.checkpoint_dir, *latest));
      }
      // A run cannot go back: a latest past train.steps means the options name another run (or a typo).
      // Before this it printed "done" and exited 0 having trained nothing, which a script took for success.
      if (trainer.step() > r.steps)
        throw UsageError("train.steps=" + std::to_string(r.steps) + ": checkpoint.dir's latest, " + *latest +
                             ", is at step " + std::to_string(trainer.step()) + " already; give train.steps >= " +
                             std::to_string(trainer.step()) +
                             " (equal evaluates it and exits), or use another checkpoint.dir",
                         "train.steps");
      // Another token file than the run's (another count or digest) would be read from the checkpoint's
      // position in it, an offset into another corpus, and its held-out tail may hold what the run trained on.
      const train::Resumed& stored = start.stored;
      if (const std::string difference = stored.data_file && start.data_file
                                             ? io::token_identity_difference(stored.data_file->identity, *start.data_file)
                                             : "";
          !difference.empty()) {
        const std::string what = "data.path=" + r.data.path + " is not the token file the checkpoint's run trained on" +
                                 (stored.data_path.empty() ? "" : " (" + stored.data_path + ")") + ": " + difference;
        if (!r.allow_new_data_file)
          throw InputError(what + ". Give that file, or set data.allow_new_file=true to train on this one from its "
                           "first token");
        log::warn_once(what + "; data.allow_new_file=true: training goes on from its first token");
        start.new_data_file = true;
      }
      log::info("resumed from " + *latest + " at step " + std::to_string(trainer.step()));
      // Without `latest` the newest file by name is taken: a run killed before its first `latest`, or a
      // directory someone edited (a checkpoint of another run copied in is resumed, and its history decides
      // which of this one's files retention removes). Said, with the run it came from.
      std::error_code error;
      if (!std::filesystem::exists(std::filesystem::symlink_status(r.checkpoint_dir + "/latest", error)))
        log::warn_once("checkpoint.dir=" + r.checkpoint_dir + " has no `latest`: resumed from its newest checkpoint by "
                       "name, " + std::filesystem::path(*latest).filename().string() + " (run " +
                       (stored.run_id.empty() ? "without an id" : stored.run_id) +
                       "); if that is not this run's, stop it and write the name of the one to resume into " +
                       r.checkpoint_dir + "/latest");
      start.resumed = true;
      record.found_step = record.committed = trainer.step();
      record.committed_path = *latest;
      record.found_pending = record.committed_pending = stored.pending_eval.has_value();
    }
    check_stages_shardable(r, trainer.step(), P, SpanningSegments::may_end_short);
    // After every refusal of the resume (before: said first, then train.steps refused): rank 0 says it.
    if (start.resumed && !start.stored.changed_settings.empty())
      log::warn_once(record.committed_path + ": " + start.stored.changed_settings +
                     " (the run goes on with these settings, not as it would have gone on uninterrupted)");
  } catch (const Error& e) {
    if (e.code() == ExitCode::usage || e.code() == ExitCode::bad_input) train::unlock_checkpoint_dir();
    throw;
  }
  return start;
}

}  // namespace longctx::cli
