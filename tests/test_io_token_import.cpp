// data import of token ids (.npy and raw little-endian), data verify, and the reader on each storage
// dtype. One process: the import is serial.
#include <mpi.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "io/digest.hpp"
#include "io/h5.hpp"
#include "io/token_dataset.hpp"
#include "io_test_util.hpp"

namespace longctx::io {
namespace {

namespace fs = std::filesystem;
using test::SharedTempDir;

// A .npy file as numpy.save writes it (format 1.0, header padded to 64 bytes, ending in a newline).
template <class T>
void write_npy(const std::string& path, const std::string& descr, const std::vector<T>& values, const std::string& shape = "",
               int version = 1, bool fortran = false) {
  std::string header = "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") + ", 'shape': (" +
                       (shape.empty() ? std::to_string(values.size()) + "," : shape) + "), }";
  const size_t prefix = 6 + 2 + (version == 1 ? 2 : 4);
  while ((prefix + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  out.write("\x93NUMPY", 6);
  const char v[2] = {static_cast<char>(version), 0};
  out.write(v, 2);
  const uint32_t length = static_cast<uint32_t>(header.size());
  out.write(reinterpret_cast<const char*>(&length), version == 1 ? 2 : 4);
  out << header;
  out.write(reinterpret_cast<const char*>(values.data()), static_cast<std::streamsize>(values.size() * sizeof(T)));
}

template <class T>
void write_raw(const std::string& path, const std::vector<T>& values) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(values.data()), static_cast<std::streamsize>(values.size() * sizeof(T)));
}

// A Megatron-LM indexed dataset, laid out as Megatron's _IndexWriter writes it: PREFIX.bin holds the
// sequences back to back; PREFIX.idx the header, int32 lengths, int64 byte offsets, int64 document indices.
void write_megatron(const std::string& prefix, const std::vector<std::vector<std::vector<uint16_t>>>& documents) {
  std::vector<int32_t> lengths;
  std::vector<int64_t> offsets, document_indices = {0};
  std::ofstream bin(prefix + ".bin", std::ios::binary);
  int64_t at = 0;
  for (const auto& document : documents) {
    for (const auto& sequence : document) {
      bin.write(reinterpret_cast<const char*>(sequence.data()), static_cast<std::streamsize>(sequence.size() * 2));
      lengths.push_back(static_cast<int32_t>(sequence.size()));
      offsets.push_back(at);
      at += static_cast<int64_t>(sequence.size() * 2);
    }
    document_indices.push_back(static_cast<int64_t>(lengths.size()));
  }
  std::ofstream idx(prefix + ".idx", std::ios::binary);
  const uint64_t version = 1, sequences = lengths.size(), indices = document_indices.size();
  const uint8_t uint16_code = 8;
  idx.write("MMIDIDX\0\0", 9);
  idx.write(reinterpret_cast<const char*>(&version), 8);
  idx.write(reinterpret_cast<const char*>(&uint16_code), 1);
  idx.write(reinterpret_cast<const char*>(&sequences), 8);
  idx.write(reinterpret_cast<const char*>(&indices), 8);
  idx.write(reinterpret_cast<const char*>(lengths.data()), static_cast<std::streamsize>(lengths.size() * 4));
  idx.write(reinterpret_cast<const char*>(offsets.data()), static_cast<std::streamsize>(offsets.size() * 8));
  idx.write(reinterpret_cast<const char*>(document_indices.data()), static_cast<std::streamsize>(document_indices.size() * 8));
}

std::vector<int32_t> all_tokens(const std::string& path) {
  const TokenReader reader(path);
  return reader.read(0, reader.token_count());
}

std::string dtype_of(const std::string& path) { return TokenReader(path).token_dtype(); }

// The error an import throws, "" when it succeeds (then the output must exist).
template <class Error>
std::string refusal(const std::vector<std::string>& files, const IdImportOptions& options, const std::string& out) {
  try {
    import_token_ids(files, options, out);
  } catch (const Error& e) {
    EXPECT_FALSE(fs::exists(out)) << out << " written by a refused import";
    EXPECT_FALSE(fs::exists(out + ".tmp"));
    return e.what();
  }
  ADD_FAILURE() << "import of " << files.front() << " accepted";
  return "";
}

TEST(TokenIds, NpyAndRawInputsAreStoredExactlyInTheSmallestDtype) {
  SharedTempDir dir;
  const std::vector<uint16_t> a = {1, 2, 50256, 7};
  const std::vector<int64_t> b = {0, 9, 3};
  const std::vector<int32_t> c = {70000, 5};
  write_npy(dir.file("a.npy"), "<u2", a);
  write_npy(dir.file("b.npy"), "<i8", b);
  write_raw(dir.file("c.bin"), c);
  write_npy(dir.file("matrix.npy"), "<u2", std::vector<uint16_t>{1, 2, 3, 4, 5, 6}, "2, 3");

  IdImportOptions options;
  options.vocab = 50304;  // GPT-2's, padded: uint16 storage
  TokenImportStats stats = import_token_ids({dir.file("a.npy"), dir.file("b.npy")}, options, dir.file("ab.h5"));
  EXPECT_EQ(stats.documents, 2);
  EXPECT_EQ(stats.tokens, 7);
  EXPECT_EQ(stats.largest_id, 50256);
  EXPECT_EQ(stats.vocab, 50304);
  EXPECT_EQ(stats.storage, "uint16");
  EXPECT_EQ(all_tokens(dir.file("ab.h5")), (std::vector<int32_t>{1, 2, 50256, 7, 0, 9, 3}));
  const TokenReader ab(dir.file("ab.h5"));
  EXPECT_EQ(ab.vocab(), 50304);
  EXPECT_EQ(ab.document_offsets(), (std::vector<int64_t>{0, 4, 7}));
  EXPECT_EQ(ab.token_dtype(), "uint16");

  // Without --vocab: the largest id + 1, stored as the inputs' dtypes need (int64 and int32 -> int32).
  options = {};
  options.dtype = "int32";  // for the raw file; the .npy says its own
  stats = import_token_ids({dir.file("c.bin"), dir.file("b.npy")}, options, dir.file("cb.h5"));
  EXPECT_EQ(stats.vocab, 70001);
  EXPECT_EQ(dtype_of(dir.file("cb.h5")), "int32");
  EXPECT_EQ(all_tokens(dir.file("cb.h5")), (std::vector<int32_t>{70000, 5, 0, 9, 3}));

  // Without --vocab the ids of regular files are read first: an int64 .npy (numpy's default) of GPT-2 ids
  // is stored in 2 bytes, not 4.
  write_npy(dir.file("gpt2.npy"), "<i8", std::vector<int64_t>{50256, 11, 0});
  options = {};
  stats = import_token_ids({dir.file("gpt2.npy")}, options, dir.file("gpt2.h5"));
  EXPECT_EQ(stats.vocab, 50257);
  EXPECT_EQ(stats.storage, "uint16");
  EXPECT_EQ(all_tokens(dir.file("gpt2.h5")), (std::vector<int32_t>{50256, 11, 0}));

  // A small vocabulary fits bytes; a 2-D array in C order is its rows one after another.
  options = {};
  options.vocab = 7;
  import_token_ids({dir.file("matrix.npy")}, options, dir.file("m.h5"));
  EXPECT_EQ(dtype_of(dir.file("m.h5")), "uint8");
  EXPECT_EQ(all_tokens(dir.file("m.h5")), (std::vector<int32_t>{1, 2, 3, 4, 5, 6}));

  // Header format 2.0 (4-byte length), and every integer dtype.
  write_npy(dir.file("v2.npy"), "<u4", std::vector<uint32_t>{4, 3}, "", 2);
  write_npy(dir.file("i1.npy"), "|i1", std::vector<int8_t>{1, 127});
  write_npy(dir.file("u8.npy"), "<u8", std::vector<uint64_t>{2, 40000});
  write_npy(dir.file("i2.npy"), "<i2", std::vector<int16_t>{300});
  write_npy(dir.file("u1.npy"), "|u1", std::vector<uint8_t>{255});
  options = {};
  stats = import_token_ids({dir.file("v2.npy"), dir.file("i1.npy"), dir.file("u8.npy"), dir.file("i2.npy"), dir.file("u1.npy")},
                           options, dir.file("all.h5"));
  EXPECT_EQ(stats.documents, 5);
  EXPECT_EQ(all_tokens(dir.file("all.h5")), (std::vector<int32_t>{4, 3, 1, 127, 2, 40000, 300, 255}));
  EXPECT_TRUE(verify_tokens(dir.file("all.h5")).ok);
}

TEST(TokenIds, BadInputsAreRefusedNamingFileAndIndex) {
  SharedTempDir dir;
  IdImportOptions options;
  options.vocab = 100;
  write_npy(dir.file("far.npy"), "<i4", std::vector<int32_t>{5, 99, 100, 3});
  EXPECT_NE(refusal<InputError>({dir.file("far.npy")}, options, dir.file("o1.h5")).find("far.npy: id 100 at index 2 (counting from 0) is outside [0, 100): --vocab is 100"),
            std::string::npos);
  write_npy(dir.file("negative.npy"), "<i2", std::vector<int16_t>{5, -1});
  EXPECT_NE(refusal<InputError>({dir.file("negative.npy")}, options, dir.file("o2.h5")).find("id -1 at index 1"), std::string::npos);
  write_npy(dir.file("float.npy"), "<f4", std::vector<float>{1.0f});
  EXPECT_NE(refusal<InputError>({dir.file("float.npy")}, options, dir.file("o3.h5")).find("token ids must be integers"), std::string::npos);
  write_npy(dir.file("big.npy"), ">i4", std::vector<int32_t>{1});
  EXPECT_NE(refusal<InputError>({dir.file("big.npy")}, options, dir.file("o4.h5")).find("big-endian"), std::string::npos);
  write_npy(dir.file("fortran.npy"), "<i4", std::vector<int32_t>{1, 2, 3, 4}, "2, 2", 1, true);
  EXPECT_NE(refusal<InputError>({dir.file("fortran.npy")}, options, dir.file("o5.h5")).find("Fortran order"), std::string::npos);
  // A .npy cut short: its header says more ids than follow.
  write_npy(dir.file("short.npy"), "<i4", std::vector<int32_t>{1, 2, 3});
  fs::resize_file(dir.file("short.npy"), fs::file_size(dir.file("short.npy")) - 4);
  EXPECT_NE(refusal<InputError>({dir.file("short.npy")}, options, dir.file("o6.h5")).find("header says 3 int32 ids"), std::string::npos);
  // Raw ids need their dtype, and a whole number of them.
  write_raw(dir.file("raw.bin"), std::vector<uint16_t>{1, 2, 3});
  EXPECT_NE(refusal<UsageError>({dir.file("raw.bin")}, options, dir.file("o7.h5")).find("raw token ids need --ids-dtype"), std::string::npos);
  options.dtype = "int32";
  EXPECT_NE(refusal<InputError>({dir.file("raw.bin")}, options, dir.file("o8.h5")).find("holds 6 bytes, not a whole number of int32 ids"),
            std::string::npos);
  // A .npy whose magic or length is damaged is not read as raw ids.
  write_npy(dir.file("magic.npy"), "<i4", std::vector<int32_t>{1, 2});
  {
    std::fstream file(dir.file("magic.npy"), std::ios::in | std::ios::out | std::ios::binary);
    file.put('\x92');
  }
  EXPECT_NE(refusal<InputError>({dir.file("magic.npy")}, options, dir.file("o10.h5")).find("first byte is not NumPy's"), std::string::npos);
  std::ofstream(dir.file("empty.npy"));
  EXPECT_NE(refusal<InputError>({dir.file("empty.npy")}, options, dir.file("o11.h5")).find("empty.npy: empty"), std::string::npos);
  write_npy(dir.file("long.npy"), "<i4", std::vector<int32_t>{1, 2});
  std::ofstream(dir.file("long.npy"), std::ios::app | std::ios::binary) << "xxxx";
  EXPECT_NE(refusal<InputError>({dir.file("long.npy")}, options, dir.file("o12.h5")).find("more than its shape holds"), std::string::npos);
  // Nothing at all to train on.
  write_raw(dir.file("empty.bin"), std::vector<int32_t>{});
  EXPECT_NE(refusal<InputError>({dir.file("empty.bin")}, options, dir.file("o9.h5")).find("hold no ids"), std::string::npos);
  // An id past what the storage holds, without --vocab, is refused (never cut to the storage's width).
  options = {};
  options.dtype = "uint16";
  write_raw(dir.file("ok16.bin"), std::vector<uint16_t>{65535});
  import_token_ids({dir.file("ok16.bin")}, options, dir.file("ok16.h5"));
  EXPECT_EQ(all_tokens(dir.file("ok16.h5")), (std::vector<int32_t>{65535}));
  EXPECT_EQ(dtype_of(dir.file("ok16.h5")), "uint16");
}

TEST(TokenIds, MegatronIndexedDatasetsKeepTheirDocuments) {
  SharedTempDir dir;
  // Document 0 is two sequences (sentences), document 1 is empty, document 2 one sequence.
  write_megatron(dir.file("corpus_text_document"), {{{5, 6, 7}, {8}}, {}, {{50256, 9}}});
  IdImportOptions options;
  options.vocab = 50304;
  const TokenImportStats stats = import_token_ids({dir.file("corpus_text_document.idx"), dir.file("corpus_text_document.idx")},
                                                  options, dir.file("m.h5"));
  EXPECT_EQ(stats.documents, 6);
  EXPECT_EQ(all_tokens(dir.file("m.h5")), (std::vector<int32_t>{5, 6, 7, 8, 50256, 9, 5, 6, 7, 8, 50256, 9}));
  EXPECT_EQ(TokenReader(dir.file("m.h5")).document_offsets(), (std::vector<int64_t>{0, 4, 4, 6, 10, 10, 12}));
  EXPECT_EQ(dtype_of(dir.file("m.h5")), "uint16");

  // An index of no documents adds none; its .bin read as raw ids with another dtype than it says is refused.
  write_megatron(dir.file("none"), {});
  write_npy(dir.file("one.npy"), "<u2", std::vector<uint16_t>{3});
  EXPECT_EQ(import_token_ids({dir.file("none.idx"), dir.file("one.npy")}, options, dir.file("none.h5")).documents, 1);
  IdImportOptions as_bytes = options;
  as_bytes.dtype = "uint8";
  EXPECT_NE(refusal<UsageError>({dir.file("corpus_text_document.bin")}, as_bytes, dir.file("bytes.h5"))
                .find("the Megatron index beside it says its ids are uint16, not --ids-dtype uint8"),
            std::string::npos);

  // An index whose sequences lie past its .bin (the .bin cut short) is refused before anything is written.
  fs::resize_file(dir.file("corpus_text_document.bin"), 6);
  EXPECT_NE(refusal<InputError>({dir.file("corpus_text_document.idx")}, options, dir.file("cut.h5"))
                .find("corpus_text_document.idx: sequence 1 (1 ids at byte 6) lies outside"),
            std::string::npos);
  // ... and so is one cut short itself.
  write_megatron(dir.file("short"), {{{1, 2}}});
  fs::resize_file(dir.file("short.idx"), fs::file_size(dir.file("short.idx")) - 8);
  EXPECT_NE(refusal<InputError>({dir.file("short.idx")}, options, dir.file("short.h5")).find("cut short, or damaged"),
            std::string::npos);
  // A negative length is named as such (before: "(-5 ids at byte 0) lies outside neg.bin", as if it were short).
  write_megatron(dir.file("neg"), {{{1, 2}}});
  {
    std::fstream idx(dir.file("neg.idx"), std::ios::binary | std::ios::in | std::ios::out);
    const int32_t negative = -5;
    idx.seekp(34);  // past the magic (9), version (8), dtype (1) and the two counts (16): the first length
    idx.write(reinterpret_cast<const char*>(&negative), 4);
  }
  EXPECT_NE(refusal<InputError>({dir.file("neg.idx")}, options, dir.file("neg.h5"))
                .find("neg.idx: sequence 0 has a negative length (-5 ids): a damaged index"),
            std::string::npos);
}

TEST(TokenIds, VerifyFindsIdsOutsideTheVocabulary) {
  SharedTempDir dir;
  write_npy(dir.file("a.npy"), "<i4", std::vector<int32_t>{1, 2, 3, 40});
  IdImportOptions options;
  options.vocab = 41;
  import_token_ids({dir.file("a.npy")}, options, dir.file("a.h5"));
  TokenVerifyReport report = verify_tokens(dir.file("a.h5"));
  EXPECT_TRUE(report.ok) << report.summary();
  EXPECT_EQ(report.smallest_id, 1);
  EXPECT_EQ(report.largest_id, 40);
  EXPECT_EQ(report.summary(), dir.file("a.h5") + ": ok (4 tokens in 1 document(s), ids 1..40 of vocab 41)");
  {  // the vocab attribute lowered by hand: two ids are now past it
    h5::File file = h5::File::open(dir.file("a.h5"), h5::Mode::read_write);
    file.write_attribute("vocab", int64_t{3});
  }
  report = verify_tokens(dir.file("a.h5"));
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.outside, 2);
  EXPECT_NE(report.summary().find(dir.file("a.h5") + ": DAMAGED: /tokens[2] = 3 is outside [0, vocab=3) (and 1 more"),
            std::string::npos)
      << report.summary();
  // Negative ids in an int32 file written by hand: the smallest is said as it is.
  write_npy(dir.file("wide.npy"), "<i4", std::vector<int32_t>{100000, 5, 7});
  import_token_ids({dir.file("wide.npy")}, IdImportOptions{}, dir.file("wide.h5"));
  {
    h5::File file = h5::File::open(dir.file("wide.h5"), h5::Mode::read_write);
    h5::Dataset tokens = file.open_dataset("tokens");
    h5::Dataspace space = tokens.file_space();
    space.select_box({1}, {2});
    const int32_t negative[2] = {-3, -9};
    tokens.write(H5T_NATIVE_INT32, h5::Dataspace::simple({2}), space, negative);
  }
  report = verify_tokens(dir.file("wide.h5"));
  EXPECT_EQ(report.smallest_id, -9);
  EXPECT_EQ(report.largest_id, 100000);
  EXPECT_EQ(report.outside, 2);
  EXPECT_TRUE(report.unchecked.empty());
  report = verify_tokens(dir.file("missing.h5"));
  EXPECT_FALSE(report.ok);
  EXPECT_FALSE(report.opened);
  EXPECT_EQ(report.summary().find("DAMAGED"), std::string::npos) << report.summary();
}

