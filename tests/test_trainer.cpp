// The sequence-parallel trainer at P = 1, 2, 4: the all-reduced gradient of P shards equals the
// gradient of the whole sequence computed on one rank (mean loss over ALL tokens whatever P is), the same
// seed gives bitwise-identical losses, and the data generators give every rank a consistent slice.
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <new>
#include <random>
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "comm/mpi_communicator.hpp"
#include "io/token_dataset.hpp"
#include "io_test_util.hpp"
#include "runtime/train/json_log.hpp"
#include "runtime/train/trainer.hpp"
#include "test_util.hpp"

// Heap bytes held through operator new (this binary replaces it), now and at the most since reset_peak():
// a peak of one call's own allocations, whatever ran before it (ru_maxrss only rises, so a test that ran
// earlier and peaked higher hid any rise after it).
namespace heap {
std::atomic<int64_t> held{0}, peak{0};
void reset_peak() { peak = held.load(); }
int64_t peak_since(int64_t start) { return peak.load() - start; }
}  // namespace heap

void* operator new(size_t bytes) {
  void* p = std::malloc(bytes ? bytes : 1);
  if (!p) throw std::bad_alloc();
  const int64_t now = heap::held += static_cast<int64_t>(malloc_usable_size(p));
  for (int64_t top = heap::peak.load(); now > top && !heap::peak.compare_exchange_weak(top, now);) {
  }
  return p;
}
void operator delete(void* p) noexcept {
  if (!p) return;
  heap::held -= static_cast<int64_t>(malloc_usable_size(p));
  std::free(p);
}
void operator delete(void* p, size_t) noexcept { operator delete(p); }

