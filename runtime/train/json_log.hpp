// log.jsonl (interfaces.md), written by rank 0: one JSON object per logged step, kept so that the file
// reads like one uninterrupted run through crashes, restarts and resumes.
//
// A resumed run first drops its lines after its checkpoint's step (a crash after logging but before the
// next checkpoint left them; this run logs those steps again) and a torn last line, so the file reads like
// one uninterrupted run; an earlier run's lines before them stay. A failed write stops the run: lines are
// not lost silently.
//
// A run that stopped before its first checkpoint (preempted, killed) and is started again in the same
// checkpoint.dir is a fresh run, whose earlier start's lines would be read as a run of their own (steps 1-5,
// then 1, 2, ...). So until its first checkpoint a fresh run keeps a note in checkpoint.dir (kLogStart) of
// which file it logs to (inode), where its lines begin and end (rewritten after each line) and a
// fingerprint of the text before them. A fresh start that finds the file as the note left it (the same
// inode and text before, nothing after the end but a torn line) drops those lines first. Anything else
// (another run appended since, the file replaced) keeps every line: the note never costs another run's.
// Each line says which run wrote it (the id a run keeps through its checkpoints): a resume drops only its own.
#pragma once

#include <mpi.h>
#include <sys/types.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace longctx::train {

// The note in checkpoint.dir of where a fresh run's log.jsonl lines start (JsonLog).
inline constexpr const char* kLogStart = ".longctx-log-start";
inline std::string log_start_path(const std::string& checkpoint_dir) { return checkpoint_dir + "/" + kLogStart; }
// How a line names the run that wrote it: `"run": "<id>"`.
inline constexpr const char* kRunKey = "\"run\": \"";

// `x` as a JSON number, as cli::double_text writes it (33.3, not 33.299999999999997); "null" for nan and
// inf, which JSON lacks.
std::string json_number(double x);

// Whether `id` can be a run id (what new_run_id makes, or a hand-edited checkpoint's): it goes into JSON.
bool valid_run_id(const std::string& id);
// A new run's id: 16 hex digits from rank 0's random device, the same on every rank of `comm`
// (MPI_COMM_NULL: one rank).
std::string new_run_id(MPI_Comm comm, int rank);

class JsonLog {
 public:
  // `active`: this rank writes (rank 0); "" `path`: no log. `kept_through`: a resumed run keeps its lines
  // through this step and logs the later ones again; -1: a fresh run, which keeps its start note in
  // `checkpoint_dir` ("": none). `run_id`: this run's ("" for a run resumed from a checkpoint without one).
  JsonLog(const std::string& path, bool active, int64_t kept_through, const std::string& checkpoint_dir,
          const std::string& run_id);
  // A file this run made and left empty is removed.
  ~JsonLog();
  JsonLog(const JsonLog&) = delete;
  JsonLog& operator=(const JsonLog&) = delete;
  // The first checkpoint is committed: a restart resumes from it (and trims by step); no note any more.
  void forget_start();
  // Whether `step` is logged off the log.every grid: step 1 of a fresh run appending to earlier lines.
  bool must_log(int64_t step) const { return log_step_one_ && step == 1; }
  // A resumed run's line of the step it keeps through (the checkpoint's), with the evaluation done now: in
  // place of that step's line without it, where the file holds one; else (that step was off the log.every
  // grid of the run that trained it) appended. Before: with a line there, the evaluation was not logged.
  void complete_kept_step(const std::string& line);
  // Appends `line` (one JSON object, no newline); InternalError when the write fails.
  void write(const std::string& line);

 private:
  struct Line {
    size_t begin, end;  // [begin, end) of the text, its '\n' included
    int64_t step;       // -1: none
    std::string run;    // its "run" (""; none: a line of a version before runs had ids, or not train's)
  };
  struct Contents {
    std::string text;
    std::vector<Line> lines;  // the complete ones
    bool torn = false;        // a last line without its '\n' (a crash mid-write)
  };
  void append(const std::string& line);  // write()'s, under its lock
  std::string file_path() const;
  Contents read() const;
  static Contents parse(std::string text_of_file);
  static std::string prefix_fingerprint(const std::string& text, size_t bytes);
  void remember_open_file();
  void reopen_if_moved();
  void start_note(const std::string& text);
  void write_note();
  void drop_earlier_start(Contents& file) const;
  void trim_after(const Contents& file, int64_t step, const std::string& run_id);  // sets holds_kept_step_

  std::string path_;
  std::ofstream out_;
  bool log_step_one_ = false;
  bool holds_kept_step_ = false;
  std::string kept_line_;  // its text, without the '\n', where holds_kept_step_
  bool note_failed_ = false;  // write_note warned
  bool created_ = false;      // the file was not there before this run
  dev_t open_device_ = 0;     // the file out_ writes to (its inode also goes into the note)
  ino_t open_inode_ = 0;
  std::string note_;  // checkpoint.dir's kLogStart until the first checkpoint; "" when none
  size_t begin_ = 0, end_ = 0;  // this run's lines in the file
  std::string before_;          // fingerprint of the text before them
  std::string run_id_;          // this run's, in the note: its lines past the note's end are still its own
};

}  // namespace longctx::train
