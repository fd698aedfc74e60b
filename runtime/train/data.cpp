#include "runtime/train/data.hpp"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "attention/schedule.hpp"
#include "io/h5.hpp"
#include "io/token_dataset.hpp"
#include "runtime/core/error.hpp"
#include "runtime/core/log.hpp"

namespace longctx::train {
namespace {

constexpr int32_t kBos = 10, kKey = 11, kQuery = 12, kSep = 13, kFirstFree = 14;

// splitmix64: a counter-based stream, the same on every platform.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  int64_t below(int64_t n) { return n <= 0 ? 0 : static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }

 private:
  uint64_t state_;
};

uint64_t stream_seed(uint64_t seed, bool eval, int64_t index) {
  Rng mix(seed * 0x100000001B3ull ^ (eval ? 0xE7A1ull : 0x7EA1ull));
  mix.next();
  return mix.next() ^ static_cast<uint64_t>(index) * 0xD6E8FEB86659FD93ull;
}

// This rank's part of a synthetic sequence: stream s[lo, hi) (its rows [begin, end), the token before
// them and the last target, s[end]) and, per row of [begin, end), its trained flag and answer id. The
// generator draws the whole sequence's layout (O(records) numbers) on every rank alike and writes only what
// falls inside: memory and time per rank follow its rows, not N (before: the whole stream on every rank).
class Part {
 public:
  Part(io::RowRange rows, bool trained) : rows_(rows), lo_(std::max<int64_t>(0, rows.begin - 1)), hi_(rows.end + 1) {
    stream_.resize(static_cast<size_t>(hi_ - lo_));
    trained_.assign(static_cast<size_t>(rows.rows()), trained ? 1 : 0);
    answer_id_.assign(static_cast<size_t>(rows.rows()), -1);
  }
  int64_t lo() const { return lo_; }
  int64_t hi() const { return hi_; }
  void set(int64_t at, int32_t token) {
    if (at >= lo_ && at < hi_) stream_[size_t(at - lo_)] = token;
  }
  // Row `row` (its target is s[row + 1]) is trained and scored as part of answer `id`.
  void answer(int64_t row, int32_t id) {
    if (row < rows_.begin || row >= rows_.end) return;
    trained_[size_t(row - rows_.begin)] = 1;
    answer_id_[size_t(row - rows_.begin)] = id;
  }
  SequenceRows take(int64_t answers) {
    SequenceRows out;
    out.answers = answers;
    const size_t n = static_cast<size_t>(rows_.rows()), first = static_cast<size_t>(rows_.begin - lo_);
    out.previous = rows_.begin > 0 ? stream_[0] : -1;
    out.tokens.assign(stream_.begin() + static_cast<std::ptrdiff_t>(first),
                      stream_.begin() + static_cast<std::ptrdiff_t>(first + n));
    out.targets.resize(n);
    for (size_t i = 0; i < n; ++i) out.targets[i] = trained_[i] ? stream_[first + i + 1] : -1;
    out.answer_id = std::move(answer_id_);
    return out;
  }

 private:
  io::RowRange rows_;
  int64_t lo_, hi_;
  std::vector<int32_t> stream_;
  std::vector<char> trained_;
  std::vector<int32_t> answer_id_;
};

class SyntheticDataset : public Dataset {
 public:
  explicit SyntheticDataset(DataConfig config) : c_(std::move(config)) {}