namespace longctx::train {
namespace {

using longctx::testing::all_close;

std::unique_ptr<comm::Communicator> world() {
  auto w = comm::make_mpi_world(120);
  w->set_timeout_seconds(60);
  return w;
}

TrainerConfig small_config() {
  TrainerConfig c;
  c.model.layers = 2;
  c.model.dim = 16;
  c.model.heads = 4;
  c.model.vocab = 32;
  c.model.mlp_hidden = 32;
  c.model.prev_token_embedding = true;  // exercises the previous-token hand-over at shard edges
  // Local (16), spanning two ranks at P = 4 (64) and spanning all (128).
  c.model.schedule = make_schedule({16, 64, 128}, {1, 2, 4}, false);
  c.seq_len = 128;
  c.seed = 5;
  c.lr.peak = 3e-3;
  c.lr.warmup_steps = 2;
  c.lr.total_steps = 10;
  return c;
}

DataConfig small_data() {
  DataConfig d;
  d.task = "passkey";
  d.seq_len = 128;
  d.key_digits = 3;
  d.vocab = 32;
  d.seed = 9;
  return d;
}

TEST(Trainer, ShardedGradientEqualsWholeSequenceGradient) {
  auto comm = world();
  const TrainerConfig config = small_config();
  const auto data = make_dataset(small_data());
  model::ShardedAttention sharded(*comm);
  Trainer trainer(config, *comm, sharded);
  const StepStats stats = trainer.compute_gradients(data->rows(false, 0, trainer.local_rows()), 0);

  model::LocalAttention local(make_attention_backend("cpu"));
  model::Model whole(config.model, local);
  std::vector<float> params(static_cast<size_t>(whole.layout().total()));
  model::init_parameters(config.model, whole.layout(), config.seed, params.data());
  const SequenceRows all = data->rows(false, 0, {0, config.seq_len});
  const auto ref = whole.forward(params.data(), all.tokens.data(), all.targets.data(), config.seq_len, 0, true,
                                 1.0f / float(config.seq_len), all.previous);
  std::vector<float> grads(params.size(), 0.0f);
  whole.backward(params.data(), grads.data());

  EXPECT_EQ(stats.trained_rows, config.seq_len);
  EXPECT_NEAR(stats.loss, ref.loss_sum / double(ref.count), 1e-5);
  // Float sums in a different order (P partial sums, then the all-reduce).
  EXPECT_TRUE(all_close(trainer.grads().data(), grads.data(), int64_t(grads.size()), 1e-6, 1e-3));
}

TEST(Trainer, SameSeedSameLossesBitwise) {
  auto comm = world();
  const auto data = make_dataset(small_data());
  std::vector<std::vector<double>> runs;
  for (int run = 0; run < 2; ++run) {
    model::ShardedAttention sharded(*comm);
    Trainer trainer(small_config(), *comm, sharded);
    std::vector<double> losses;
    for (int64_t step = 0; step < 4; ++step)
      losses.push_back(trainer.train_step(data->rows(false, step, trainer.local_rows()), 0).loss);
    runs.push_back(losses);
  }
  for (size_t i = 0; i < runs[0].size(); ++i) EXPECT_EQ(runs[0][i], runs[1][i]) << "step " << i;
  EXPECT_LT(runs[0].back(), runs[0].front());
}

// A length curriculum trains its stages with the one trainer (no copy of the state per stage): after
// set_seq_len, a step at 64 rows equals a step of a trainer made at 64 with the same state, bit for bit,
// and back at 128 a step equals one of a trainer made at 128 with the state reached.
TEST(Trainer, SetSeqLenTrainsAsATrainerMadeAtThatLength) {
  auto comm = world();
  DataConfig short_data = small_data();
  short_data.seq_len = 64;
  short_data.split_seq_len = 128;
  const auto data = make_dataset(small_data()), short_rows = make_dataset(short_data);
  TrainerConfig short_config = small_config();
  short_config.seq_len = 64;
  model::ShardedAttention a_attention(*comm), b_attention(*comm), c_attention(*comm);
  Trainer curriculum(small_config(), *comm, a_attention);
  Trainer at_64(short_config, *comm, b_attention);
  Trainer at_128(small_config(), *comm, c_attention);
  curriculum.set_seq_len(64);
  EXPECT_EQ(curriculum.config().seq_len, 64);
  EXPECT_EQ(curriculum.local_rows().rows(), at_64.local_rows().rows());
  EXPECT_EQ(curriculum.local_rows().begin, at_64.local_rows().begin);
  const StepStats a = curriculum.train_step(short_rows->rows(false, 0, curriculum.local_rows()), 0);
  const StepStats b = at_64.train_step(short_rows->rows(false, 0, at_64.local_rows()), 0);
  EXPECT_EQ(a.loss, b.loss);
  EXPECT_EQ(a.grad_norm, b.grad_norm);
  EXPECT_EQ(curriculum.params(), at_64.params());
  EXPECT_EQ(curriculum.optimizer().second_moment(), at_64.optimizer().second_moment());
  curriculum.set_seq_len(128);
  // A trainer at 128 given the same state, as a checkpoint load gives it.
  at_128.params() = curriculum.params();
  at_128.optimizer().first_moment() = curriculum.optimizer().first_moment();
  at_128.optimizer().second_moment() = curriculum.optimizer().second_moment();
  at_128.set_step(curriculum.step());
  const StepStats c = curriculum.train_step(data->rows(false, 1, curriculum.local_rows()), 0);
  const StepStats d = at_128.train_step(data->rows(false, 1, at_128.local_rows()), 0);
  EXPECT_EQ(c.loss, d.loss);
  EXPECT_EQ(curriculum.params(), at_128.params());
  EXPECT_EQ(curriculum.step(), 2);
}

TEST(Trainer, StopFlagOfAnyRankReachesAll) {
  auto comm = world();
  const auto data = make_dataset(small_data());
  model::ShardedAttention sharded(*comm);
  Trainer trainer(small_config(), *comm, sharded);
  // The last rank got SIGUSR1 (10), rank 0 SIGTERM (15) when there are two or more: all agree on the largest.
  const int P = comm->size(), me = comm->rank();
  const int mine = me == P - 1 ? SIGUSR1 : (me == 0 ? SIGTERM : 0);
  const StepStats first = trainer.train_step(data->rows(false, 0, trainer.local_rows()), mine);
  EXPECT_EQ(first.stop_signal, P > 1 ? SIGTERM : SIGUSR1);
  const StepStats second = trainer.train_step(data->rows(false, 1, trainer.local_rows()), 0);
  EXPECT_EQ(second.stop_signal, 0);
}

// The signal is asked for after the backward pass (the gradient is all-reduced by then), so that one
// arriving during a step stops the run at that step. Asked before the forward, it stopped one step late.
TEST(Trainer, AsksForTheStopSignalAfterTheBackward) {
  auto comm = world();
  const auto data = make_dataset(small_data());
  model::ShardedAttention sharded(*comm);
  Trainer trainer(small_config(), *comm, sharded);
  int asked = 0;
  bool gradient_there = false;
  const StepStats stats = trainer.compute_gradients(data->rows(false, 0, trainer.local_rows()), [&] {
    ++asked;
    for (float g : trainer.grads()) gradient_there = gradient_there || g != 0.0f;
    return SIGUSR1;
  });
  EXPECT_EQ(asked, 1);
  EXPECT_TRUE(gradient_there);
  EXPECT_EQ(stats.stop_signal, SIGUSR1);
}

// An evaluation asks after each sequence and ends at the first stop any rank got, all ranks at the same
// sequence; without a stop its figures are those of an evaluation that asks nothing.
TEST(Trainer, EvaluationEndsAtTheSequenceAStopArrivesIn) {
  auto comm = world();
  const auto data = make_dataset(small_data());
  model::ShardedAttention sharded(*comm);
  Trainer trainer(small_config(), *comm, sharded);
  const int P = comm->size(), me = comm->rank();
  int asked = 0;
  // The last rank gets SIGUSR1 at its second question; the others never.
  const EvalStats stopped = trainer.evaluate(*data, 5, [&] { return ++asked == 2 && me == P - 1 ? SIGUSR1 : 0; });
  EXPECT_EQ(stopped.stop_signal, SIGUSR1);
  EXPECT_FALSE(stopped.complete);
  EXPECT_EQ(stopped.evaluated, 2);
  EXPECT_EQ(asked, 2);
  asked = 0;
  const EvalStats quiet = trainer.evaluate(*data, 3, [&] { return ++asked, 0; });
  const EvalStats plain = trainer.evaluate(*data, 3);
  EXPECT_EQ(asked, 3);
  EXPECT_EQ(quiet.stop_signal, 0);
  EXPECT_TRUE(quiet.complete);
  EXPECT_EQ(quiet.loss, plain.loss);
  EXPECT_EQ(quiet.accuracy, plain.accuracy);
  EXPECT_EQ(quiet.scored, plain.scored);
  EXPECT_GT(plain.scored, 0);
  // A stop asked for after the last sequence: the evaluation is complete, and says the stop.
  asked = 0;
  const EvalStats last = trainer.evaluate(*data, 3, [&] { return ++asked == 3 ? SIGTERM : 0; });
  EXPECT_EQ(last.stop_signal, SIGTERM);
  EXPECT_TRUE(last.complete);
  EXPECT_EQ(last.evaluated, 3);
  EXPECT_EQ(last.loss, plain.loss);
  EXPECT_EQ(last.scored, plain.scored);
}

TEST(Data, RowsAreSlicesOfTheWholeSequenceAndDeterministic) {
  for (const char* task : {"passkey", "associative"}) {
    DataConfig d = small_data();
    d.task = task;
    d.seq_len = 256;
    d.records = 4;
    d.queries = 4;
    d.curriculum_steps = 10;
    d.curriculum_min_span = 100;
    const auto data = make_dataset(d);
    const SequenceRows whole = data->rows(false, 3, {0, 256});
    const SequenceRows part = data->rows(false, 3, {100, 200});
    EXPECT_TRUE(std::equal(part.tokens.begin(), part.tokens.end(), whole.tokens.begin() + 100)) << task;
    EXPECT_TRUE(std::equal(part.targets.begin(), part.targets.end(), whole.targets.begin() + 100)) << task;
    EXPECT_EQ(whole.tokens, data->rows(false, 3, {0, 256}).tokens) << task;
    EXPECT_NE(whole.tokens, data->rows(false, 4, {0, 256}).tokens) << task;
    EXPECT_NE(whole.tokens, data->rows(true, 3, {0, 256}).tokens) << task;
    int64_t scored = 0;
    for (size_t i = 0; i < whole.tokens.size(); ++i) {
      EXPECT_GE(whole.tokens[i], 0);
      EXPECT_LT(whole.tokens[i], 32);
      if (whole.answer_id[i] >= 0) {
        ++scored;
        EXPECT_GE(whole.targets[i], 0);
        EXPECT_LT(whole.targets[i], 10);
      }
    }
    EXPECT_EQ(scored, whole.answers * d.key_digits) << task;
  }
}

// Each rank builds only its own rows (and the token before them, and the last target): every field of every
// part of every split is the whole sequence's, whatever the task, supervision, curriculum or split.
TEST(Data, EveryPartOfAnySplitIsTheWholeSequences) {
  for (const char* task : {"passkey", "associative"})
    for (const char* supervision : {"all", "answer"}) {
      DataConfig d = small_data();
      d.task = task;
      d.supervision = supervision;
      d.seq_len = 210;
      d.key_repeats = 2;
      d.records = 5;
      d.queries = 3;
      d.curriculum_steps = 3;
      d.curriculum_min_span = 100;
      const auto data = make_dataset(d);
      for (int64_t index : {0, 1, 5})
        for (bool eval : {false, true}) {
          const SequenceRows whole = data->rows(eval, index, {0, d.seq_len});
          EXPECT_EQ(whole.previous, -1);
          EXPECT_EQ(whole.tokens[0], 10) << "BOS";
          for (int64_t parts : {2, 3, 7, 210}) {
            SCOPED_TRACE(std::string(task) + ", " + supervision + ", sequence " + std::to_string(index) +
                         (eval ? " (eval)" : "") + ", " + std::to_string(parts) + " parts");
            for (int64_t p = 0; p < parts; ++p) {
              // Uneven parts, the first one empty when parts = 7.
              const int64_t begin = p == 0 ? 0 : d.seq_len * p / parts + (parts == 7 ? 3 : 0);
              const int64_t end = p + 1 == parts ? d.seq_len : d.seq_len * (p + 1) / parts + (parts == 7 ? 3 : 0);
              const int64_t from = parts == 7 && p == 0 ? 0 : begin, to = parts == 7 && p == 0 ? 0 : end;
              const SequenceRows part = data->rows(eval, index, {from, to});
              const auto slice = [&](const std::vector<int32_t>& v) {
                return std::vector<int32_t>(v.begin() + from, v.begin() + to);
              };
              EXPECT_EQ(part.tokens, slice(whole.tokens)) << "rows [" << from << ", " << to << ")";
              EXPECT_EQ(part.targets, slice(whole.targets)) << "rows [" << from << ", " << to << ")";
              EXPECT_EQ(part.answer_id, slice(whole.answer_id)) << "rows [" << from << ", " << to << ")";
              EXPECT_EQ(part.previous, from > 0 ? whole.tokens[size_t(from - 1)] : -1);
              EXPECT_EQ(part.answers, whole.answers);
            }
          }
        }
    }
}

// The associative task's records lie in the last `span` tokens before the queries, and over all of them:
// span = N without a curriculum (the records reach back to the sequence's start), curriculum_min_span at
// the curriculum's first step (before, nothing failed when they kept to the span's nearer half).
TEST(Data, AssociativeRecordsSpreadOverTheirSpan) {
  DataConfig d = small_data();
  d.task = "associative";
  d.seq_len = 512;
  d.records = 4;
  d.queries = 2;
  d.curriculum_min_span = 200;
  const int64_t query_start = d.seq_len + 1 - d.queries * (d.key_digits + 3);
  for (const int64_t curriculum_steps : {int64_t{0}, int64_t{1000}}) {
    d.curriculum_steps = curriculum_steps;
    const auto data = make_dataset(d);
    double nearest_start = 1;  // of the region, the least fraction a record starts into it
    for (int64_t index = 0; index < 40; ++index) {  // training sequences 0-39: the curriculum's first steps
      const int64_t span = curriculum_steps == 0 ? d.seq_len
                                                 : d.curriculum_min_span +
                                                       (d.seq_len - d.curriculum_min_span) * index / curriculum_steps;
      const int64_t region_begin = std::max<int64_t>(1, query_start - span);
      const SequenceRows s = data->rows(false, index, {0, d.seq_len});
      for (int64_t i = 0; i < query_start; ++i)
        if (s.tokens[size_t(i)] == 11) {  // KEY: a record's first token
          EXPECT_GE(i, region_begin) << "curriculum_steps " << curriculum_steps << ", sequence " << index;
          nearest_start = std::min(nearest_start, double(i - region_begin) / double(query_start - region_begin));
        }
    }
    EXPECT_LT(nearest_start, 0.1) << "curriculum_steps " << curriculum_steps;
  }
}

// The associative task's records have distinct keys, also where the key table is large: it is never built
// (before: symbols^2 int64 per sequence, 8.6 GB at model.vocab 65536, on every rank and every step).
TEST(Data, AssociativeKeysAreDistinctWithoutAKeyTable) {
  DataConfig d = small_data();
  d.task = "associative";
  d.vocab = 65536;
  d.seq_len = 4096;
  d.records = 300;
  d.queries = 2;
  d.key_digits = 2;
  const int64_t start = heap::held.load();
  heap::reset_peak();
  const SequenceRows rows = make_dataset(d)->rows(false, 0, {0, d.seq_len});
  EXPECT_LT(heap::peak_since(start), int64_t{64} << 20) << "bytes of heap at the peak, for one sequence";
  // A record is KEY a b d1 d2 SEP: its key (a, b) follows the KEY token (11).
  std::set<std::pair<int32_t, int32_t>> keys;
  int64_t records = 0;
  for (size_t i = 0; i + 2 < rows.tokens.size(); ++i)
    if (rows.tokens[i] == 11) {
      ++records;
      keys.emplace(rows.tokens[i + 1], rows.tokens[i + 2]);
    }
  EXPECT_EQ(records, d.records);
  EXPECT_EQ(keys.size(), size_t(d.records)) << "distinct keys";
}

// The depth curriculum (data.curriculum_steps): training sequence i < curriculum_steps puts the passkey
// record within the last min_span + (N - min_span) i / curriculum_steps tokens before the question;
// training from curriculum_steps on, and evaluation always, anywhere in the sequence.
TEST(Data, CurriculumBoundsThePasskeyDepth) {
  DataConfig d = small_data();
  d.seq_len = 512;
  d.curriculum_steps = 4;
  d.curriculum_min_span = 64;
  constexpr int32_t kKey = 11;  // data.hpp's vocabulary: the record's first KEY comes before the question's
  const int64_t question = d.seq_len - d.key_digits;
  // The deepest record over 200 sequences (seeds), in tokens before the question.
  const auto deepest = [&](bool eval, int64_t index) {
    int64_t depth = 0;
    for (uint64_t seed = 1; seed <= 200; ++seed) {
      d.seed = seed;
      const SequenceRows rows = make_dataset(d)->rows(eval, index, {0, d.seq_len});
      const auto record = std::find(rows.tokens.begin(), rows.tokens.end(), kKey) - rows.tokens.begin();
      depth = std::max<int64_t>(depth, question - record);
    }
    return depth;
  };
  const int64_t spans[] = {64, 176, 288, 400};  // 64 + 448 i / 4
  for (int64_t i = 0; i < 4; ++i) {
    SCOPED_TRACE("training sequence " + std::to_string(i));
    const int64_t depth = deepest(false, i);
    EXPECT_LE(depth, spans[i]);
    EXPECT_GT(depth, spans[i] - 32);  // uniform depths: 200 draws come near the bound
  }
  EXPECT_GT(deepest(false, 4), 450) << "after the curriculum";
  EXPECT_GT(deepest(true, 0), 450) << "evaluation";
}

// `longctx eval --depths`: an evaluation sequence with eval_depth d puts the passkey record at 1 + d (last - 1),
// last being the latest start that leaves it before the question (0: right after BOS, 1: right before the
// question); the rest of the sequence (filler, digits) is the one the random depth has. Training ignores it.
TEST(Data, EvalDepthPlacesThePasskeyRecord) {
  DataConfig d = small_data();
  d.seq_len = 512;
  d.key_repeats = 2;
  constexpr int32_t kKey = 11, kSep = 13;
  const int64_t record = (d.key_digits + 2) * d.key_repeats, last = d.seq_len - d.key_digits - record;
  const auto record_at = [&](const SequenceRows& rows) {
    return std::find(rows.tokens.begin(), rows.tokens.end(), kKey) - rows.tokens.begin();
  };
  const SequenceRows random_depth = make_dataset(d)->rows(true, 3, {0, d.seq_len});
  const int64_t drawn = record_at(random_depth);
  for (const double depth : {0.0, 0.25, 0.5, 1.0}) {
    SCOPED_TRACE("depth " + std::to_string(depth));
    d.eval_depth = depth;
    const auto data = make_dataset(d);
    const SequenceRows rows = data->rows(true, 3, {0, d.seq_len});
    const int64_t at = record_at(rows);
    EXPECT_EQ(at, 1 + std::llround(depth * double(last - 1)));
    // Both copies of the record, then the question's KEY and digits: the same digits as at the random depth.
    for (int64_t copy = 0; copy < d.key_repeats; ++copy) {
      EXPECT_EQ(rows.tokens[size_t(at + copy * (d.key_digits + 2))], kKey);
      EXPECT_EQ(rows.tokens[size_t(at + copy * (d.key_digits + 2) + d.key_digits + 1)], kSep);
      for (int64_t j = 0; j < d.key_digits; ++j)
        EXPECT_EQ(rows.tokens[size_t(at + copy * (d.key_digits + 2) + 1 + j)], random_depth.tokens[size_t(drawn + 1 + j)]);
    }
    EXPECT_EQ(rows.tokens[size_t(d.seq_len - d.key_digits)], kKey) << "the question";
    EXPECT_EQ(rows.answer_id, random_depth.answer_id) << "the same answer is scored";
    for (size_t i = 0; i < rows.targets.size(); ++i) {
      if (rows.answer_id[i] >= 0) {
        EXPECT_EQ(rows.targets[i], random_depth.targets[i]) << "answer target " << i;
      }
    }
    // Outside both records the stream is the same filler.
    for (int64_t i = 1; i < d.seq_len - d.key_digits; ++i) {
      if ((i < at || i >= at + record) && (i < drawn || i >= drawn + record)) {
        EXPECT_EQ(rows.tokens[size_t(i)], random_depth.tokens[size_t(i)]) << "position " << i;
      }
    }
    // A training sequence does not follow it.
    d.eval_depth = -1;
    const SequenceRows trained_random = make_dataset(d)->rows(false, 3, {0, d.seq_len});
    d.eval_depth = depth;
    EXPECT_EQ(make_dataset(d)->rows(false, 3, {0, d.seq_len}).tokens, trained_random.tokens);
  }
}

// The file task's data position: at one length the windows are those of rows(false, i) (token i * N,
// starting over before the held-out tail), and after a change of length the next window starts at the
// next token, not at window i of the new length (which skipped the tokens between).
TEST(Data, FileWindowsFollowTheDataPosition) {
  io::test::SharedTempDir dir;
  std::string text;
  for (int i = 0; i < 200; ++i) text += static_cast<char>('a' + i % 26) + std::string(i % 7 == 0 ? "!" : "");
  const std::string corpus = dir.file("corpus.h5");
  io::test::on_rank0([&] {
    std::ofstream(dir.file("text.txt"), std::ios::binary) << text;
    io::import_text_files({dir.file("text.txt")}, corpus);
  });
  MPI_Barrier(MPI_COMM_WORLD);
  DataConfig d;
  d.task = "file";
  d.path = corpus;
  d.vocab = 256;
  d.seq_len = 16;
  const auto data = make_dataset(d);
  const auto tokens_at = [&](int64_t first, int64_t n) {
    std::vector<int32_t> out;
    for (int64_t i = first; i < first + n; ++i) out.push_back(static_cast<uint8_t>(text[size_t(i)]));
    return out;
  };
  // 229 tokens (200 letters, 29 "!") hold 14 windows of 16 (+1): the last is held out, so 13 train
  // (tokens [0, 209): the last target is the held-out tail's first token).
  ASSERT_EQ(io::TokenReader(corpus).token_count(), 229);
  DataPosition at;
  for (int64_t i = 0; i < 30; ++i) {
    SCOPED_TRACE("training sequence " + std::to_string(i));
    EXPECT_EQ(at.sequence, i);
    EXPECT_EQ(data->train_rows(at, {0, 16}).tokens, data->rows(false, i, {0, 16}).tokens);
    EXPECT_EQ(data->train_rows(at, {0, 16}).tokens, tokens_at(i % 13 * 16, 16));
    const DataPosition stored = data->position_of_step(i);
    EXPECT_EQ(data->train_rows(stored, {0, 16}).tokens, data->train_rows(at, {0, 16}).tokens);
    at = data->after(at);
  }
  // A curriculum stage of 8 for three steps, then 16: the fourth window starts at token 24.
  DataConfig stage = d;
  stage.seq_len = 8;
  stage.split_seq_len = 16;
  const auto short_data = make_dataset(stage);
  at = {};
  for (int i = 0; i < 3; ++i) at = short_data->after(at);
  EXPECT_EQ(at.sequence, 3);
  EXPECT_EQ(at.token, 24);
  const SequenceRows fourth = data->train_rows(at, {4, 12});
  EXPECT_EQ(fourth.tokens, tokens_at(28, 8));
  EXPECT_EQ(fourth.previous, static_cast<uint8_t>(text[27]));
  EXPECT_EQ(fourth.targets, tokens_at(29, 8));
  // The short stage too starts over before the held-out tail: its windows end by token 208.
  at = {0, 200};
  EXPECT_EQ(short_data->train_rows(at, {0, 8}).tokens, tokens_at(200, 8));
  EXPECT_EQ(short_data->after(at).token, 208);
  EXPECT_EQ(short_data->train_rows(short_data->after(at), {0, 8}).tokens, tokens_at(0, 8));
  // A position past the training tokens (a checkpoint of another file) is named, not read.
  EXPECT_EQ(data->position_problem({5, 208}), "");
  EXPECT_NE(data->position_problem({5, 209}).find("token 209, lies past the 209 training tokens of data.path=" + corpus +
                                                  " at data.seq_len=16 (another file, or a checkpoint of another "
                                                  "data.seq_len"),
            std::string::npos)
      << data->position_problem({5, 209});
  EXPECT_EQ(make_dataset(small_data())->position_problem({5, 1 << 30}), "") << "synthetic data has no tokens";
  // The split a resume at another data.seq_len compares: training windows in [0, 209), the held-out
  // sequence from token 208 (its first target is token 209).
  EXPECT_EQ(data->training_end(), 209);
  EXPECT_EQ(data->held_out_begin(), 208);
  EXPECT_EQ(make_dataset(small_data())->held_out_begin(), -1) << "synthetic data holds nothing out";
}

TEST(Data, BadOptionsAreUsageErrors) {
  DataConfig d = small_data();
  d.task = "poetry";
  EXPECT_THROW(make_dataset(d), UsageError);
  d = small_data();
  d.seq_len = 8;
  EXPECT_THROW(make_dataset(d), UsageError);
  d = small_data();
  d.task = "file";
  EXPECT_THROW(make_dataset(d), UsageError);
}

// Bytes malloc holds now, in its arenas and in mmapped blocks (tensors are aligned_alloc'd, which
// operator new above does not see). A tensor of 32 MiB or more maps its own memory and is not counted: the
// tests that use this keep theirs far smaller.
int64_t malloc_held() {
  const struct mallinfo2 info = mallinfo2();
  return static_cast<int64_t>(info.uordblks + info.hblkhd);
}

// `longctx eval`'s trainer (Purpose::evaluate) holds no gradient or AdamW moments, refuses to train, and
// scores exactly what a training trainer's evaluation scores.
TEST(Trainer, AnEvaluationOnlyTrainerScoresAsTrainsEvaluationDoes) {
  auto comm = world();
  const auto data = make_dataset(small_data());
  model::ShardedAttention sharded(*comm);
  Trainer training(small_config(), *comm, sharded);
  Trainer evaluating(small_config(), *comm, sharded, Trainer::Purpose::evaluate);
  EXPECT_TRUE(training.trains());
  EXPECT_FALSE(evaluating.trains());
  EXPECT_TRUE(evaluating.grads().empty());
  EXPECT_THROW(evaluating.optimizer(), InternalError);
  EXPECT_THROW(evaluating.compute_gradients(data->rows(false, 0, evaluating.local_rows()), 0), InternalError);
  ASSERT_EQ(evaluating.params().size(), training.params().size());
  // A step of training first: its forward keeps every layer, the evaluation's reuses the first layer's.
  training.train_step(data->rows(false, 0, training.local_rows()), 0);
  evaluating.params() = training.params();
  const EvalStats a = training.evaluate(*data, 3), b = evaluating.evaluate(*data, 3);
  EXPECT_EQ(a.loss, b.loss);
  EXPECT_EQ(a.accuracy, b.accuracy);
  EXPECT_EQ(a.scored, b.scored);
  EXPECT_GT(a.scored, 0);
}

// A forward pass without a backward holds one layer's activations, whatever model.layers is (before: every
// layer's, as training does: eval's memory grew with the depth).
TEST(Trainer, AnEvaluationHoldsOneLayersActivations) {
  auto comm = world();
  DataConfig d = small_data();
  d.seq_len = 2048;
  const auto data = make_dataset(d);
  model::ShardedAttention sharded(*comm);
  const auto held_by_evaluation = [&](int64_t layers) {
    TrainerConfig c = small_config();
    c.model.layers = layers;
    c.model.mlp_hidden = 256;  // activations, not the attention's buffers, decide the figure
    c.seq_len = d.seq_len;
    Trainer trainer(c, *comm, sharded, Trainer::Purpose::evaluate);
    const int64_t before = malloc_held();
    trainer.evaluate(*data, 1);
    return malloc_held() - before;
  };
  const int64_t one = held_by_evaluation(1), four = held_by_evaluation(4);
  EXPECT_GT(one, 0);
  EXPECT_LT(four, one + one / 4) << "bytes held after an evaluation: 1 layer " << one << ", 4 layers " << four;
}

// log.jsonl's and eval's numbers: each the shortest text that reads back as the same double (before: 17
// digits always, so eval's depth 33.3 was written 33.299999999999997).
TEST(JsonNumber, FewestDigitsThatReadBackTheSameDouble) {
  EXPECT_EQ(json_number(33.3), "33.3");
  EXPECT_EQ(json_number(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(json_number(100.0), "100");
  EXPECT_EQ(json_number(-2.5e-300), "-2.5e-300");
  EXPECT_EQ(json_number(std::nan("")), "null");
  EXPECT_EQ(json_number(-INFINITY), "null");
  std::mt19937_64 random(7);
  for (int i = 0; i < 10000; ++i) {
    uint64_t bits = random();
    double x;
    std::memcpy(&x, &bits, sizeof x);
    if (!std::isfinite(x)) continue;
    const std::string text = json_number(x);
    EXPECT_EQ(std::strtod(text.c_str(), nullptr), x) << text;
    // Its significant digits (of a fraction or an exponent form; an integer shows them all): one fewer reads
    // back another double.
    if (text.find_first_of(".e") == std::string::npos) continue;
    std::string digits = text.substr(0, text.find('e'));
    const auto not_digit = [](char c) { return !std::isdigit(static_cast<unsigned char>(c)); };
    digits.erase(std::remove_if(digits.begin(), digits.end(), not_digit), digits.end());
    digits.erase(0, digits.find_first_not_of('0'));
    digits.erase(digits.find_last_not_of('0') + 1);
    if (digits.size() > 1) {
      char shorter[400];
      std::snprintf(shorter, sizeof shorter, "%.*e", static_cast<int>(digits.size()) - 2, x);
      EXPECT_NE(std::strtod(shorter, nullptr), x) << text << " vs " << shorter;
    }
  }
}

}  // namespace
}  // namespace longctx::train
