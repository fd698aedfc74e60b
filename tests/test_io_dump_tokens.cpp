// Activation dumps (global [N,H,D] in sequence order whatever P is) and token datasets (each rank reads
// only its rows of a sequence), under mpirun at 1-4 ranks.
#include <mpi.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "io/activation_dump.hpp"
#include "io/h5.hpp"
#include "io/token_dataset.hpp"
#include "io_test_util.hpp"

namespace longctx::io {
namespace {

namespace fs = std::filesystem;
using test::make_block;
using test::on_rank0;
using test::SharedTempDir;
using test::tensors_equal;
using test::world_rank;
using test::world_size;

TEST(ActivationDump, GlobalTensorsInSequenceOrder) {
  SharedTempDir dir;
  const std::string path = dir.file("acts.h5");
  const Shape global = {10, 2, 3};
  const RowRange rows = even_rows(global[0], world_rank(), world_size());
  const std::vector<std::string> names = {"q", "k", "v", "o"};
  {
    ActivationDump dump(path, MPI_COMM_WORLD);
    for (int64_t step : {0, 5})
      for (int64_t layer : {1, 3})
        for (size_t i = 0; i < names.size(); ++i)
          dump.write(step, layer, names[i], global, rows, make_block(step * 100 + layer * 10 + i, global, 0, rows));
    EXPECT_FALSE(fs::exists(path));  // appears only when closed
    dump.close();
  }
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_TRUE(fs::exists(path));
  on_rank0([&] {
    h5::File file = h5::File::open(path);
    EXPECT_EQ(file.read_string_attribute("format"), kActivationFormat);
    for (int64_t step : {0, 5})
      for (int64_t layer : {1, 3})
        for (size_t i = 0; i < names.size(); ++i) {
          const std::string name = ActivationDump::dataset_path(step, layer, names[i]);
          EXPECT_TRUE(tensors_equal(make_block(step * 100 + layer * 10 + i, global, 0, {0, 10}),
                                    read_rows(file, name, 0, {0, 10})))
              << name;
        }
    EXPECT_EQ(ActivationDump::dataset_path(5, 3, "o"), "/step_5/layer_3/o");
    EXPECT_FALSE(file.has("step_1"));
  });
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST(TokenDataset, EachRankReadsOnlyItsRows) {
  SharedTempDir dir;
  const std::string a = dir.file("a.txt"), b = dir.file("b.txt"), empty = dir.file("empty.txt");
  const std::string text_a = "Hello, long context!\n";
  const std::string text_b = std::string("bytes \xff\x00\x01 too", 14);
  const std::string corpus = dir.file("corpus.h5");
  on_rank0([&] {
    std::ofstream(a, std::ios::binary) << text_a;
    std::ofstream(b, std::ios::binary).write(text_b.data(), static_cast<std::streamsize>(text_b.size()));
    std::ofstream(empty, std::ios::binary);
    const TokenImportStats stats = import_text_files({a, empty, b}, corpus);
    EXPECT_EQ(stats.documents, 3);
    EXPECT_EQ(stats.tokens, static_cast<int64_t>(text_a.size() + text_b.size()));
    EXPECT_FALSE(fs::exists(corpus + ".tmp"));
    // A missing input is refused and leaves no output behind.
    try {
      import_text_files({a, dir.file("missing.txt")}, dir.file("bad.h5"));
      ADD_FAILURE() << "missing input accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("missing.txt: no such file"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(dir.file("bad.h5")));
  });
  MPI_Barrier(MPI_COMM_WORLD);

  const std::string all = text_a + text_b;
  const TokenReader reader(corpus, MPI_COMM_WORLD);
  EXPECT_EQ(reader.token_count(), static_cast<int64_t>(all.size()));
  EXPECT_EQ(reader.document_count(), 3);
  EXPECT_EQ(reader.vocab(), 256);
  EXPECT_EQ(reader.document_offsets(),
            (std::vector<int64_t>{0, static_cast<int64_t>(text_a.size()), static_cast<int64_t>(text_a.size()),
                                  static_cast<int64_t>(all.size())}));
  const int64_t seq_len = 8;
  EXPECT_EQ(reader.sequence_count(seq_len), static_cast<int64_t>((all.size() - 1) / seq_len));
  for (int64_t index = 0; index < reader.sequence_count(seq_len); ++index) {
    const RowRange rows = even_rows(seq_len, world_rank(), world_size());
    const SequenceRows got = reader.read_sequence_rows(index, seq_len, rows);
    ASSERT_EQ(static_cast<int64_t>(got.inputs.size()), rows.rows());
    for (int64_t r = 0; r < rows.rows(); ++r) {
      const size_t at = static_cast<size_t>(index * seq_len + rows.begin + r);
      EXPECT_EQ(got.inputs[static_cast<size_t>(r)], static_cast<uint8_t>(all[at])) << "sequence " << index << " row " << r;
      EXPECT_EQ(got.targets[static_cast<size_t>(r)], static_cast<uint8_t>(all[at + 1]));
    }
  }
  try {
    reader.read_sequence_rows(reader.sequence_count(seq_len), seq_len, {0, 1});
    ADD_FAILURE() << "sequence beyond the end accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("corpus.h5: sequence 4 of length 8 does not exist"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace longctx::io