  SequenceRows rows(bool eval, int64_t index, io::RowRange range) const override {
    Rng rng(stream_seed(c_.seed, eval, index));
    const int64_t n = c_.seq_len;
    if (range.begin < 0 || range.end > n || range.begin > range.end)
      throw InternalError("rows [" + std::to_string(range.begin) + ", " + std::to_string(range.end) +
                          ") of a sequence of " + std::to_string(n));
    Part part(range, c_.supervision == "all");
    // Filler: a sentence drawn per sequence, of a length drawn in [period/2, 3 period/2], repeated. It is
    // predictable only by copying from its previous occurrence by CONTENT (its offset varies), which is the
    // mechanism retrieval needs too. The length is odd: coprime to power-of-two dilation rates, some earlier
    // occurrence of each token lies on every residue mod r, so dilated branches of every head can copy it.
    const int64_t period = (c_.filler_period / 2 + rng.below(c_.filler_period + 1)) | 1;
    std::vector<int32_t> sentence(static_cast<size_t>(period));
    for (auto& t : sentence) t = static_cast<int32_t>(filler_first() + rng.below(c_.vocab - filler_first()));
    part.set(0, kBos);
    for (int64_t i = std::max<int64_t>(1, part.lo()); i < part.hi(); ++i) part.set(i, sentence[size_t(i % period)]);
    // Depth curriculum: records lie within the last `span` tokens before the query block.
    int64_t span = n;
    if (!eval && c_.curriculum_steps > 0 && index < c_.curriculum_steps)
      span = c_.curriculum_min_span + (n - c_.curriculum_min_span) * index / c_.curriculum_steps;
    const int64_t answers = c_.task == "passkey" ? build_passkey(rng, span, part, eval) : build_associative(rng, span, part);
    return part.take(answers);
  }

 private:
  int64_t symbols() const { return c_.task == "associative" ? (c_.vocab - kFirstFree) / 2 : 0; }
  int64_t filler_first() const { return kFirstFree + symbols(); }

  void write_digits(Rng& rng, std::vector<int32_t>& digits) const {
    digits.resize(static_cast<size_t>(c_.key_digits));
    for (auto& d : digits) d = static_cast<int32_t>(rng.below(10));
  }
  // The answer: `digits` at stream positions [at, at + K), predicted from input rows at - 1 ...
  void ask(Part& part, int64_t at, const std::vector<int32_t>& digits, int32_t id) const {
    for (int64_t j = 0; j < c_.key_digits; ++j) {
      part.set(at + j, digits[size_t(j)]);
      part.answer(at + j - 1, id);
    }
  }

  // The record [KEY d1..dK SEP] (key_repeats times in a row) at a random depth; the sequence ends with
  // [KEY d1..dK]: like the classic prompt, the question restates the record's prefix.
  int64_t build_passkey(Rng& rng, int64_t span, Part& part, bool eval) const {
    const int64_t n = c_.seq_len, k = c_.key_digits, record = (k + 2) * c_.key_repeats;
    std::vector<int32_t> digits;
    write_digits(rng, digits);
    const int64_t query = n - k;  // stream[query] = KEY, digits at query + 1 .. n
    const int64_t last = query - record;
    const int64_t first = std::max<int64_t>(1, std::min(last, query - span));
    int64_t at = first + rng.below(last - first + 1);  // drawn also at a set depth: the stream stays the same
    if (eval && c_.eval_depth >= 0)
      at = first + std::llround(std::min(1.0, c_.eval_depth) * static_cast<double>(last - first));
    for (int64_t copy = 0; copy < c_.key_repeats; ++copy) {
      const int64_t base = at + copy * (k + 2);
      part.set(base, kKey);
      for (int64_t j = 0; j < k; ++j) part.set(base + 1 + j, digits[size_t(j)]);
      part.set(base + 1 + k, kSep);
    }
    part.set(query, kKey);
    ask(part, query + 1, digits, 0);
    return 1;
  }

