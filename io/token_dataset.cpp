#include "io/token_dataset.hpp"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "io/checkpoint.hpp"
#include "io/digest.hpp"
#include "io/durable.hpp"
#include "runtime/core/log.hpp"

namespace longctx::io {

namespace {
// A file that is no HDF5 at all (a text corpus given as data.path): said with how to make a token dataset of
// it (before: "cannot open as an HDF5 file (truncated, damaged or not HDF5)" alone; from the user audit).
h5::File open_token_file(const std::string& path, MPI_Comm comm) {
  try {
    return h5::File::open(path, h5::Mode::read, comm);
  } catch (const InputError& e) {
    const std::string what = e.what();
    if (what.find("file signature not found") == std::string::npos) throw;
    throw InputError(what + ". A token dataset is made by `longctx data import`: --text " + log::shell_path(path) +
                     " for byte tokens, --ids for a tokenizer's ids");
  }
}
}  // namespace

TokenReader::TokenReader(const std::string& path, MPI_Comm comm, Offsets offsets_wanted)
    : path_(path), file_(open_token_file(path, comm)), offsets_read_(offsets_wanted == Offsets::checked) {
  if (!file_.has_attribute("format"))
    throw InputError(path_ + ": not a longctx token dataset (no format attribute; `longctx data import` makes one)");
  if (const std::string format = file_.read_string_attribute("format"); format != kTokenFormat)
    throw InputError(path_ + ": not a longctx token dataset (its format is '" + log::printable(format, "") + "', not '" +
                     kTokenFormat + "')" + format_reader_hint(format));
  const int64_t version = file_.read_int64_attribute("format_version");
  if (version != kTokenFormatVersion)
    throw InputError(path_ + ": format_version is " + std::to_string(version) + ", this build reads " +
                     std::to_string(kTokenFormatVersion));
  tokens_ = file_.open_dataset("tokens");
  tokens_.require_rank(1, 1);
  const h5::ElementType type = tokens_.element_type();
  if (type != h5::ElementType::u8 && type != h5::ElementType::u16 && type != h5::ElementType::i32)
    throw InputError(tokens_.where().describe() + ": dtype " + tokens_.dtype_name() + ", expected uint8, uint16 or int32");
  token_count_ = tokens_.shape()[0];
  // Storage never written (missing chunks, a VDS source or external file that is not there) reads as
  // fill values without an error: training and evaluation would run on zeros.
  tokens_.require_allocated();
  vocab_ = file_.read_int64_attribute("vocab");
  document_count_ = -1;
  if (offsets_read_) {
    const h5::Dataset offsets = file_.open_dataset("doc_offsets");
    offsets.require_rank(1, 1);
    // Integers only: read as int64, a float's fraction would go unseen (33.7 read as 33, and `data verify`
    // said ok), a long double's too.
    if (!offsets.holds_integers())
      throw InputError(offsets.where().describe() + ": dtype " + offsets.dtype_name() +
                       ", expected an integer type (token positions)");
    offsets.require_allocated();
    document_count_ = offsets.shape()[0] - 1;
  }
  check_metadata();
}

// The attributes and doc_offsets must describe the tokens dataset: a file assembled by hand (or cut
// short) that disagrees is refused here, not at some later sequence. (/doc_offsets' part only where it
// was read.)
void TokenReader::check_metadata() const {
  const auto refuse = [&](const std::string& what) { throw TokenMetadataError(path_ + ": " + what); };
  if (file_.has_attribute("token_count") && file_.read_int64_attribute("token_count") != token_count_)
    refuse("token_count attribute is " + std::to_string(file_.read_int64_attribute("token_count")) +
           " but /tokens holds " + std::to_string(token_count_) + " tokens");
  if (offsets_read_ && document_count_ < 0) refuse("/doc_offsets is empty; it needs at least [0, token count]");
  if (offsets_read_ && file_.has_attribute("document_count") &&
      file_.read_int64_attribute("document_count") != document_count_)
    refuse("document_count attribute is " + std::to_string(file_.read_int64_attribute("document_count")) +
           " but /doc_offsets holds " + std::to_string(document_count_) + " documents");
  // Token ids are int32 at most: a larger vocabulary is a damaged attribute (compared with model.vocab
  // it would read as a configuration mistake).
  constexpr int64_t kMaxVocab = int64_t{1} << 31;
  if (vocab_ <= 0 || vocab_ > kMaxVocab)
    refuse("vocab attribute is " + std::to_string(vocab_) + "; it must be in [1, " + std::to_string(kMaxVocab) +
           "] (token ids are int32)");
  const std::vector<int64_t> offsets = offsets_read_ ? document_offsets() : std::vector<int64_t>{};
  for (size_t i = 0; i < offsets.size(); ++i) {
    const int64_t previous = i == 0 ? 0 : offsets[i - 1];
    const bool last = i + 1 == offsets.size();
    if ((i == 0 && offsets[i] != 0) || offsets[i] < previous || offsets[i] > token_count_ ||
        (last && offsets[i] != token_count_))
      refuse("/doc_offsets[" + std::to_string(i) + "] = " + std::to_string(offsets[i]) +
             ": offsets must rise from 0 to the token count " + std::to_string(token_count_));
  }
}

int64_t TokenReader::sequence_count(int64_t seq_len) const {
  if (seq_len <= 0) throw UsageError("seq_len must be positive, got " + std::to_string(seq_len));
  return token_count_ > 0 ? (token_count_ - 1) / seq_len : 0;
}

std::vector<int32_t> TokenReader::read(int64_t begin, int64_t end) const {
  if (begin < 0 || end < begin || end > token_count_)
    throw InputError(path_ + ": tokens [" + std::to_string(begin) + ", " + std::to_string(end) + ") outside [0, " +
                     std::to_string(token_count_) + ")");
  std::vector<int32_t> out(static_cast<size_t>(end - begin));
  h5::Dataspace file = tokens_.file_space();
  file.select_box({begin}, {end - begin});
  h5::Dataspace memory = h5::Dataspace::simple({end - begin});
  if (end == begin) memory.select_none();
  tokens_.read(H5T_NATIVE_INT32, memory, file, out.data(), h5::Transfer::independent);
  return out;
}

SequenceRows TokenReader::read_sequence_rows(int64_t index, int64_t seq_len, RowRange rows) const {
  const int64_t count = sequence_count(seq_len);
  if (index < 0 || index >= count)
    throw InputError(path_ + ": sequence " + std::to_string(index) + " of length " + std::to_string(seq_len) +
                     " does not exist (the " + std::to_string(token_count_) + " tokens hold " + std::to_string(count) + ")");
  return read_window_rows(index * seq_len, seq_len, rows);
}

SequenceRows TokenReader::read_window_rows(int64_t first, int64_t seq_len, RowRange rows) const {
  if (first < 0 || seq_len < 1 || first > token_count_ - 1 - seq_len)
    throw InputError(path_ + ": a window of " + std::to_string(seq_len) + " tokens (+1 target) at token " +
                     std::to_string(first) + " does not fit in its " + std::to_string(token_count_) + " tokens");
  if (rows.begin < 0 || rows.end < rows.begin || rows.end > seq_len)
    throw InternalError("read_window_rows: rows [" + std::to_string(rows.begin) + ", " + std::to_string(rows.end) +
                        ") outside a sequence of " + std::to_string(seq_len));
  SequenceRows out;
  if (rows.rows() == 0) return out;
  std::vector<int32_t> window = read(first + rows.begin, first + rows.end + 1);
  out.inputs.assign(window.begin(), window.end() - 1);
  out.targets.assign(window.begin() + 1, window.end());
  return out;
}

TokenIdentity TokenReader::identity() const {
  TokenIdentity identity;
  identity.tokens = token_count_;
  if (tokens_.has_attribute(kDigestAttribute))
    identity.digest = tokens_.read_bits64_attribute(kDigestAttribute);
  return identity;
}

std::string TokenIdentity::describe() const {
  return std::to_string(tokens) + " tokens, " + (digest ? "digest " + digest_text(*digest) : std::string("no digest"));
}

std::string token_identity_difference(const TokenIdentity& trained, const TokenIdentity& file) {
  const bool differs = trained.tokens != file.tokens || (trained.digest && file.digest && *trained.digest != *file.digest);
  return differs ? "it holds " + file.describe() + "; the checkpoint's run read " + trained.describe() : "";
}

bool TokenReader::offsets_checksummed() const { return file_.open_dataset("doc_offsets").checksummed(); }
bool TokenReader::offsets_present() const { return file_.has_dataset("doc_offsets"); }

std::vector<int64_t> TokenReader::document_offsets() const {
  const h5::Dataset offsets = file_.open_dataset("doc_offsets");
  std::vector<int64_t> out(static_cast<size_t>(offsets.shape()[0]));
  h5::Dataspace all = offsets.file_space();
  if (offsets.element_type() == h5::ElementType::u64) {
    // HDF5's conversion to int64 clamps a uint64 >= 2^63: such an offset is refused as stored.
    std::vector<uint64_t> stored(out.size());
    offsets.read(H5T_NATIVE_UINT64, all, all, stored.data(), h5::Transfer::independent);
    for (size_t i = 0; i < stored.size(); ++i) {
      if (stored[i] > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        throw InputError(path_ + ": /doc_offsets[" + std::to_string(i) + "] = " + std::to_string(stored[i]) +
                         ": offsets must rise from 0 to the token count " + std::to_string(token_count_));
      out[i] = static_cast<int64_t>(stored[i]);
    }
    return out;
  }
  offsets.read(H5T_NATIVE_INT64, all, all, out.data(), h5::Transfer::independent);
  return out;
}

TokenVerifyReport verify_tokens(const std::string& path) {
  TokenVerifyReport report;
  report.path = path;
  std::optional<TokenReader> opened;
  try {
    opened.emplace(path);
  } catch (const Error& e) {
    // A file that opens without /doc_offsets had its problem there (a damaged chunk, the dataset missing or
    // of the wrong type): said, and the tokens checked still (before: "not opened", nothing checked; a missing
    // /doc_offsets also got no DAMAGED). Else not there, not readable, not a token dataset: said as it is.
    report.problems.push_back(e.what());
    try {
      opened.emplace(path, MPI_COMM_NULL, TokenReader::Offsets::unread);
    } catch (const TokenMetadataError& contradiction) {  // said as damage, as others are (before: no DAMAGED)
      report.contradicts = true;
      if (contradiction.what() != report.problems.front()) report.problems.push_back(contradiction.what());
      return report;
    } catch (const Error&) {
      return report;
    }
    report.problems.back() += ": the documents are not known";
  }
  report.opened = true;
  const TokenReader& reader = *opened;
  report.tokens = reader.token_count();
  report.documents = reader.document_count();
  report.vocab = reader.vocab();
  std::optional<uint64_t> stored_digest;
  try {
    stored_digest = reader.identity().digest;
    report.digested = stored_digest.has_value();
  } catch (const InputError& e) {  // not one integer: a problem of this file, and the next is checked
    report.digested = true;
    report.problems.push_back(e.what());
  }
  uint64_t digest = 0;  // of the tokens read
  std::optional<size_t> outside_problem;  // the problem that names the first id outside the vocabulary
  const auto scan = [&](int64_t begin, const std::vector<int32_t>& ids) {
    digest += id_digest(ids.data(), static_cast<int64_t>(ids.size()), begin);
    for (size_t i = 0; i < ids.size(); ++i) {
      const int64_t id = ids[i];
      if ((id < 0 || id >= report.vocab) && report.outside++ == 0) {
        outside_problem = report.problems.size();
        report.problems.push_back(path + ": /tokens[" + std::to_string(begin + static_cast<int64_t>(i)) + "] = " +
                                  std::to_string(id) + " is outside [0, vocab=" + std::to_string(report.vocab) + ")");
      }
      report.smallest_id = report.ids_read == 0 ? id : std::min(report.smallest_id, id);
      report.largest_id = report.ids_read++ == 0 ? id : std::max(report.largest_id, id);
    }
  };
  // A block that does not read (a checksum mismatch, say) is read again in small pieces, so that the
  // damage is named by the tokens it covers (a damaged chunk's range) and the rest is still checked.
  constexpr int64_t kBlock = int64_t{1} << 22, kPiece = int64_t{1} << 16;
  std::vector<std::pair<int64_t, int64_t>> damaged;
  std::string first_damage;
  log::ByteProgress progress("data verify " + path, static_cast<uint64_t>(report.tokens));
  for (int64_t begin = 0; begin < report.tokens; begin += kBlock) {
    const int64_t end = std::min(report.tokens, begin + kBlock);
    try {
      scan(begin, reader.read(begin, end));
    } catch (const InputError&) {
      for (int64_t piece = begin; piece < end; piece += kPiece) {
        const int64_t piece_end = std::min(end, piece + kPiece);
        try {
          scan(piece, reader.read(piece, piece_end));
        } catch (const InputError& e) {
          if (first_damage.empty()) first_damage = e.what();
          if (!damaged.empty() && damaged.back().second == piece)
            damaged.back().second = piece_end;
          else
            damaged.emplace_back(piece, piece_end);
        }
      }
    }
    progress.update(static_cast<uint64_t>(end));
  }
  if (report.outside > 1)
    report.problems[*outside_problem] += " (and " + std::to_string(report.outside - 1) + " more ids outside it)";
  if (!damaged.empty()) {
    std::string ranges;
    for (size_t i = 0; i < damaged.size() && i < 8; ++i)
      ranges += (i ? ", " : "") + std::string("[") + std::to_string(damaged[i].first) + ", " + std::to_string(damaged[i].second) + ")";
    if (damaged.size() > 8) ranges += " and " + std::to_string(damaged.size() - 8) + " more range(s)";
    // A checksum mismatch said so; other failures in HDF5's words.
    const bool checksum = first_damage.find("Fletcher32") != std::string::npos;
    report.problems.push_back(path + ": /tokens " + ranges + " cannot be read (" +
                              (checksum ? std::string("Fletcher32 checksum mismatch: damaged on disk")
                                        : first_damage.rfind(path, 0) == 0 ? first_damage.substr(path.size() + 2) : first_damage) +
                              ")");
  }
  // The digest, where every token was read: a token a tool changed (rewriting its chunk's checksum too) or
  // a chunk zeroed with its checksum reads without an error.
  if (stored_digest && damaged.empty() && digest != *stored_digest)
    report.problems.push_back(path + ": /tokens' digest is " + digest_text(digest) + ", its digest attribute says " +
                              digest_text(*stored_digest) + ": tokens changed since the import (checksums rewritten, or a "
                              "chunk zeroed with its checksum)");
  // What no checksum covers is said (a file made by hand, or by an older import: /doc_offsets, the digest).
  if (!reader.checksummed()) report.unchecked.push_back("/tokens");
  if (reader.offsets_present() && !reader.offsets_checksummed()) report.unchecked.push_back("/doc_offsets");
  report.ok = report.problems.empty();
  return report;
}

std::string TokenVerifyReport::summary() const {
  // A file that did not open as a token dataset is said as it is, not "DAMAGED"; one whose attributes
  // contradict its datasets is damage.
  if (!opened && !contradicts) return problems.empty() ? path + ": not opened" : problems[0];
  // What no checksum or digest covers, said of a damaged file too (before: of a whole one only, though the
  // JSON had it for both).
  std::string uncovered;
  for (size_t i = 0; i < unchecked.size(); ++i) uncovered += (i ? ", " : "; no checksum on ") + unchecked[i];
  if (!digested && opened)
    uncovered += "; no digest on /tokens (imported by an older longctx, or made otherwise: `data import` again adds one)";
  if (!ok) {
    std::string text = path + ": DAMAGED:";
    for (const std::string& problem : problems)  // each names the file; said once
      text += " " + (problem.rfind(path + ": ", 0) == 0 ? problem.substr(path.size() + 2) : problem) + ";";
    text.pop_back();
    return uncovered.empty() ? text : text + " (" + uncovered.substr(2) + ")";
  }
  std::string text = path + ": ok (" + std::to_string(tokens) + " tokens in " + std::to_string(documents) +
                     " document(s), ids " +
                     (ids_read > 0 ? std::to_string(smallest_id) + ".." + std::to_string(largest_id) : std::string("none")) +
                     " of vocab " + std::to_string(vocab);
  return text + uncovered + ")";
}

}  // namespace longctx::io
