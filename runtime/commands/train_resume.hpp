// Where a `train` run starts: checkpoint.dir's latest checkpoint (loaded into the trainer, checked against
// this run) or step 0.
#pragma once

#include <mpi.h>

#include <optional>
#include <string>

#include "io/token_dataset.hpp"
#include "runtime/commands/train_options.hpp"
#include "runtime/commands/train_record.hpp"
#include "runtime/train/train_state_io.hpp"

namespace longctx::cli {

// Where a run starts: checkpoint.dir's latest, checked against this run (its model, train.steps, its token
// file, the curriculum's shards at the world size), with the run's record filled in, or step 0.
struct StartingPoint {
  bool resumed = false;
  bool new_data_file = false;  // data.allow_new_file let a resume go on with another token file
  std::optional<io::TokenIdentity> data_file;  // this run's token file (nullopt: a synthetic task)
  train::Resumed stored;  // the checkpoint's data position and tokens_seen (its steps at the lengths they had)
};
// Refusals (exit 2 / 3) remove the lock file this run made on checkpoint.dir, as the config phase's do; a
// damaged latest is refused with the older checkpoints there and how to resume from one.
StartingPoint start_from_checkpoint_dir(const TrainOptions& r, train::Trainer& trainer, const train::Dataset& data,
                                        const std::string& config_text, MPI_Comm mpi, int P, RunRecord& record);

}  // namespace longctx::cli