  int64_t build_associative(Rng& rng, int64_t span, Part& part) const {
    const int64_t n = c_.seq_len, k = c_.key_digits, records = c_.records, queries = c_.queries;
    const int64_t record_len = k + 4, query_len = k + 3;
    const int64_t query_start = n + 1 - queries * query_len;
    const int64_t region_begin = std::max<int64_t>(1, query_start - span);
    const int64_t chunk = (query_start - region_begin) / records;
    // Distinct keys (a, b) for the records: the first `records` of a Fisher-Yates shuffle of all
    // symbols^2 keys, with only the moved entries held (before: the whole table, symbols^2 int64 per
    // sequence: 2 GB at model.vocab 32000).
    const int64_t key_count = symbols() * symbols();
    std::unordered_map<int64_t, int64_t> moved;
    const auto key_at = [&moved](int64_t i) {
      const auto found = moved.find(i);
      return found == moved.end() ? i : found->second;
    };
    std::vector<int64_t> keys(static_cast<size_t>(records));
    for (int64_t i = 0; i < records; ++i) {
      const int64_t j = i + rng.below(key_count - i);
      keys[size_t(i)] = key_at(j);
      moved[j] = key_at(i);
    }
    std::vector<std::vector<int32_t>> values(static_cast<size_t>(records));
    for (int64_t r = 0; r < records; ++r) {
      write_digits(rng, values[size_t(r)]);
      const int64_t at = region_begin + r * chunk + rng.below(chunk - record_len + 1);
      part.set(at, kKey);
      part.set(at + 1, static_cast<int32_t>(kFirstFree + keys[size_t(r)] / symbols()));
      part.set(at + 2, static_cast<int32_t>(kFirstFree + keys[size_t(r)] % symbols()));
      for (int64_t j = 0; j < k; ++j) part.set(at + 3 + j, values[size_t(r)][size_t(j)]);
      part.set(at + 3 + k, kSep);
    }
    for (int64_t q = 0; q < queries; ++q) {
      const int64_t r = rng.below(records);
      const int64_t at = query_start + q * query_len;
      part.set(at, kQuery);
      part.set(at + 1, static_cast<int32_t>(kFirstFree + keys[size_t(r)] / symbols()));
      part.set(at + 2, static_cast<int32_t>(kFirstFree + keys[size_t(r)] % symbols()));
      ask(part, at + 3, values[size_t(r)], static_cast<int32_t>(q));
    }
    return queries;
  }

  DataConfig c_;
};

class FileDataset : public Dataset {
 public:
  FileDataset(const DataConfig& config) : c_(config), reader_(config.path, MPI_COMM_NULL) {
    if (reader_.vocab() > c_.vocab)
      throw UsageError("model.vocab=" + std::to_string(c_.vocab) + " is smaller than the vocabulary (" +
                       std::to_string(reader_.vocab()) + ") of data.path=" + c_.path + ": a new run needs model.vocab >= " +
                       std::to_string(reader_.vocab()) + "; a checkpoint's model keeps its vocabulary, so a resume or "
                       "eval needs a file of ids below it",
                       "model.vocab");
    sequences_ = reader_.sequence_count(c_.seq_len);
    // The file is whole; the length asked of it is what to change (exit 2, as eval's --seq-len past a file).
    if (sequences_ < 1)
      throw UsageError("data.path=" + c_.path + " holds " + std::to_string(reader_.token_count()) + " tokens, fewer than " +
                           c_.seq_len_option + "+1=" + std::to_string(c_.seq_len + 1) + ": give " +
                           (reader_.token_count() >= 2
                                ? c_.seq_len_option + " <= " + std::to_string(reader_.token_count() - 1) + ", or "
                                : std::string()) +
                           "a longer token file",
                       option_key(c_.seq_len_option));
    // The held-out tail: the last 1/20 of the sequences of the split length (data.seq_len), at least one
    // when there are two. Training sequences of any length end before it (their last target is its first
    // token), so a curriculum's shorter stage never trains on what evaluation scores.
    const int64_t split_len = c_.split_seq_len > 0 ? c_.split_seq_len : c_.seq_len;
    const int64_t split_sequences = reader_.sequence_count(split_len);
    held_out_ = split_sequences >= 2 ? std::max<int64_t>(1, split_sequences / 20) : 0;
    train_count_ = held_out_ > 0 ? (split_sequences - held_out_) * split_len / c_.seq_len : sequences_;
    train_end_ = held_out_ > 0 ? (split_sequences - held_out_) * split_len + 1 : reader_.token_count();
    split_len_ = split_len;
  }
  // Training windows (seq_len inputs and one more target) lie in tokens [0, train_end_): one that would
  // not fit starts the data over at token 0 (the next epoch).
  int64_t window_start(DataPosition at) const {
    return at.token >= 0 && at.token <= train_end_ - 1 - c_.seq_len ? at.token : 0;
  }
  SequenceRows train_rows(DataPosition at, io::RowRange range) const override {
    return window(window_start(at), range, false);
  }
  DataPosition after(DataPosition at) const override { return {at.sequence + 1, window_start(at) + c_.seq_len}; }
  DataPosition position_of_step(int64_t step) const override { return {step, step % train_count_ * c_.seq_len}; }
  std::string position_problem(DataPosition at) const override {
    if (at.token >= 0 && at.token < train_end_) return "";
    return "the checkpoint's data position, token " + std::to_string(at.token) + ", lies past the " +
           std::to_string(train_end_) + " training tokens of data.path=" + c_.path + " at data.seq_len=" +
           std::to_string(split_len_) + " (another file, or a checkpoint of another data.seq_len, whose "
           "training tokens end elsewhere): training starts its data over at token 0";
  }
  bool evaluates_on_training_data() const override { return held_out_ == 0; }
  int64_t eval_sequence_count() const override { return held_out_ > 0 ? held_out_ : train_count_; }
  int64_t training_end() const override { return train_end_; }
  int64_t held_out_begin() const override { return held_out_ > 0 ? train_count_ * c_.seq_len : -1; }
  std::optional<io::TokenIdentity> file_identity() const override { return reader_.identity(); }
  SequenceRows rows(bool eval, int64_t index, io::RowRange range) const override {
    if (eval && c_.split_seq_len > 0 && c_.split_seq_len != c_.seq_len)
      throw InternalError("evaluation reads the data.seq_len dataset, not a curriculum stage's");
    const int64_t sequence = eval && held_out_ > 0 ? train_count_ + index % held_out_ : index % train_count_;
    return window(sequence * c_.seq_len, range, eval);
  }