// /tokens' digest is the ids' (the sum of element_digest(index, id)), at any storage width and from text as
// from ids; data verify checks it, and token_identity_difference tells two files apart by it.
TEST(TokenIds, DigestNamesTheIdsWhateverTheirWidth) {
  SharedTempDir dir;
  const std::vector<int32_t> ids = {0, 7, 255, 1, 42, 42};
  uint64_t expected = 0;
  for (size_t i = 0; i < ids.size(); ++i) expected += element_digest(i, static_cast<uint32_t>(ids[i]));
  write_npy(dir.file("ids.npy"), "<i4", ids);
  std::vector<std::string> widths;
  for (const int64_t vocab : {256, 1000, 100000}) {
    IdImportOptions options;
    options.vocab = vocab;
    const std::string out = dir.file("ids" + std::to_string(vocab) + ".h5");
    EXPECT_EQ(import_token_ids({dir.file("ids.npy")}, options, out).digest, expected) << vocab;
    const TokenIdentity identity = TokenReader(out).identity();
    EXPECT_EQ(identity.tokens, 6);
    ASSERT_TRUE(identity.digest.has_value());
    EXPECT_EQ(*identity.digest, expected) << vocab;
    widths.push_back(dtype_of(out));
  }
  EXPECT_EQ(widths, (std::vector<std::string>{"uint8", "uint16", "int32"}));
  std::ofstream(dir.file("bytes.txt"), std::ios::binary).write("\x00\x07\xff\x01**", 6);
  EXPECT_EQ(import_text_files({dir.file("bytes.txt")}, dir.file("text.h5")).digest, expected);
  EXPECT_EQ(TokenReader(dir.file("text.h5")).identity().digest, expected);
  // The same ids in another order are another stream.
  write_npy(dir.file("swapped.npy"), "<i4", std::vector<int32_t>{0, 7, 255, 42, 1, 42});
  const TokenImportStats swapped = import_token_ids({dir.file("swapped.npy")}, IdImportOptions{}, dir.file("swapped.h5"));
  EXPECT_NE(swapped.digest, expected);

  const TokenIdentity a = TokenReader(dir.file("ids256.h5")).identity(), b = TokenReader(dir.file("swapped.h5")).identity();
  EXPECT_EQ(token_identity_difference(a, a), "");
  EXPECT_EQ(token_identity_difference(a, b), "it holds " + b.describe() + "; the checkpoint's run read " + a.describe());
  EXPECT_EQ(a.describe(), "6 tokens, digest " + digest_text(expected));
  TokenIdentity undigested = b;
  undigested.digest.reset();
  EXPECT_EQ(token_identity_difference(a, undigested), "") << "the same count, one digest unknown: cannot be told";
  EXPECT_EQ(undigested.describe(), "6 tokens, no digest");
  undigested.tokens = 7;
  EXPECT_NE(token_identity_difference(undigested, a), "") << "another count is another file";

  // A token changed by a writer that rewrites the chunk's checksum: only the digest finds it.
  EXPECT_TRUE(verify_tokens(dir.file("ids1000.h5")).ok);
  {
    h5::File file = h5::File::open(dir.file("ids1000.h5"), h5::Mode::read_write);
    h5::Dataset tokens = file.open_dataset("tokens");
    h5::Dataspace space = tokens.file_space();
    space.select_box({4}, {1});
    const uint16_t changed = 43;
    tokens.write(H5T_NATIVE_UINT16, h5::Dataspace::simple({1}), space, &changed);
  }
  TokenVerifyReport report = verify_tokens(dir.file("ids1000.h5"));
  EXPECT_FALSE(report.ok);
  EXPECT_TRUE(report.digested);
  ASSERT_EQ(report.problems.size(), 1u);
  EXPECT_NE(report.problems[0].find("/tokens' digest is 0x"), std::string::npos) << report.problems[0];
  EXPECT_NE(report.problems[0].find("its digest attribute says " + digest_text(expected)), std::string::npos)
      << report.problems[0];
  // A file without the attribute (imported before digests) verifies by its checksums, and says so.
  {
    h5::File file = h5::File::open(dir.file("ids256.h5"), h5::Mode::read_write);
    ASSERT_GE(H5Adelete(file.open_dataset("tokens").id(), kDigestAttribute), 0);
  }
  report = verify_tokens(dir.file("ids256.h5"));
  EXPECT_TRUE(report.ok) << report.summary();
  EXPECT_FALSE(report.digested);
  EXPECT_FALSE(TokenReader(dir.file("ids256.h5")).identity().digest.has_value());
  EXPECT_NE(report.summary().find("; no digest on /tokens"), std::string::npos) << report.summary();
}

