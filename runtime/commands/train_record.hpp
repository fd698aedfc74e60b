// What `train` keeps of a run for log.summary (RunRecord, filled in as the run goes) and the summary's
// JSON text, which rank 0 writes when the run ends: done, stopped or failed.
#pragma once

#include <cstdint>
#include <string>

namespace longctx::cli {

// What log.summary says of a run, filled in as it goes; rank 0 writes it when the run ends (summary_json).
struct RunRecord {
  std::string path;             // log.summary ("": none)
  int64_t train_steps = -1;
  int64_t first_step = -1;      // the step the run started from (0: a new run); -1 until known
  int64_t step = -1;            // the step the run is at (the last one trained)
  int64_t found_step = -1;      // the checkpoint it resumed from (-1: none)
  bool found_pending = false;   // ... held an evaluation pending
  int64_t committed = -1;       // the last checkpoint committed in checkpoint.dir, resumed from or saved (-1: none)
  std::string committed_path;
  bool committed_pending = false;
  int signal = 0;               // the signal that stopped the run (agreed by the ranks); 0: none
  std::string run_id;
  // Whether the run left checkpoint.dir further on than it found it: a later step, or the evaluation its
  // checkpoint held pending done. A run that did not is what a requeue loop looks like (each run stops
  // before it gets anywhere): train.sbatch requeues only one that did.
  bool advanced() const {
    return committed > found_step || (committed == found_step && found_pending && !committed_pending);
  }
};

// A signal's name for the summary ("SIGUSR1"); its number for one without a name here.
std::string signal_name(int signal);

// log.summary's text: one JSON object (the README's train section lists its fields). `started`: when the
// run began, UTC.
std::string summary_json(const RunRecord& record, int code, const std::string& error, const std::string& started,
                         double seconds, int world_size);

}  // namespace longctx::cli