 private:
  // Rows `range` of the window of seq_len inputs from token `start`.
  SequenceRows window(int64_t start, io::RowRange range, bool eval) const {
    // A read that fails (a damaged chunk: HDF5's "read failed") names the tokens it read and what for, and
    // the command that finds every damaged range.
    const auto reading = [&](int64_t begin, int64_t end, const auto& read) {
      try {
        return read();
      } catch (const io::h5::ReadFailure& e) {
        throw InputError(std::string(e.what()) + " (reading tokens [" + std::to_string(begin) + ", " + std::to_string(end) + ") for " +
                         (eval ? "an evaluation" : "training") + "; `longctx data verify " +
                         log::shell_path(c_.path) + "` names every damaged range)");
      }
    };
    const io::SequenceRows r = reading(start + range.begin, start + range.end + 1,
                                       [&] { return reader_.read_window_rows(start, c_.seq_len, range); });
    // A file made otherwise than by `data import` may hold tokens past its vocab attribute (which is at
    // most model.vocab): name the file and the position. The window is the inputs and then the last
    // target (targets are the inputs shifted by one).
    const int64_t first = start + range.begin;
    for (size_t i = 0; i <= r.inputs.size() && !r.targets.empty(); ++i) {
      const int32_t token = i < r.inputs.size() ? r.inputs[i] : r.targets.back();
      if (token < 0 || token >= reader_.vocab())
        throw InputError("data.path=" + c_.path + ": token " + std::to_string(token) + " at position " +
                         std::to_string(first + static_cast<int64_t>(i)) + " is outside [0, " +
                         std::to_string(reader_.vocab()) + "), the file's vocab (`longctx data verify " +
                         log::shell_path(c_.path) + "` checks every token)");
    }
    SequenceRows out;
    out.tokens = r.inputs;
    out.targets = r.targets;
    out.answer_id.assign(out.tokens.size(), -1);
    if (range.begin > 0) out.previous = reading(first - 1, first, [&] { return reader_.read(first - 1, first); })[0];
    return out;
  }

  DataConfig c_;
  io::TokenReader reader_;
  int64_t sequences_ = 0;    // of seq_len
  int64_t train_count_ = 0;  // the first ones train
  int64_t held_out_ = 0;     // the next ones (of the split length) are evaluated
  int64_t train_end_ = 0;    // training windows lie in tokens [0, train_end_)
  int64_t split_len_ = 0;    // the length whose held-out tail ends them
};

}  // namespace

