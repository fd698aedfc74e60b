// Token datasets for training (`longctx data import`, byte-level tokens).
//
// Layout (format "longctx-tokens", format_version 1):
//   /tokens       [T] every document's tokens, concatenated: uint8 (bytes of text), or for ids a tokenizer
//                 wrote the smallest of uint8, uint16 and int32 that holds the vocabulary; chunked (up
//                 to 1 MiB) with Fletcher32; attribute `digest` (int64 bits of a uint64, io/digest.hpp: the
//                 sum of element_digest(index, id) over the tokens), which `data verify` checks and a
//                 train checkpoint records to tell the file it trained on (none in files imported before)
//   /doc_offsets  int64 [D+1]: document d is tokens[doc_offsets[d], doc_offsets[d+1])
//   root attributes: format, format_version, vocab (256 for text), token_count, document_count
//
// Training sequences are consecutive windows of the token stream: sequence i has inputs
// tokens[i*L, i*L + L) and targets tokens[i*L + 1, i*L + L + 1), so there are (T - 1) / L of them.
// A rank holding rows [a, b) of a sequence reads only tokens[i*L + a, i*L + b + 1): nobody reads the
// whole corpus. Reads are independent MPI-IO (ranks may read different ranges; no partners needed).
#pragma once

#include <mpi.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "io/h5.hpp"
#include "io/row_io.hpp"

namespace longctx::io {

inline constexpr const char* kTokenFormat = "longctx-tokens";
inline constexpr int64_t kTokenFormatVersion = 1;

struct TokenImportStats {
  int64_t documents = 0;
  int64_t tokens = 0;
  int64_t vocab = 256;
  int64_t largest_id = -1;  // of import_token_ids
  std::string storage;      // /tokens' dtype
  uint64_t digest = 0;      // /tokens' digest attribute
  // Of import_token_ids: the smallest dtype that holds `vocab`, and its bytes (storage is wider where a pipe
  // among the inputs sized it before its ids were read).
  std::string narrowest_storage;
  int64_t narrowest_bytes = 0;
};

// What tells one token dataset from another without reading it: its token count and /tokens' digest
// attribute (none in a file imported by a longctx before 2026-12, or made by hand). A train checkpoint
// records it (root attributes data_tokens, data_digest) so that a resume or an eval can say whether
// data.path is the file the run trained on.
struct TokenIdentity {
  int64_t tokens = 0;
  std::optional<uint64_t> digest;
  // "12345 tokens, digest 0x0123456789abcdef" (or "..., no digest").
  std::string describe() const;
};

// Where `file` is known to differ from `trained` (another token count, or both digests and they differ):
// what differs, for a message ("it holds ...; the checkpoint's run read ..."). "" when they agree or
// cannot be told apart (a digest missing on either side and the same count).
std::string token_identity_difference(const TokenIdentity& trained, const TokenIdentity& file);

// Reads each file as bytes (one document per file) into `out_path`, streaming (bounded memory), through
// a temporary that is renamed on success. One process (serial). A file is a regular file, a pipe (a FIFO,
// `<(zcat a.gz)`) or "-", standard input. A missing or unreadable input -> InputError naming it.
// `stdin_settle_seconds`: where standard input is among the files ("-", /dev/stdin), how long to wait after
// it ended before the output is committed, for a signal that may follow: a launcher forwards standard input,
// and mpirun interrupted closes it first (its SIGTERM came 1 s later with Open MPI 4.1), which reads as its end.
TokenImportStats import_text_files(const std::vector<std::string>& files, const std::string& out_path,
                                   double stdin_settle_seconds = 0);

struct IdImportOptions {
  std::string dtype;  // of raw files: uint8|int8|uint16|int16|uint32|int32|uint64|int64; "": .npy files only
  int64_t vocab = 0;  // 0: the largest id + 1
};
// UsageError naming --ids-dtype or --vocab unless `options` are valid (import_token_ids checks them too).
void check_id_options(const IdImportOptions& options);

// Token ids a tokenizer wrote, one document per input: raw little-endian integers of options.dtype, or
// NumPy .npy files (their header gives the dtype; any shape in C order, read as its elements in order).
// Each id is checked against [0, vocab) (refused with its file and index: InputError); stored as the
// smallest of uint8, uint16 and int32 that holds the vocabulary. Streams and the temporary as above.
TokenImportStats import_token_ids(const std::vector<std::string>& files, const IdImportOptions& options,
                                  const std::string& out_path, double stdin_settle_seconds = 0);

struct SequenceRows {
  std::vector<int32_t> inputs;   // tokens[i*L + a, i*L + b)
  std::vector<int32_t> targets;  // tokens[i*L + a + 1, i*L + b + 1)
};

class TokenReader {
 public:
  // Offsets::unread: /doc_offsets is neither read nor checked, and document_count() is -1 (data verify of a
  // file whose /doc_offsets cannot be read still checks its tokens).
  enum class Offsets { checked, unread };
  // Validates format, version, dtype and rank (-> InputError naming file and dataset).
  explicit TokenReader(const std::string& path, MPI_Comm comm = MPI_COMM_NULL, Offsets offsets = Offsets::checked);

