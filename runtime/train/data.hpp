// Training and evaluation sequences (`data.task`). Every sequence is a pure function of (seed, split,
// index), a file task's training window of its DataPosition, so each rank builds only its own rows
// [begin, end) with no communication, and a resumed run sees exactly the sequences an uninterrupted one would. A sequence of N rows has inputs s[0, N) and
// targets s[1, N + 1) of one token stream s.
//
// Synthetic vocabulary (passkey, associative): 0-9 digits, 10 BOS, 11 KEY, 12 QUERY, 13 SEP,
// 14.. filler (and key symbols for associative). model.vocab must be >= 32.
//   passkey      [BOS] filler .. [KEY d1..dK SEP] x key_repeats .. filler .. [KEY d1..dK]: as in the classic
//                prompt the question restates the record's prefix; the answer is the K digits after the
//                final KEY (one answer per sequence). Repeating the record (with period K + 2, coprime to
//                the dilation rates when odd) puts each digit on several residues mod r, so a far query,
//                which meets only keys of its own residue in a dilated branch, finds a copy. The key sits at a random depth within the last
//                `span` tokens, where span grows linearly from curriculum_min_span to N over
//                curriculum_steps training steps (no curriculum when curriculum_steps = 0).
//   associative  `records` records [KEY a b VAL-digits.. SEP] scattered in filler, then `queries` of
//                them asked at the end: [QUERY a b d1..dK] each (one answer per query: dense answers).
// Filler: a random sentence per sequence, of random odd length in [filler_period/2, 3 filler_period/2],
// repeated (odd: each token recurs on every residue mod a power-of-two dilation rate).
// Supervision: "answer" trains on answer digits only; "all" trains on every next token (LM loss: the
// filler is learnable by copying its previous occurrence by content, the skill retrieval needs).
// Evaluation always scores answer digits only: loss, and exact match per answer (all its digits right).
//   file         consecutive windows of an io/ token dataset (training: from the data position's token,
//                starting over where the next would reach the held-out tail); every target is trained and
//                scored, accuracy = next-token accuracy.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/row_io.hpp"
#include "io/token_dataset.hpp"

namespace longctx::train {

struct DataConfig {
  std::string task = "passkey";  // passkey | associative | file
  std::string path;              // file task: token dataset
  int64_t seq_len = 8192;
  std::string seq_len_option = "data.seq_len";  // the option seq_len came from, for errors (a curriculum stage's)
  uint64_t seed = 1;
  std::string supervision = "all";  // all | answer
  int64_t key_digits = 5;
  int64_t key_repeats = 1;  // passkey: consecutive copies of the record
  int64_t records = 16;  // associative
  int64_t queries = 16;  // associative
  int64_t curriculum_steps = 0;
  int64_t curriculum_min_span = 256;
  int64_t filler_period = 23;  // length of the repeated filler sentence
  int64_t vocab = 32;
  // file task: the length whose held-out tail evaluation scores (0: seq_len). A curriculum stage's
  // shorter sequences train only on the tokens before that tail.
  int64_t split_seq_len = 0;
  // passkey, evaluation: where the record lies, as a fraction of the sequence (0: right after BOS, the
  // farthest from the question; 1: right before the question); < 0: a random depth, as training draws it.
  // `longctx eval --depths` (accuracy by depth, a needle-in-a-haystack table).
  double eval_depth = -1;
};

// This rank's rows of one sequence.
struct SequenceRows {
  std::vector<int32_t> tokens;     // inputs
  int32_t previous = -1;           // the input token before the first row; -1 at the sequence start
  std::vector<int32_t> targets;    // training targets; -1 = not trained
  std::vector<int32_t> answer_id;  // which answer a scored target belongs to; -1 = not scored
  int64_t answers = 0;             // answers in the whole sequence (exact-match denominator)
};

// Where training stands in its data, as a checkpoint keeps it (/state/global/data_position): `sequence`,
// the index of the next training sequence (its seed: synthetic sequences are a function of (seed, index));
// `token`, where the file task's next window starts in data.path (0 for the synthetic tasks). A run at
// one length trains window i at token i * N, as before; a run whose length changes (a curriculum stage
// ends, a resume at another data.seq_len) goes on from the next token instead of jumping to window i at
// the new length, which skipped the tokens between.
struct DataPosition {
  int64_t sequence = 0;
  int64_t token = 0;
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  // `index`: the training sequence (split train) or the held-out sequence number (split eval).
  virtual SequenceRows rows(bool eval, int64_t index, io::RowRange rows) const = 0;
  // The training sequence at `at`, this rank's rows of it.
  virtual SequenceRows train_rows(DataPosition at, io::RowRange range) const { return rows(false, at.sequence, range); }
  // The position after training on the sequence at `at`.
  virtual DataPosition after(DataPosition at) const { return {at.sequence + 1, at.token}; }
  // The position of training step `step` in a checkpoint that holds none (written before checkpoints did).
  virtual DataPosition position_of_step(int64_t step) const { return {step, 0}; }
  // Why `at` (from a checkpoint) does not belong to this data, or "": a warning, the data starts over.
  virtual std::string position_problem(DataPosition) const { return ""; }
  // Whether evaluation reads training sequences (a token file too short to hold one back).
  virtual bool evaluates_on_training_data() const { return false; }
  // How many distinct sequences evaluation can read; 0 when unbounded (synthetic tasks draw new ones).
  virtual int64_t eval_sequence_count() const { return 0; }
  // A token file's split: training windows lie in tokens [0, training_end()), and evaluation scores the
  // targets from held_out_begin() + 1 on. -1 for the synthetic tasks and a file too short to hold one back.
  virtual int64_t training_end() const { return -1; }
  virtual int64_t held_out_begin() const { return -1; }
  // The token file's count and digest (a checkpoint records them: which file the run trained on); nullopt
  // for the synthetic tasks.
  virtual std::optional<io::TokenIdentity> file_identity() const { return std::nullopt; }
};

// Validates the options (UsageError naming the option / InputError naming the file) and builds the task.
std::unique_ptr<Dataset> make_dataset(const DataConfig& config);

}  // namespace longctx::train
