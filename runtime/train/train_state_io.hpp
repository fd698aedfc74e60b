// The trainer's state in a checkpoint (io/checkpoint.hpp owns the file layout and the commit protocol):
//   /model/<parameter>          every parameter view, replicated (rank 0 writes)
//   /optimizer/m/<parameter>    AdamW first moments
//   /optimizer/v/<parameter>    AdamW second moments
//   /state/global/step          int64: updates done
//   /state/global/data_position int64 [sequence, token]: where the data goes on (train::DataPosition)
//   /state/global/rng_seed      int64: train.seed's bits; with the data position, the whole state of the
//                               counter-based generators (each sequence is drawn from (seed, split, index))
//   root attributes model_layers, model_dim, model_heads, and run_id (the run's id: hex digits, which its
//                               log.jsonl lines and activation dump carry too); eval_pending (int64 1) and
//                               eval_pending_log (string) when a stop interrupted the step's evaluation;
//                               data_tokens and data_digest (the bits of a uint64) for data.task=file: the
//                               token count and /tokens' digest of data.path (io::TokenIdentity; no
//                               data_digest when the file has none), which a resume and `eval` compare;
//                               data_tokens_before where a resume with data.allow_new_file changed the file;
//                               data_reached_before: the last token of that file the runs before the last
//                               resume trained on, where known (an eval at a length whose held-out tail
//                               starts before it scores training tokens);
//                               step_log (string): the step's log.jsonl fields, of a run that writes log.jsonl
// Everything is replicated, so a checkpoint of any P resumes at any P. Collective over `comm`.
#pragma once

#include <mpi.h>

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "io/checkpoint.hpp"
#include "runtime/core/error.hpp"

#include "runtime/train/data.hpp"
#include "runtime/train/trainer.hpp"

