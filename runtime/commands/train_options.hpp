// `train`'s options and config phase: declared (interfaces.md's names and more), validated into
// TrainOptions (a UsageError naming the option and its allowed values otherwise), the config phase's checks
// (shardable stages, memory, data, checkpoint.dir's lock) and what every rank must see alike.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "attention/sequence_parallel.hpp"
#include "runtime/cli/command.hpp"
#include "runtime/commands/attention_options.hpp"
#include "runtime/train/data.hpp"
#include "runtime/train/trainer.hpp"

namespace longctx::train {
struct Resumed;
}

namespace longctx::cli {

// MFU's peak for each thread of a rank when train.peak_gflops is 0: one AVX-512 core (2 FMA x 16 lanes x
// 2 GHz). (A peak per rank counted a rank of 2 threads as one core: MFU 109%.)
constexpr int kPeakGflopsPerThread = 128;

struct TrainOptions {
  train::TrainerConfig trainer;
  train::DataConfig data;
  int64_t steps = 0;
  std::string checkpoint_dir, log_jsonl, dump_path, summary_path;
  int64_t checkpoint_every = 0, checkpoint_keep = 0, log_every = 1, eval_every = 0, eval_sequences = 0;
  std::set<int64_t> dump_layers, dump_steps;
  // Length curriculum: stage i trains at stage_len[i] until step stage_end[i] (cumulative), then data.seq_len.
  std::vector<int64_t> stage_len, stage_end;
  double peak_gflops = 0;  // of one rank, for MFU; 0: kPeakGflopsPerThread for each thread of each rank
  bool regather_kv = false;
  bool allow_new_data_file = false;  // data.allow_new_file

