// One training step of the sequence-parallel LM, and evaluation.
//
// Protocol per step (every rank of `comm` shares one sequence; parameters are replicated):
//   1. each rank runs forward + backward on its own rows [first_row, first_row + L), accumulating the
//      gradient of the SUM of its rows' losses (attention exchanges K/V rows inside SequenceAttention);
//   2. one all-reduce (sum) of the flat gradient, one of [loss sum, trained rows, stop flag] (double);
//   3. every rank divides by the global number of trained rows (so the loss is the mean over all tokens of
//      the sequence whatever P is; with train.answer_weight != 1 the weighted mean), clips by the global norm and applies AdamW: identical arithmetic on
//      identical data, so parameters stay bitwise replicated without a broadcast.
// The stop flag (a signal seen by ANY rank) is agreed in step 2 at no extra collective; in the step that
// stops, one more all-reduce (max) agrees on which signal, so that every rank exits alike.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "comm/communicator.hpp"
#include "runtime/core/span.hpp"
#include "runtime/model/model.hpp"
#include "runtime/model/optimizer.hpp"
#include "runtime/train/data.hpp"

namespace longctx::train {

struct TrainerConfig {
  model::ModelConfig model;
  model::AdamWConfig adamw;
  model::LrSchedule lr;
  double clip_norm = 1.0;  // <= 0: no clipping
  uint64_t seed = 1;
  int64_t seq_len = 0;
  // Loss weight of each answer target relative to other targets (1: the plain mean over all tokens).
  // The step's loss is sum(w * loss) / sum(w) over the sequence, the same whatever P is.
  double answer_weight = 1.0;
};

struct StepStats {
  double loss = 0;          // (weighted) mean over the sequence's trained tokens
  int64_t trained_rows = 0;  // over all ranks
  double grad_norm = 0;     // before clipping
  double lr = 0;
  int stop_signal = 0;      // some rank asked to stop: the largest signal number any rank got; 0: none did
  bool update_finite = true;  // apply_update: every parameter and optimizer moment it wrote is finite
};

struct EvalStats {
  double loss = 0;      // mean over scored targets (answer digits; every token for `file`)
  double accuracy = 0;  // exact match per answer (next-token accuracy for `file`)
  int64_t scored = 0;
  int stop_signal = 0;   // a stop was asked for (the largest signal number any rank got); 0: none
  bool complete = true;  // every sequence was evaluated; false: the stop ended it early (no figures)
  int64_t evaluated = 0;  // the sequences evaluated
};

class Trainer {
 public:
  // `evaluate`: forward passes only (longctx eval). No gradient or AdamW moments are held, and a checkpoint
  // loads its parameters alone: a quarter of train's memory for the parameters. Its parameters start as
  // zeros, not initialised: a checkpoint gives every one.
  enum class Purpose { train, evaluate };
  Trainer(TrainerConfig config, comm::Communicator& comm, model::SequenceAttention& attention,
          Purpose purpose = Purpose::train);

  io::RowRange local_rows() const { return rows_; }
  // Steps 1-2 of the protocol; leaves the mean-loss gradient in grads() and its norm in grad_norm.
  // `stop_signal()`: the signal this rank got (0: none), asked after the backward pass, so that a signal
  // during the step stops the run at this step (asked before the forward, it stopped it a step later).
  StepStats compute_gradients(const SequenceRows& rows, const std::function<int()>& stop_signal);
  StepStats compute_gradients(const SequenceRows& rows, int stop_signal) {
    return compute_gradients(rows, [stop_signal] { return stop_signal; });
  }
  // Step 3: clip and update; advances step().
  void apply_update(StepStats& stats);
  StepStats train_step(const SequenceRows& rows, int stop_signal);

  // Forward passes over `sequences` held-out sequences. `stop_signal()` is asked after each one's forward
  // and agreed by the ranks: a stop before the last ends the evaluation there (not complete), since
  // eval.sequences forward passes at data.seq_len may outlast a scheduler's grace time.
  EvalStats evaluate(const Dataset& data, int64_t sequences, const std::function<int()>& stop_signal = {});
  // The signal the ranks stop on: the largest number any rank got (`signal_here`), 0 when none did
  // (collective).
  int agree_on_signal(int signal_here);

  model::Model& model() { return model_; }
  std::vector<float>& params() { return params_; }
  std::vector<float>& grads() { return grads_; }  // empty unless trains()
  model::AdamW& optimizer();                       // InternalError unless trains()
  bool trains() const { return optimizer_.has_value(); }
  int64_t step() const { return step_; }
  void set_step(int64_t step) { step_ = step; }
  // The sequence length it trains and evaluates at from now on (the stages of a length curriculum): this
  // rank's rows follow; parameters, optimizer state and step stay.
  void set_seq_len(int64_t seq_len);
  const TrainerConfig& config() const { return config_; }
  // Called on this rank's own gradient after its backward pass, before the all-reduce, with the step being
  // computed (1-based). Fault injection for the tests (LONGCTX_FAULT_NAN_GRADIENT); none by default.
  using LocalGradientHook = std::function<void(int64_t step, Span<float> local_gradient)>;
  void set_local_gradient_hook(LocalGradientHook hook) { local_gradient_hook_ = std::move(hook); }

 private:
  TrainerConfig config_;
  comm::Communicator& comm_;
  model::Model model_;
  io::RowRange rows_;
  std::vector<float> params_, grads_;
  std::optional<model::AdamW> optimizer_;  // none for Purpose::evaluate
  int64_t step_ = 0;
  LocalGradientHook local_gradient_hook_;
};

}  // namespace longctx::train