namespace longctx::train {

// Writes and commits <dir>/step_<step>.h5, keeping the newest `keep`. Returns the committed path. <dir>
// must exist (train makes it before step 1); one gone is not made again (InternalError).
// `tokens_seen`: tokens trained on so far (the length curriculum makes it more than step * seq_len).
// `seq_len`: the length its last step trained at (root attribute seq_len, as that step's log.jsonl line).
// `data_position`: where the next step's data starts.
// `run_id`: which run it is (root attribute `run_id`; its log.jsonl lines and activation dump carry it too).
// `data_file`: data.path's identity (data.task=file), nullopt for the synthetic tasks.
// `pending_eval`: a stop interrupted the evaluation of this step; the resumed run evaluates it first.
// `step_log`: this step's log.jsonl fields (the line before its evaluation's fields and run id; "": the run
// writes no log.jsonl), root attribute step_log: a run resumed at train.steps = this step writes that step's
// line with its evaluation where the run that trained it wrote none (the step was off its log.every grid).
// `previous_step`: the checkpoint before this one in the run's history (io::CheckpointMeta::previous_step).
struct DataFileRecord {
  io::TokenIdentity identity;
  // tokens_seen when the run began training on this file (a resume with data.allow_new_file; root attribute
  // data_tokens_before, written when not 0): its tokens trained on this file are tokens_seen minus this.
  int64_t tokens_before = 0;
  // The last token of this file trained on before the run that wrote the checkpoint resumed: the most over
  // its history, at every length it trained at (root attribute data_reached_before, written when >= 0; -1:
  // none, a fresh run on this file). A length whose held-out tail starts before it is evaluated partly on
  // training data, also after later resumes at that length, which alone would not tell.
  int64_t reached_before = -1;
};
struct PendingEval {
  // The step's log.jsonl line before the evaluation's fields, which the resumed run completes and writes
  // ("": the run wrote no log.jsonl).
  std::string log_fields;
};
std::string save_checkpoint(Trainer& trainer, const std::string& dir, int64_t keep, const std::string& config_text,
                            int64_t tokens_seen, int64_t seq_len, DataPosition data_position, const std::string& run_id,
                            const std::optional<DataFileRecord>& data_file, MPI_Comm comm,
                            const std::optional<PendingEval>& pending_eval = std::nullopt,
                            const std::string& step_log = "", int64_t previous_step = -1);

// Loads `path` into `trainer`, whose run has the resolved config `config_text` (INI). A checkpoint of
// another model -> InputError naming the file and what differs, before anything is changed: any
// [model] option that differs from the checkpoint's /config, a missing or extra tensor, a shape. The
// sequence length, world size and the train / data options may differ (that is how training continues
// at a longer length or on more ranks); a different data.task or train.seed is only warned about.
// Returns the checkpoint's data position (nullopt for one written before checkpoints held it) and its
// tokens_seen (what the steps so far trained on, at whatever lengths they had).
struct Resumed {
  std::optional<DataPosition> position;
  int64_t tokens_seen = 0;
  int64_t data_seq_len = 0;  // its /config's data.seq_len (0: none there)
  std::string run_id;        // its run's id ("": written before checkpoints held one)
  int64_t seq_len = 0;       // the length its last step trained at (root attribute seq_len)
  std::optional<PendingEval> pending_eval;  // its step's evaluation, which a stop interrupted
  std::string step_log;  // its step's log.jsonl fields (root attribute step_log; "": none there)
  // The token file its run trained on (root attributes data_tokens, data_digest, data_tokens_before); nullopt
  // for a synthetic task and a checkpoint written before checkpoints recorded it.
  std::optional<DataFileRecord> data_file;
  std::string data_path;  // its /config's data.path ("": none there)
  // The training and data settings this run changes from its /config ("train.lr was 0.001, continuing with
  // 0.002; ..."; "": none), for the caller to say once it has not refused the resume for another reason.
  std::string changed_settings;
  int64_t previous_step = -1;  // the checkpoint before it in its run's history (-1: none, or not recorded)
};
// `data_file`: the identity of this run's data.path (train's; nullopt for eval, whose config is the
// checkpoint's own): a data.path of another name is not reported as a changed setting where the two are
// told apart by their tokens (train says what differs, and nothing for a copy).
Resumed load_checkpoint(Trainer& trainer, const std::string& path, const std::string& config_text, MPI_Comm comm,
                        const std::optional<io::TokenIdentity>& data_file = std::nullopt);

// "section.key" -> value of INI text (a checkpoint's /config), read as --config files are; InputError
// naming `where` when it is no INI.
std::map<std::string, std::string> ini_values(const std::string& text, const std::string& where);

// What load_checkpoint throws for a checkpoint of another model (its /config's model options differ): an
// older checkpoint in the same directory would not do either, unlike for a damaged file.
class CheckpointOfAnotherModel : public InputError {
 public:
  using InputError::InputError;
};

// /state/global for `ckpt inspect`: `text` ("step 2, data position: sequence 2 at token 64, rng seed 1";
// what the file holds of it, and the token file the run trained on where it records one: "token file 1277
// tokens, digest 0x..."), "" when it holds none or `train` did not write it; and the same values one by
// one (for --json), each empty where the file lacks it or it is damaged.
struct StateSummary {
  std::string text;
  bool of_train = false;  // written by `train` (else the rest is empty)
  std::optional<int64_t> step;
  std::optional<std::pair<int64_t, int64_t>> data_position;  // sequence, token
  std::optional<uint64_t> rng_seed;
  std::optional<bool> eval_pending;  // empty: unreadable (no attribute: false)
  std::optional<DataFileRecord> data_file;
};
StateSummary state_summary(const io::CheckpointReader& reader);

// What `ckpt verify` adds to the file checks: does the checkpoint hold what load_checkpoint will need for
// the model its own /config describes? Each /model, /optimizer/m and /optimizer/v tensor of that model, in
// float32 and that shape, no more and no fewer (other datasets under /state are allowed); /state/global/step
// (and data_position's sequence, where the file has one) equal to the step attribute; root attributes in
// range (as require_sound_attributes). The model part only for a checkpoint `train` wrote (it has the
// model_layers attribute). One line per problem
// (naming the file and dataset, at most 10 and a count); none when it holds them. `datasets` are the
// file's, as verify_checkpoint listed them.
std::vector<std::string> checkpoint_model_problems(const io::CheckpointReader& reader,
                                                   const std::vector<io::DatasetInfo>& datasets);
// Throws InputError "PATH: attribute tokens_seen = -5: must be >= 0: damaged; ADVICE" for root attribute values
// no training writes (negative counts, a seq_len more than tokens_seen). What a resume and eval refuse, and
// verify reports (checkpoint_model_problems).
void require_sound_attributes(const io::CheckpointReader& reader, const std::string& advice);

}  // namespace longctx::train