  int64_t token_count() const { return token_count_; }
  int64_t document_count() const { return document_count_; }
  int64_t vocab() const { return vocab_; }
  // How many whole training sequences of length seq_len the stream holds.
  int64_t sequence_count(int64_t seq_len) const;

  // Tokens [begin, end) as int32.
  std::vector<int32_t> read(int64_t begin, int64_t end) const;
  // Rows `rows` of training sequence `index` (see the header comment); index beyond sequence_count or
  // rows beyond seq_len -> InputError naming the file.
  SequenceRows read_sequence_rows(int64_t index, int64_t seq_len, RowRange rows) const;
  // Rows `rows` of the window of seq_len inputs that starts at token `first` (inputs tokens[first + a,
  // first + b), targets one on); a window past the stream or rows beyond seq_len -> InputError naming the file.
  SequenceRows read_window_rows(int64_t first, int64_t seq_len, RowRange rows) const;
  std::vector<int64_t> document_offsets() const;
  // /tokens as stored: its dtype ("uint8", "uint16", "int32"), bytes on disk, Fletcher32 or not.
  std::string token_dtype() const { return tokens_.dtype_name(); }
  int64_t storage_bytes() const { return tokens_.storage_bytes(); }
  bool checksummed() const { return tokens_.checksummed(); }
  bool offsets_checksummed() const;
  bool offsets_present() const;  // a /doc_offsets dataset exists (data verify of a file without one)
  int64_t format_version() const { return kTokenFormatVersion; }
  // The token count and /tokens' digest attribute (nullopt where it has none; one that is not an int64
  // -> InputError).
  TokenIdentity identity() const;

 private:
  void check_metadata() const;
  std::string path_;
  h5::File file_;
  h5::Dataset tokens_;
  int64_t token_count_ = 0;
  int64_t document_count_ = 0;
  bool offsets_read_ = true;  // Offsets::checked
  int64_t vocab_ = 256;
};

// A token dataset whose attributes contradict its datasets (token_count, document_count, vocab,
// /doc_offsets): damage, which `data verify` says as such.
class TokenMetadataError : public InputError {
 public:
  using InputError::InputError;
};

// `data verify`: every token read (Fletcher32 checked), each id checked against [0, vocab), and the tokens'
// digest against /tokens' digest attribute (which catches a token changed by a tool that rewrote its chunk
// with a valid checksum, and a chunk zeroed with its checksum).
struct TokenVerifyReport {
  std::string path;
  bool ok = false;
  bool opened = false;  // as a token dataset (not: missing, unreadable, another kind of file)
  bool contradicts = false;  // not opened: a token dataset whose attributes contradict it (TokenMetadataError)
  int64_t tokens = 0, documents = 0, vocab = 0;  // documents -1: /doc_offsets could not be read
  int64_t ids_read = 0;                     // of the tokens (a damaged chunk's are not)
  int64_t smallest_id = 0, largest_id = 0;  // of those read (0 when none; data verify --json: null)
  int64_t outside = 0;                      // ids outside [0, vocab)
  bool digested = false;                    // /tokens has a digest attribute (checked when every token read)
  std::vector<std::string> problems;
  std::vector<std::string> unchecked;  // datasets without a checksum ("/doc_offsets" of an older import)
  std::string summary() const;  // "PATH: ok (...)" or "PATH: DAMAGED: problem; ..."
};
// Problems are reported, not thrown (a file that does not open is one).
TokenVerifyReport verify_tokens(const std::string& path);

}  // namespace longctx::io