// Writes attribute `name` of `object` as one value of HDF5 type `type` (what another tool may write).
void write_raw_attribute(const h5::Object& object, const char* name, hid_t type, const void* value) {
  if (H5Aexists(object.id(), name) > 0) {
    ASSERT_GE(H5Adelete(object.id(), name), 0);
  }
  const hid_t space = H5Screate(H5S_SCALAR);
  const hid_t attribute = H5Acreate2(object.id(), name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(attribute, 0);
  EXPECT_GE(H5Awrite(attribute, type, value), 0);
  H5Aclose(attribute);
  H5Sclose(space);
}

// A digest is 64 bits: longctx stores them as int64, h5py users may store them as uint64; either reads back
// as the same bits (HDF5's own conversion of a uint64 >= 2^63 to int64 would clamp it).
TEST(TokenIds, DigestAttributeReadsAsItsBitsSignedOrUnsigned) {
  SharedTempDir dir;
  std::ofstream(dir.file("bytes.txt"), std::ios::binary).write("digest me", 9);
  const uint64_t expected = import_text_files({dir.file("bytes.txt")}, dir.file("text.h5")).digest;
  {
    h5::File file = h5::File::open(dir.file("text.h5"), h5::Mode::read_write);
    write_raw_attribute(file.open_dataset("tokens"), kDigestAttribute, H5T_NATIVE_UINT64, &expected);
    const uint64_t high = 0x8000000000000001ull;
    const int64_t minus_two = -2;
    const uint32_t narrow = 7;
    write_raw_attribute(file, "high", H5T_NATIVE_UINT64, &high);
    write_raw_attribute(file, "minus_two", H5T_NATIVE_INT64, &minus_two);
    write_raw_attribute(file, "narrow", H5T_NATIVE_UINT32, &narrow);
    EXPECT_EQ(file.read_bits64_attribute("high"), high);
    EXPECT_EQ(file.read_bits64_attribute("minus_two"), 0xfffffffffffffffeull);
    EXPECT_EQ(file.read_bits64_attribute("narrow"), 7u);
    EXPECT_THROW(file.read_bits64_attribute("format"), InputError);  // a string
    // As an int64, a uint64 that fits reads as itself, a larger one is refused as stored (HDF5 would say
    // 9223372036854775807 for it).
    const uint64_t fits = 12345;
    write_raw_attribute(file, "fits", H5T_NATIVE_UINT64, &fits);
    EXPECT_EQ(file.read_int64_attribute("fits"), 12345);
    EXPECT_EQ(file.read_int64_attribute("narrow"), 7);
    EXPECT_EQ(file.read_int64_attribute("minus_two"), -2);
    try {
      file.read_int64_attribute("high");
      ADD_FAILURE() << "a uint64 of 2^63 + 1 read as an int64";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("attribute high is 9223372036854775809, more than int64 holds"),
                std::string::npos)
          << e.what();
    }
  }
  EXPECT_EQ(TokenReader(dir.file("text.h5")).identity().digest, expected);
  const TokenVerifyReport report = verify_tokens(dir.file("text.h5"));
  EXPECT_TRUE(report.ok) << report.summary();
  EXPECT_TRUE(report.digested);
}

}  // namespace
}  // namespace longctx::io
