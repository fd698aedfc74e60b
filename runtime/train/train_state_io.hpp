// The trainer's state in a checkpoint (io/checkpoint.hpp owns the file layout and the commit protocol):
//   /model/<parameter>          every parameter view, replicated (rank 0 writes)
//   /optimizer/m/<parameter>    AdamW first moments
//   /optimizer/v/<parameter>    AdamW second moments
//   /state/global/step          int64: updates done; the data position follows from it (data is a
//                               function of (seed, step)), and the RNG needs nothing else
// Everything is replicated, so a checkpoint of any P resumes at any P. Collective over `comm`.
#pragma once

#include <mpi.h>

#include <string>

#include "runtime/train/trainer.hpp"

namespace longctx::train {

// Writes and commits <dir>/step_<step>.h5, keeping the newest `keep`. Returns the committed path.
std::string save_checkpoint(Trainer& trainer, const std::string& dir, int64_t keep, const std::string& config_text,
                            MPI_Comm comm);

// Loads `path` into `trainer`. A checkpoint of a different model shape -> InputError naming the file and
// the mismatching tensor, before anything is changed. The sequence length may differ (parameters do not
// depend on it): that is how training continues at a longer length.
void load_checkpoint(Trainer& trainer, const std::string& path, MPI_Comm comm);

}  // namespace longctx::train
