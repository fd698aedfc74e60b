#include "runtime/train/trainer.hpp"

#include <algorithm>

#include "runtime/core/error.hpp"

namespace longctx::train {

Trainer::Trainer(TrainerConfig config, comm::Communicator& comm, model::SequenceAttention& attention, Purpose purpose)
    : config_(std::move(config)),
      comm_(comm),
      model_(config_.model, attention),
      rows_(io::even_rows(config_.seq_len, comm.rank(), comm.size())),
      params_(static_cast<size_t>(model_.layout().total())) {
  // An evaluation's parameters all come from a checkpoint (zeros until then): it does not draw the
  // initialisation the checkpoint replaces (0.6 s per 50M parameters).
  if (purpose == Purpose::train) {
    grads_.assign(params_.size(), 0.0f);
    optimizer_.emplace(model_.layout(), config_.adamw);
    model::init_parameters(config_.model, model_.layout(), config_.seed, params_.data());
  }
}

model::AdamW& Trainer::optimizer() {
  if (!optimizer_) throw InternalError("an evaluation-only Trainer has no optimizer");
  return *optimizer_;
}

void Trainer::set_seq_len(int64_t seq_len) {
  config_.seq_len = seq_len;
  rows_ = io::even_rows(seq_len, comm_.rank(), comm_.size());
}

StepStats Trainer::compute_gradients(const SequenceRows& rows, const std::function<int()>& stop_signal) {
  if (!trains()) throw InternalError("Trainer::compute_gradients on an evaluation-only Trainer");
  std::fill(grads_.begin(), grads_.end(), 0.0f);
  std::vector<float> weights;
  if (config_.answer_weight != 1.0) {
    weights.assign(rows.targets.size(), 1.0f);
    for (size_t i = 0; i < weights.size() && i < rows.answer_id.size(); ++i)
      if (rows.answer_id[i] >= 0) weights[i] = static_cast<float>(config_.answer_weight);
  }
  const auto local = model_.forward(params_.data(), rows.tokens.data(), rows.targets.data(), rows_.rows(), rows_.begin,
                                    true, 1.0f, rows.previous, weights.empty() ? nullptr : weights.data());
  model_.backward(params_.data(), grads_.data());
  if (local_gradient_hook_) local_gradient_hook_(step_ + 1, Span<float>(grads_));
  comm_.all_reduce(Span<float>(grads_));
  const int signal_here = stop_signal();
  std::vector<double> totals{local.loss_sum, local.weight_sum, signal_here != 0 ? 1.0 : 0.0, double(local.count)};
  comm_.all_reduce(Span<double>(totals));
  StepStats stats;
  stats.trained_rows = static_cast<int64_t>(totals[3]);
  stats.loss = totals[1] > 0 ? totals[0] / totals[1] : 0.0;
  if (totals[2] > 0) stats.stop_signal = agree_on_signal(signal_here);  // every rank: the same all-reduced flag
  if (totals[1] > 0) {
    const float inv = static_cast<float>(1.0 / totals[1]);
    for (float& g : grads_) g *= inv;
  }
  // Here, not in apply_update: the caller refuses a non-finite norm before any update (a finite loss with
  // an overflowing gradient was applied, logged and checkpointed as nan weights).
  stats.grad_norm = model::gradient_norm(grads_.data(), int64_t(grads_.size()));
  return stats;
}

int Trainer::agree_on_signal(int signal_here) {
  int32_t signal = signal_here;
  comm_.all_reduce(Span<int32_t>(&signal, 1), comm::ReduceOp::max);
  return signal;
}

void Trainer::apply_update(StepStats& stats) {
  model::clip_gradients(grads_.data(), int64_t(grads_.size()), stats.grad_norm, config_.clip_norm);
  stats.lr = config_.lr.at(step_);
  stats.update_finite = optimizer().update(params_.data(), grads_.data(), stats.lr, step_);
  ++step_;
}

StepStats Trainer::train_step(const SequenceRows& rows, int stop_signal) {
  StepStats stats = compute_gradients(rows, stop_signal);
  apply_update(stats);
  return stats;
}

EvalStats Trainer::evaluate(const Dataset& data, int64_t sequences, const std::function<int()>& stop_signal) {
  double loss_sum = 0, count = 0, correct = 0, answers = 0, exact = 0;
  int stop = 0;
  for (int64_t s = 0; s < sequences; ++s) {
    const SequenceRows rows = data.rows(true, s, rows_);
    std::vector<int32_t> scored = rows.targets;
    if (rows.answers > 0)
      for (size_t i = 0; i < scored.size(); ++i)
        if (rows.answer_id[i] < 0) scored[i] = -1;
    const auto local =
        model_.forward(params_.data(), rows.tokens.data(), scored.data(), rows_.rows(), rows_.begin, false, 1.0f,
                       rows.previous);
    // [loss, count, correct, stop asked, wrong digits of answer 0, 1, ...]
    const int signal_here = stop_signal ? stop_signal() : 0;
    std::vector<double> totals(static_cast<size_t>(4 + rows.answers), 0.0);
    totals[0] = local.loss_sum;
    totals[1] = double(local.count);
    totals[2] = double(local.correct);
    totals[3] = signal_here != 0 ? 1.0 : 0.0;
    const auto& predicted = model_.predictions();
    for (size_t i = 0; i < scored.size(); ++i)
      if (rows.answer_id[i] >= 0 && predicted[i] != scored[i]) totals[size_t(4 + rows.answer_id[i])] += 1;
    comm_.all_reduce(Span<double>(totals));
    if (totals[3] > 0) {  // every rank takes this branch: the same all-reduced flag
      stop = agree_on_signal(signal_here);
      if (s + 1 < sequences) {
        EvalStats stopped;
        stopped.stop_signal = stop;
        stopped.complete = false;
        stopped.evaluated = s + 1;
        return stopped;
      }
    }
    loss_sum += totals[0];
    count += totals[1];
    correct += totals[2];
    answers += double(rows.answers);
    for (int64_t a = 0; a < rows.answers; ++a) exact += totals[size_t(4 + a)] == 0 ? 1 : 0;
  }
  EvalStats stats;
  stats.scored = static_cast<int64_t>(count);
  stats.loss = count > 0 ? loss_sum / count : 0;
  stats.accuracy = answers > 0 ? exact / answers : (count > 0 ? correct / count : 0);
  stats.stop_signal = stop;
  stats.evaluated = sequences;
  return stats;
}

}  // namespace longctx::train
