// Token datasets for training (`longctx data import`, byte-level tokens).
//
// Layout (format "longctx-tokens", format_version 1):
//   /tokens       uint8 [T] (int32 also accepted by the reader): every document's bytes, concatenated;
//                 chunked (1 MiB) with Fletcher32
//   /doc_offsets  int64 [D+1]: document d is tokens[doc_offsets[d], doc_offsets[d+1])
//   root attributes: format, format_version, vocab (256), token_count, document_count
//
// Training sequences are consecutive windows of the token stream: sequence i has inputs
// tokens[i*L, i*L + L) and targets tokens[i*L + 1, i*L + L + 1), so there are (T - 1) / L of them.
// A rank holding rows [a, b) of a sequence reads only tokens[i*L + a, i*L + b + 1): nobody reads the
// whole corpus. Reads are independent MPI-IO (ranks may read different ranges; no partners needed).
#pragma once

#include <mpi.h>

#include <cstdint>
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
};

// Reads each file as bytes (one document per file) into `out_path`, streaming (bounded memory), through
// a temporary that is renamed on success. One process (serial). A file is a regular file, a pipe (a FIFO,
// `<(zcat a.gz)`) or "-", standard input. A missing or unreadable input -> InputError naming it.
TokenImportStats import_text_files(const std::vector<std::string>& files, const std::string& out_path);

struct SequenceRows {
  std::vector<int32_t> inputs;   // tokens[i*L + a, i*L + b)
  std::vector<int32_t> targets;  // tokens[i*L + a + 1, i*L + b + 1)
};

class TokenReader {
 public:
  // Validates format, version, dtype and rank (-> InputError naming file and dataset).
  explicit TokenReader(const std::string& path, MPI_Comm comm = MPI_COMM_NULL);

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

 private:
  void check_metadata() const;
  std::string path_;
  h5::File file_;
  h5::Dataset tokens_;
  int64_t token_count_ = 0;
  int64_t document_count_ = 0;
  int64_t vocab_ = 256;
};

}  // namespace longctx::io