std::unique_ptr<Dataset> make_dataset(const DataConfig& c) {
  if (c.supervision != "all" && c.supervision != "answer")
    throw UsageError("data.supervision=" + c.supervision + ": allowed values are all, answer", "data.supervision");
  if (c.task == "file") {
    if (c.path.empty())
      throw UsageError("data.task=file needs data.path (a token dataset from `longctx data import`)", "data.task");
    return std::make_unique<FileDataset>(c);
  }
  if (c.task != "passkey" && c.task != "associative")
    throw UsageError("data.task=" + c.task + ": allowed values are passkey, associative, file", "data.task");
  // Each names the option it is about, for the config phase to say where its value came from.
  if (c.vocab < 32)
    throw UsageError("model.vocab=" + std::to_string(c.vocab) + ": data.task=" + c.task + " needs >= 32",
                     "model.vocab");
  const auto at_least_one = [](const char* name, int64_t value) {
    if (value < 1) throw UsageError(std::string(name) + "=" + std::to_string(value) + ": must be >= 1", name);
  };
  at_least_one("data.key_digits", c.key_digits);
  at_least_one("data.key_repeats", c.key_repeats);
  constexpr int64_t kMaxFiller = int64_t{1} << 24;  // the filler sentence is held whole
  if (c.filler_period < 1 || c.filler_period > kMaxFiller)
    throw UsageError("data.filler_period=" + std::to_string(c.filler_period) + ": must be in [1, " +
                         std::to_string(kMaxFiller) + "]",
                     "data.filler_period");
  if (c.task == "associative") {
    at_least_one("data.records", c.records);
    at_least_one("data.queries", c.queries);
    const int64_t symbols = (c.vocab - kFirstFree) / 2;
    if (static_cast<long double>(c.records) > static_cast<long double>(symbols) * symbols)  // no overflow at any vocab
      throw UsageError("data.records=" + std::to_string(c.records) + ": at most " + std::to_string(symbols * symbols) +
                           " distinct keys with model.vocab=" + std::to_string(c.vocab),
                       "data.records");
  }
  // The tokens one sequence's records and questions take, in long double: the counts are unbounded here
  // (before, each was first held to <= the length, and a too-short length was blamed on data.key_digits,
  // which eval's user cannot change). Compared with the length, then exact, as every count is <= it.
  const long double digits = c.key_digits, repeats = c.key_repeats, records = c.records, queries = c.queries;
  const long double wanted = c.task == "associative" ? queries * (digits + 3) + records * (digits + 4) + 2
                                                     : (digits + 2) * (repeats + 1) + 2;
  if (wanted > static_cast<long double>(c.seq_len)) {
    const std::string counts = c.task == "associative"
                                   ? "data.records=" + std::to_string(c.records) + ", data.queries=" +
                                         std::to_string(c.queries) + ", data.key_digits=" + std::to_string(c.key_digits)
                                   : "data.key_digits=" + std::to_string(c.key_digits) +
                                         ", data.key_repeats=" + std::to_string(c.key_repeats);
    throw UsageError(c.seq_len_option + "=" + std::to_string(c.seq_len) + " is too short for " + c.task + ": need " +
                     (wanted < 0x1p63L ? "at least " + std::to_string(static_cast<int64_t>(wanted)) : std::string("more than 2^63")) +
                         " (" + counts + ")",
                     option_key(c.seq_len_option));
  }
  const int64_t needed = static_cast<int64_t>(wanted);
  if (c.curriculum_steps > 0 && c.curriculum_min_span < needed - 1)
    throw UsageError("data.curriculum_min_span=" + std::to_string(c.curriculum_min_span) + " is too short for " +
                         c.task + ": need at least " + std::to_string(needed - 1),
                     "data.curriculum_min_span");
  return std::make_unique<SyntheticDataset>(c);
}

}  // namespace longctx::train
