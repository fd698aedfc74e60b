// `longctx data import` (text files as byte tokens, or token ids a tokenizer wrote), `data inspect` and
// `data verify`: the token datasets `train` reads (data.task=file). Rank 0 does the work under mpirun.
#include <sys/stat.h>

#include <algorithm>
#include <iostream>
#include <sstream>

#include "io/digest.hpp"
#include "io/durable.hpp"
#include "io/token_dataset.hpp"
#include "runtime/commands/attention_options.hpp"
#include "runtime/commands/commands.hpp"
#include "runtime/core/log.hpp"

namespace longctx::cli {
namespace {

std::string shown(const std::string& text) { return log::printable(text, ""); }

void declare_import(po::options_description& desc, po::positional_options_description&) {
  desc.add_options()
      ("text", po::value<std::vector<std::string>>()->multitoken(), "text files (this or --ids), one document each, as byte tokens (vocab 256): regular files, pipes (a FIFO, <(zcat a.gz)) or - (standard input)")
      ("ids", po::value<std::vector<std::string>>()->multitoken(), "token ids a tokenizer wrote (this or --text), one document per file (files, pipes or -): NumPy .npy files (dtype from their header; any shape, in C order), Megatron-LM indexed datasets given by their PREFIX.idx (a regular file; its documents kept, its ids read from PREFIX.bin as its dtype says), or raw little-endian integers of --ids-dtype (nanoGPT's train.bin)")
      ("ids-dtype", po::value<std::string>()->default_value(""), "dtype of raw --ids files: uint8|int8|uint16|int16|uint32|int32|uint64|int64 (.npy files and Megatron indexes say their own; with a pipe among the inputs it also sizes /tokens' storage, chosen before the pipe is read, a .npy pipe's too: int32 when unset)")
      ("vocab", po::value<int64_t>()->default_value(0), "with --ids: the tokenizer's vocabulary size; every id must be below it, and /tokens is stored as the smallest of uint8, uint16, int32 that holds it (0: the largest id + 1; with a pipe among the inputs and 0, /tokens is stored as what --ids-dtype, int32 when unset, and the files' dtypes hold, chosen before the pipe is read). train's model.vocab must be at least this")
      ("out", po::value<std::string>()->required(), "token file to write (HDF5)");
}

// In the config phase, where every rank agrees: "longctx: error: ..." as for the other options' errors (before:
// in the run, "[longctx error r0] --text: empty path").
io::IdImportOptions id_options(const Invocation& invocation) {
  io::IdImportOptions options;
  options.dtype = invocation.options["ids-dtype"].as<std::string>();
  options.vocab = invocation.options["vocab"].as<int64_t>();
  return options;
}

void check_import(const Invocation& invocation) {
  const auto& options = invocation.options;
  const bool text = options.count("text") > 0, ids = options.count("ids") > 0;
  if (text == ids)
    throw UsageError(text ? "give --text" + value_source(invocation, "text") + " or --ids" + value_source(invocation, "ids") +
                                ", not both (a dataset holds one kind of token)"
                          : "data import needs --text FILES (byte tokens) or --ids FILES (token ids a tokenizer wrote)");
  const std::string option = text ? "text" : "ids";
  for (const std::string& file : options[option].as<std::vector<std::string>>())
    if (file.empty()) throw UsageError("--" + option + ": empty path", option);
  // (A value equal to the default is what --text means: before, --vocab 0 given was refused.) The option's
  // source is added at the end, as for any error about one option (before: also here, said twice).
  if (text && !holds_default(invocation, "ids-dtype"))
    throw UsageError("--ids-dtype goes with --ids, not --text", "ids-dtype");
  if (text && !holds_default(invocation, "vocab"))
    throw UsageError("--vocab goes with --ids; text is byte tokens, vocab 256", "vocab");
  if (options["out"].as<std::string>() == "-")
    throw UsageError("--out -: a token dataset is an HDF5 file, which standard output cannot hold; name a file", "out");
  io::check_id_options(id_options(invocation));
}

int run_import(Invocation& invocation) {
  const auto& options = invocation.options;
  const bool text = options.count("text") > 0;
  const auto files = options[text ? "text" : "ids"].as<std::vector<std::string>>();
  const std::string out = io::output_target(options["out"].as<std::string>());
  // Standard input under a launcher comes through it, which closes it when it is interrupted: the import
  // waits a little after its end for the signal that follows (import_text_files).
  const double settle = invocation.process.launcher().kind == LauncherKind::none ? 0 : 3;
  return run_on_rank0(invocation, [&] {
    struct stat info {};
    const bool replaces = ::stat(out.c_str(), &info) == 0 && S_ISREG(info.st_mode);  // (one of another kind is refused)
    const auto said = [&] {  // (an empty file may be replaced too: from the data import audit)
      if (replaces)
        log::info(out + ": the " + (info.st_size == 0 ? "empty file" : "token dataset") + " that was there is replaced");
    };
    if (text) {
      const io::TokenImportStats stats = io::import_text_files(files, out, settle);
      said();
      std::cout << "imported " << stats.documents << " document(s), " << stats.tokens << " byte tokens -> " << out << "\n";
      return 0;
    }
    const io::IdImportOptions ids = id_options(invocation);
    const io::TokenImportStats stats = io::import_token_ids(files, ids, out, settle);
    said();
    std::cout << "imported " << stats.documents << " document(s), " << stats.tokens << " tokens -> " << out << "\n  ids up to "
              << stats.largest_id << "; vocab " << stats.vocab
              << (ids.vocab > 0 ? "" : " (the largest id + 1; --vocab sets the tokenizer's)") << "; stored as "
              << stats.storage;
    // Where a pipe sized the storage before its ids were read, one narrower holds the vocabulary: said, with how.
    if (stats.narrowest_storage != stats.storage)
      std::cout << " (sized before the pipe was read; " << stats.narrowest_storage << " holds vocab " << stats.vocab
                << ": --vocab " << stats.vocab << " stores it so, " << stats.tokens << " x " << stats.narrowest_bytes
                << " bytes)";
    std::cout << "\n";
    return 0;
  });
}

// ---- inspect ------------------------------------------------------------------------------------------
void declare_inspect(po::options_description& desc, po::positional_options_description& positional) {
  desc.add_options()("path", po::value<std::string>(), "token dataset (from `longctx data import`)")
      ("seq-len", po::value<std::string>()->default_value("0"), "also say how many training and held-out sequences of this length (data.seq_len; K/M/G suffixes) it holds")
      ("json", po::bool_switch(), "print one JSON object: path, format_version, vocab, tokens, documents, dtype, "
       "storage_bytes, fletcher32, digest (/tokens' digest attribute, \"0x...\"; null in a file imported before "
       "digests), document_tokens ({min, median, max}), and with --seq-len sequences "
       "({seq_len, total, train, held_out})");
  positional.add("path", 1);
}

// inspect's --seq-len: 0 when not asked, else >= 2.
int64_t inspect_seq_len(const Invocation& invocation) {
  const std::string text = invocation.options["seq-len"].as<std::string>();
  const int64_t seq_len = parse_size("seq-len", text);
  if (seq_len == 0) return 0;  // (also 0K or 00: before, "0" alone)
  // As train's data.seq_len and eval's --seq-len: a sequence of 1 has no pair of tokens to predict from.
  if (seq_len < 2) throw UsageError("--seq-len " + text + ": it must be >= 2, as data.seq_len (0: not asked)", "seq-len");
  return seq_len;
}

void require_dataset_path(const Invocation& invocation) {
  require_positional_path(invocation, "a token dataset");
  if (invocation.options.count("seq-len")) inspect_seq_len(invocation);
}

int run_inspect(Invocation& invocation) {
  const std::string path = invocation.options["path"].as<std::string>();
  const int64_t seq_len = inspect_seq_len(invocation);
  const bool json = invocation.options["json"].as<bool>();
  return run_on_rank0(invocation, [&] {
    const io::TokenReader reader(path);
    const std::vector<int64_t> offsets = reader.document_offsets();
    std::vector<int64_t> lengths;
    for (size_t i = 1; i < offsets.size(); ++i) lengths.push_back(offsets[i] - offsets[i - 1]);
    std::sort(lengths.begin(), lengths.end());
    const int64_t shortest = lengths.empty() ? 0 : lengths.front(), longest = lengths.empty() ? 0 : lengths.back();
    const size_t n = lengths.size();
    // The middle length, or the mean of the two middle ones: a whole number or one ending in .5.
    const int64_t twice_median = n == 0 ? 0 : lengths[(n - 1) / 2] + lengths[n / 2];
    const std::string median = std::to_string(twice_median / 2) + (twice_median % 2 ? ".5" : "");
    // train's split (runtime/train/data.cpp): the last 1/20 of the sequences of data.seq_len are held out
    // for evaluation, at least one when there are two.
    const int64_t total = seq_len > 0 ? reader.sequence_count(seq_len) : 0;
    const int64_t held_out = total >= 2 ? std::max<int64_t>(1, total / 20) : 0;
    const std::optional<uint64_t> digest = reader.identity().digest;
    if (json) {
      std::cout << "{\"path\": " << json_string(path) << ", \"format_version\": " << reader.format_version()
                << ", \"vocab\": " << reader.vocab() << ", \"tokens\": " << reader.token_count()
                << ", \"documents\": " << reader.document_count() << ", \"dtype\": " << json_string(reader.token_dtype())
                << ", \"storage_bytes\": " << reader.storage_bytes() << ", \"fletcher32\": " << json_bool(reader.checksummed())
                << ", \"digest\": " << (digest ? json_string(io::digest_text(*digest)) : std::string("null"))
                << ", \"document_tokens\": {\"min\": " << shortest << ", \"median\": " << median << ", \"max\": " << longest << "}";
      if (seq_len > 0)
        std::cout << ", \"sequences\": {\"seq_len\": " << seq_len << ", \"total\": " << total << ", \"train\": "
                  << total - held_out << ", \"held_out\": " << held_out << "}";
      std::cout << "}\n";
      return 0;
    }
    std::cout << "token dataset " << shown(path) << "\n"
              << "  format_version " << reader.format_version() << "  vocab " << reader.vocab() << "  tokens "
              << reader.token_count() << " (" << reader.token_dtype() << ", " << human_bytes(reader.storage_bytes())
              << " stored" << (reader.checksummed() ? ", fletcher32" : "") << ")\n"
              << "  documents " << reader.document_count() << "  tokens per document: min " << shortest << ", median "
              << median << ", max " << longest << "\n"
              << "  digest " << (digest ? io::digest_text(*digest) : "none (imported by an older longctx, or made otherwise; `data import` again adds one)")
              << "\n";
    if (seq_len > 0) {
      std::cout << "  at seq_len " << seq_len << ": " << total << " sequence(s), " << total - held_out << " to train on, "
                << held_out << " held out for evaluation" << (held_out > 0 ? " (the last 1/20, at least one)" : "") << "\n";
      if (total < 1)
        std::cout << "  (train needs at least seq_len + 1 = "
                  << static_cast<uint64_t>(seq_len) + 1  // (int64's + 1 wrapped negative at 2^63 - 1)
                  << " tokens: this dataset is too short for it)\n";
      else if (held_out == 0)
        std::cout << "  (with one sequence none is held out: evaluation would score the training sequence)\n";
    }
    return 0;
  });
}

// ---- verify -------------------------------------------------------------------------------------------
void declare_verify(po::options_description& desc, po::positional_options_description& positional) {
  desc.add_options()("path", po::value<std::vector<std::string>>()->multitoken(), "token datasets")
      ("json", po::bool_switch(), "print one JSON object per dataset: path, ok, tokens, documents, vocab (these three null for a file that "
       "did not open as a token dataset; documents also where /doc_offsets cannot be read), ids_read, smallest_id, largest_id (of the ids read; null when none), outside (ids outside [0, vocab)), problems ([text]), "
       "unchecked ([datasets without a checksum]), digest (whether /tokens has a digest attribute, which is then "
       "checked; null for a file that did not open); the exit code as without it");
  positional.add("path", -1);
}

int run_verify(Invocation& invocation) {
  const auto paths = invocation.options["path"].as<std::vector<std::string>>();
  const bool json = invocation.options["json"].as<bool>();
  return run_on_rank0(invocation, [&] {
    bool ok = true;
    for (const std::string& path : paths) {
      const io::TokenVerifyReport report = io::verify_tokens(path);
      ok = ok && report.ok;
      if (!json) {
        std::cout << shown(report.summary()) << "\n";
        continue;
      }
      const auto list = [](const std::vector<std::string>& items) {
        std::string text;
        for (const std::string& item : items) text += (text.empty() ? "" : ", ") + json_string(item);
        return "[" + text + "]";
      };
      // Figures the file never gave are null, not 0 (before: a file that did not open read as "tokens": 0,
      // "vocab": 0, and one with no id read as ids 0..0).
      const auto known = [](bool given, int64_t value) { return given ? std::to_string(value) : std::string("null"); };
      const bool ids = report.ids_read > 0;
      std::cout << "{\"path\": " << json_string(path) << ", \"ok\": " << json_bool(report.ok)
                << ", \"tokens\": " << known(report.opened, report.tokens)
                << ", \"documents\": " << known(report.opened && report.documents >= 0, report.documents)
                << ", \"vocab\": " << known(report.opened, report.vocab) << ", \"ids_read\": " << report.ids_read
                << ", \"smallest_id\": " << known(ids, report.smallest_id)
                << ", \"largest_id\": " << known(ids, report.largest_id)
                << ", \"outside\": " << report.outside << ", \"problems\": " << list(report.problems)
                << ", \"unchecked\": " << list(report.unchecked)
                << ", \"digest\": " << (report.opened ? json_bool(report.digested) : std::string("null"))
                << "}\n";
    }
    return ok ? 0 : static_cast<int>(ExitCode::bad_input);
  });
}

}  // namespace

Command data_import_command() {
  return {"data import", "turn text files (byte tokens) or a tokenizer's ids (.npy, Megatron .idx/.bin, raw) into a token dataset for `train` (data.task=file)",
          "", declare_import, run_import, check_import, nullptr, nullptr, /*results_in_files=*/true};
}

Command data_inspect_command() {
  return {"data inspect", "print a token dataset's vocabulary, tokens, documents and storage (with --seq-len: its training and held-out sequences)",
          "FILE", declare_inspect, run_inspect, require_dataset_path};
}

Command data_verify_command() {
  return {"data verify", "read every token of token datasets: checksums, every id below the vocabulary, and the tokens' digest; exit 3 on damage",
          "FILE...", declare_verify, run_verify, require_dataset_path};
}

}  // namespace longctx::cli