  // The stage that trains step `step` (0-based); stage_len.size(): past the curriculum, at data.seq_len.
  size_t stage_of(int64_t step) const;
  // The sequence length stage `i` trains at.
  int64_t length_of(size_t i) const { return i < stage_len.size() ? stage_len[i] : trainer.seq_len; }
  // Tokens trained on through `step` updates: the curriculum's shorter stages first, then data.seq_len.
  int64_t tokens_through(int64_t step) const;
};

// Schedule errors name train's keys (and train has no --allow-uncovered).
extern const ScheduleOptionNames kTrainScheduleNames;

void declare_train_options(po::options_description& desc, po::positional_options_description& positional);

// Every option, validated (UsageError naming it). Also applies train.threads. `warn`: say what is legal but
// likely a mistake (the run phase; the config phase passes false and also checks the output paths).
TrainOptions validate_train_options(const Invocation& inv, int world_size, bool warn = true);
// Warns (rank 0) where train.warmup outlasts train.steps, so that train.lr is never reached, unless the run,
// resumed at `from_step`, trains nothing more.
void warn_if_warmup_outlasts(const Invocation& inv, const TrainOptions& r, int64_t from_step);

// The resolved config as a checkpoint's /config stores it (INI). A value INI cannot hold (a line break) ->
// UsageError naming the option.
std::string train_config_text(const Invocation& inv);

// check_shardable at the length of each curriculum stage that trains from step `from` on (the error says
// which stage): a resumed run skips the stages it has finished, which need not shard at its world size
// (before, they refused a resume at another P).
void check_stages_shardable(const TrainOptions& r, int64_t from, int world_size, SpanningSegments spanning);

// The step a run resumes from, as the name `latest` holds says (the load checks it against the file); 0 for
// none, and for a directory or `latest` that cannot be read here: the run phase then says what is wrong.
int64_t resume_step_hint(const TrainOptions& r);

// Whether `path` (log.jsonl, dump.activations, log.summary) goes straight into a checkpoint.dir that does not exist
// yet: the run makes that directory (lock_checkpoint_dir), so its missing parent is no error. Such an
// output was refused ("directory does not exist") on a fresh run only.
bool in_checkpoint_dir_to_make(const TrainOptions& r, const std::string& path);

// The data of each shorter stage of the length curriculum (data.seq_len's is train::make_dataset(r.data)).
std::vector<std::unique_ptr<train::Dataset>> curriculum_datasets(const TrainOptions& r);

// A token file's tokens against their digest, as `data verify` checks them (a chunk rewritten with a valid
// checksum, or zeroed with its checksum, reads without an error): InputError naming the damage, where the
// file is at most LONGCTX_TOKEN_CHECK_BYTES (default kTokenCheckBytes, a few seconds to read; 0: none); a
// larger one's check is left to `data verify`, which is said. `named`: how messages name it
// ("data.path=tok.h5"). For one rank to call.
constexpr uint64_t kTokenCheckBytes = uint64_t{4} << 30;
void check_token_digest(const std::string& path, const std::string& named);

// The last token of `config`'s file (data.path) that the run of the checkpoint `stored` trained on; -1 when
// it trained on none (synthetic data, or a file that holds no sequence of its length). `one_length`: the
// caller knows the run trained at data.seq_len alone (its /config has no length curriculum), so its windows
// lie at multiples of it; else one may have ended at any token before the training end.
int64_t last_trained_token(const train::DataConfig& config, const train::Resumed& stored, bool one_length = false);

// The last token of the checkpoint's file that its run or the runs it resumed trained on: last_trained_token,
// or the checkpoint's data_reached_before (train::DataFileRecord::reached_before) where that is later.
int64_t trained_token_in_history(const train::DataConfig& config, const train::Resumed& stored,
                                 bool one_length = false);
// Who trained on token `reached` (of trained_token_in_history): "the checkpoint's run (data.seq_len=N)", or
// the runs before its last resume where the checkpoint's data_reached_before says so.
std::string trained_by(const train::Resumed& stored, int64_t reached);

// A token file's held-out tail at `config`'s length (data.seq_len, or eval's --seq-len), where it holds
// tokens the run of the checkpoint `stored`, or a run it resumed, trained on: it was split at another length
// (a longer one holds out whole sequences of it, from an earlier token; a shorter one holds out a file the
// longer length trained on whole). The last token those runs trained on, when it lies past the tail's start;
// -1 when none does (the same length all along, synthetic data, a file too short to hold one out).
int64_t trained_token_in_held_out(const train::DataConfig& config, const train::Resumed& stored,
                                  const train::Dataset& data, bool one_length = false);

// Attention on the CPU ranks, on this rank's GPU, or on one GPU per rank (with the communicator that
// moves device buffers between them): train's and eval's.
struct TrainAttention {
  std::unique_ptr<comm::Communicator> device_comm;  // one GPU per rank only
  std::unique_ptr<model::SequenceAttention> impl;
};
// `threads_option`: the command's option for the rank's threads, which an oversubscription warning names.
TrainAttention make_train_attention(Invocation& inv, const TrainOptions& r, const DeviceChoice& device,
                                    const std::string& threads_option);

// check_fits_in_memory for a run of `r` on this rank (exit 2 naming the options when the ranks on this
// node would not fit): a lower bound of what training holds in float32. `eval`: of `longctx eval`'s forward
// passes at r.trainer.seq_len (its --seq-len) instead.
void check_train_fits_in_memory(const Invocation& inv, const TrainOptions& r, const DeviceChoice& device, bool eval = false);

// train's config phase (Command::check), where the ranks agree (one message, no MPI_Abort): the options,
// the checkpoint config, the stages at the resumed step, the fault variables, memory, the data; last, rank 0
// makes checkpoint.dir and locks it (so a run refused before that creates nothing).
void check_train_invocation(const Invocation& inv);

// What each rank must see alike (main.cpp compares it with rank 0's): the lock file rank 0 wrote in
// checkpoint.dir just before (a rank that did not see it, a node-local directory, wrote its first
// checkpoint into nothing after all the steps, or resumed from another step of a stale copy), the token
// file's length and sampled contents, and dump.activations' directory (its collective writes to two
// files hung).
// `path_option` is how the token file's option is named to the user (eval: --data-path where given).
std::vector<std::pair<std::string, std::string>> train_shared_inputs(const Invocation& inv,
                                                                     const std::string& path_option = "data.path");

}  // namespace longctx::cli
