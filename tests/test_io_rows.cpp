// Row-sharded reads and writes under mpirun at 1-4 ranks: the file written by P ranks equals the
// whole tensor (read back by one rank, serially), every rank reads back exactly its rows, ranks with
// zero rows take part, float16 inputs convert exactly, and bad files are refused with InputError.
#include <mpi.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>

#include <gtest/gtest.h>

#include "io/atomic_output.hpp"
#include "io/attend_file.hpp"
#include "io/durable.hpp"
#include "io/h5.hpp"
#include "io/row_io.hpp"
#include "io_test_util.hpp"

namespace longctx::io {
namespace {

using test::make_block;
using test::on_rank0;
using test::SharedTempDir;
using test::tensors_equal;
using test::world_rank;
using test::world_size;

struct Layout {
  Shape global;
  size_t seq_axis;
};

// N from 0 to more than P, so with N < P some ranks own zero rows.
const std::vector<Layout> kLayouts = {
    {{0, 2, 3}, 0}, {{1, 2, 3}, 0}, {{2, 3, 4}, 0}, {{7, 3, 5}, 0}, {{13, 2, 8}, 0},
    {{2, 5, 3, 4}, 1}, {{3, 1, 2, 2}, 1},  // [B,N,H,D]
    {{9, 4}, 0}, {{2, 6, 3}, 1},           // lse: [N,H] and [B,N,H]
};

TEST(RowIo, EvenRowsTileTheSequence) {
  for (int64_t total : {0, 1, 3, 4, 10, 1000000007}) {
    for (int size = 1; size <= 5; ++size) {
      int64_t next = 0;
      for (int rank = 0; rank < size; ++rank) {
        const RowRange rows = even_rows(total, rank, size);
        EXPECT_EQ(rows.begin, next);
        EXPECT_GE(rows.rows(), total / size);
        EXPECT_LE(rows.rows(), total / size + 1);
        next = rows.end;
      }
      EXPECT_EQ(next, total);
    }
  }
}

TEST(RowIo, ShardedWriteEqualsWholeAndShardedReadEqualsRows) {
  SharedTempDir dir;
  const int rank = world_rank();
  const int size = world_size();
  const std::string path = dir.file("rows.h5");
  {
    h5::File file = h5::File::create(path, MPI_COMM_WORLD);
    for (size_t i = 0; i < kLayouts.size(); ++i) {
      const Layout& layout = kLayouts[i];
      const RowRange rows = even_rows(layout.global[layout.seq_axis], rank, size);
      const Tensor block = make_block(i, layout.global, layout.seq_axis, rows);
      h5::DatasetOptions options;
      if (i % 2 == 1) {  // every other dataset chunked with checksums, as checkpoints are
        options.chunk = row_chunk(layout.global, layout.seq_axis, 4, 16);
        options.fletcher32 = true;
      }
      write_rows(file, "t" + std::to_string(i), layout.global, layout.seq_axis, rows, block, options);
    }
    file.close();
  }
  MPI_Barrier(MPI_COMM_WORLD);
  on_rank0([&] {  // one reader, serial driver: the whole tensor
    h5::File file = h5::File::open(path);
    for (size_t i = 0; i < kLayouts.size(); ++i) {
      const Layout& layout = kLayouts[i];
      const RowRange all{0, layout.global[layout.seq_axis]};
      EXPECT_TRUE(tensors_equal(make_block(i, layout.global, layout.seq_axis, all),
                                read_rows(file, "t" + std::to_string(i), layout.seq_axis, all)))
          << "dataset t" << i << " written by " << size << " ranks";
    }
  });
  {  // every rank its own rows, collectively; and a different split (reversed) to catch offset bugs
    h5::File file = h5::File::open(path, h5::Mode::read, MPI_COMM_WORLD);
    for (size_t i = 0; i < kLayouts.size(); ++i) {
      const Layout& layout = kLayouts[i];
      const int64_t n = layout.global[layout.seq_axis];
      for (const RowRange rows : {even_rows(n, rank, size), even_rows(n, size - 1 - rank, size)}) {
        EXPECT_TRUE(tensors_equal(make_block(i, layout.global, layout.seq_axis, rows),
                                  read_rows(file, "t" + std::to_string(i), layout.seq_axis, rows)))
            << "dataset t" << i << " rows [" << rows.begin << ", " << rows.end << ") on rank " << rank;
      }
    }
  }
}

TEST(RowIo, Float16InputIsConvertedToFloat32) {
  SharedTempDir dir;
  const std::string path = dir.file("half.h5");
  const Shape global = {5, 2, 3};
  on_rank0([&] {
    h5::File file = h5::File::create(path);
    h5::Dataset dataset = file.create_dataset("q", h5::ElementType::f16, global);
    const Tensor whole = make_block(3, global, 0, {0, 5});
    h5::Dataspace space = dataset.file_space();
    dataset.write(H5T_NATIVE_FLOAT, space, space, whole.data());
  });
  MPI_Barrier(MPI_COMM_WORLD);
  h5::File file = h5::File::open(path, h5::Mode::read, MPI_COMM_WORLD);
  EXPECT_EQ(file.open_dataset("q").element_type(), h5::ElementType::f16);
  const RowRange rows = even_rows(5, world_rank(), world_size());
  EXPECT_TRUE(tensors_equal(make_block(3, global, 0, rows), read_rows(file, "q", 0, rows)));
}

// Writes a serial file on rank 0 with the given datasets (name, type, shape); everyone waits.
void write_fixture(const std::string& path,
                   const std::vector<std::tuple<std::string, h5::ElementType, Shape>>& datasets) {
  on_rank0([&] {
    h5::File file = h5::File::create(path);
    for (const auto& [name, type, shape] : datasets) file.create_dataset(name, type, shape);
  });
  MPI_Barrier(MPI_COMM_WORLD);
}

template <class F>
std::string input_error_of(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("WRONG EXCEPTION TYPE: ") + e.what();
  }
  return "NO EXCEPTION";
}

TEST(RowIo, BadInputsAreInputErrorsNamingFileAndDataset) {
  SharedTempDir dir;
  using h5::ElementType;
  const std::string good = dir.file("good.h5");
  const std::string ints = dir.file("ints.h5");
  const std::string ranks = dir.file("rank2.h5");
  const std::string shapes = dir.file("shapes.h5");
  const std::string missing = dir.file("missing_v.h5");
  write_fixture(good, {{"q", ElementType::f32, {4, 2, 3}}, {"k", ElementType::f16, {4, 2, 3}},
                       {"v", ElementType::f32, {4, 2, 3}}});
  write_fixture(ints, {{"q", ElementType::f32, {4, 2, 3}}, {"k", ElementType::i32, {4, 2, 3}},
                       {"v", ElementType::f32, {4, 2, 3}}});
  write_fixture(ranks, {{"q", ElementType::f32, {4, 6}}, {"k", ElementType::f32, {4, 6}},
                        {"v", ElementType::f32, {4, 6}}});
  write_fixture(shapes, {{"q", ElementType::f32, {4, 2, 3}}, {"k", ElementType::f32, {4, 2, 3}},
                         {"v", ElementType::f32, {4, 2, 5}}});
  write_fixture(missing, {{"q", ElementType::f32, {4, 2, 3}}, {"k", ElementType::f32, {4, 2, 3}}});
  if (world_rank() == 0) {
    std::ofstream(dir.file("text.h5")) << "not an hdf5 file\n";
  }
  MPI_Barrier(MPI_COMM_WORLD);

  const auto check = [&](const std::string& path, bool backward) {
    return input_error_of([&] { check_attend_input(h5::File::open(path, h5::Mode::read, MPI_COMM_WORLD), backward); });
  };
  const AttendInput input = check_attend_input(h5::File::open(good, h5::Mode::read, MPI_COMM_WORLD), false);
  EXPECT_EQ(input.seq_len, 4);
  EXPECT_EQ(input.heads, 2);
  EXPECT_EQ(input.head_dim, 3);
  EXPECT_EQ(input.lse_shape(), (Shape{4, 2}));

  std::string message = check(ints, false);
  EXPECT_NE(message.find("ints.h5: /k: dtype int32"), std::string::npos) << message;
  message = check(ranks, false);
  EXPECT_NE(message.find("rank2.h5: /q: has rank 2"), std::string::npos) << message;
  message = check(shapes, false);
  EXPECT_NE(message.find("/v: shape [4,2,5] differs from q's [4,2,3]"), std::string::npos) << message;
  message = check(missing, false);
  EXPECT_NE(message.find("missing_v.h5: no dataset 'v'"), std::string::npos) << message;
  EXPECT_NE(message.find("; its top level holds k, q"), std::string::npos) << message;  // what is there instead
  message = check(good, true);
  EXPECT_NE(message.find("no dataset 'do' (needs q, k, v and do for --backward at the top level); its top level holds "
                         "k, q, v"),
            std::string::npos)
      << message;
  message = check(dir.file("nothing.h5"), false);
  EXPECT_NE(message.find("nothing.h5: no such file"), std::string::npos) << message;
  message = check(dir.file("text.h5"), false);
  EXPECT_NE(message.find("text.h5: cannot open as an HDF5 file"), std::string::npos) << message;
  message = input_error_of([&] {
    read_rows(h5::File::open(ints, h5::Mode::read, MPI_COMM_WORLD), "k", 0, {0, 1});
  });
  EXPECT_NE(message.find("ints.h5: /k: dtype int32, expected float32, float16 or bfloat16"), std::string::npos) << message;
  message = input_error_of([&] {
    read_rows(h5::File::open(good, h5::Mode::read, MPI_COMM_WORLD), "q", 0, {2, 5});
  });
  EXPECT_NE(message.find("rows [2, 5) outside the 4 rows"), std::string::npos) << message;
}

TEST(AtomicOutput, CommitPublishesAndAbortLeavesNothing) {
  SharedTempDir dir;
  const int rank = world_rank();
  const int size = world_size();
  const std::string path = dir.file("out.h5");
  const Shape global = {6, 2, 2};
  const RowRange rows = even_rows(6, rank, size);
  {
    AtomicOutput output(path, MPI_COMM_WORLD);
    write_rows(output.file(), "o", global, 0, rows, make_block(1, global, 0, rows));
    EXPECT_FALSE(std::filesystem::exists(path));
    output.commit();
  }
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_TRUE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  const auto size_before = std::filesystem::file_size(path);
  MPI_Barrier(MPI_COMM_WORLD);

  // A run that fails half way leaves the existing output as it was, and no .tmp.
  try {
    AtomicOutput output(path, MPI_COMM_WORLD);
    write_rows(output.file(), "o", global, 0, rows, make_block(2, global, 0, rows));
    write_rows(output.file(), "extra", {100, 100}, 0, even_rows(100, rank, size),
               Tensor(block_shape({100, 100}, 0, even_rows(100, rank, size))));
    throw InputError("simulated failure on every rank");
  } catch (const InputError&) {
  }
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  EXPECT_EQ(std::filesystem::file_size(path), size_before);
  h5::File file = h5::File::open(path, h5::Mode::read, MPI_COMM_WORLD);
  EXPECT_TRUE(tensors_equal(make_block(1, global, 0, rows), read_rows(file, "o", 0, rows)));
}

// The rename itself fails (the target is a directory): every rank throws, and no .tmp is left behind.
TEST(AtomicOutput, FailedRenameLeavesNoTemporaryFile) {
  SharedTempDir dir;
  const std::string path = dir.file("taken");
  if (world_rank() == 0) std::filesystem::create_directory(path);
  MPI_Barrier(MPI_COMM_WORLD);
  const Shape global = {4, 1, 1};
  const RowRange rows = even_rows(4, world_rank(), world_size());
  bool threw = false;
  try {
    AtomicOutput output(path, MPI_COMM_WORLD);
    write_rows(output.file(), "o", global, 0, rows, make_block(1, global, 0, rows));
    output.commit();
  } catch (const InternalError& e) {
    threw = true;
    EXPECT_NE(std::string(e.what()).find("cannot rename"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(threw);
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  EXPECT_TRUE(std::filesystem::is_directory(path));
}

// A commit with a dataset of the file still open is refused: HDF5 would close the file (clearing its
// "being written" mark) only after the rename (before: data import's /tokens was open at its commit).
TEST(AtomicOutput, CommitWithAnObjectOpenIsRefused) {
  SharedTempDir dir;
  const std::string path = dir.file("out.h5");
  std::string refused;
  try {  // (the output is destroyed as the failure unwinds, as where a command fails)
    AtomicOutput output(path, MPI_COMM_WORLD);
    h5::Dataset open = output.file().create_dataset("x", h5::ElementType::i64, {4});
    output.commit();
  } catch (const InternalError& e) {
    refused = e.what();
  }
  EXPECT_NE(refused.find("committed with 1 of its objects open"), std::string::npos) << refused;
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  MPI_Barrier(MPI_COMM_WORLD);  // (every rank has looked before the next output claims the name)
  // Closed first, it commits.
  {
    AtomicOutput output(path, MPI_COMM_WORLD);
    h5::Dataset closed = output.file().create_dataset("x", h5::ElementType::i64, {4});
    closed.close_object();
    output.commit();
  }
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_TRUE(std::filesystem::exists(path));
}

TEST(Durable, FailedTextWriteLeavesNoTemporaryFile) {
  if (world_rank() != 0) return;
  SharedTempDir dir(MPI_COMM_SELF);
  const std::string path = dir.file("report.json");
  std::filesystem::create_directory(path);
  EXPECT_THROW(write_text_durably(path, "{}"), InternalError);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(Durable, OutputPathsAreCheckedAndCompared) {
  if (world_rank() != 0) return;
  SharedTempDir dir(MPI_COMM_SELF);
  const std::string file = dir.file("a.h5");
  { std::ofstream(file) << "x"; }
  const auto usage_message = [](const std::string& option, const std::string& path) {
    try {
      check_output_path(option, path);
    } catch (const UsageError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(usage_message("output", file), "");  // an existing file may be replaced
  EXPECT_EQ(usage_message("output", dir.file("new.h5")), "");
  EXPECT_NE(usage_message("output", "").find("--output: empty path"), std::string::npos);
  EXPECT_NE(usage_message("output", dir.file("")).find("names a directory"), std::string::npos);
  EXPECT_NE(usage_message("report", dir.file("missing/r.json")).find("does not exist"), std::string::npos);
  std::filesystem::create_directory(dir.file("d"));
  EXPECT_NE(usage_message("output", dir.file("d")).find("is a directory"), std::string::npos);

  const std::string relative = std::filesystem::relative(file).string();
  EXPECT_TRUE(same_file(file, relative));
  EXPECT_TRUE(same_file(file, dir.file("d/../a.h5")));
  std::filesystem::create_hard_link(file, dir.file("hard.h5"));
  EXPECT_TRUE(same_file(file, dir.file("hard.h5")));
  EXPECT_TRUE(same_file(dir.file("new.h5"), dir.file("d/../new.h5")));  // neither exists yet
  EXPECT_FALSE(same_file(file, file + ".tmp"));
  EXPECT_FALSE(same_file(file, dir.file("d")));
}

// `<out>.tmp` is claimed, never written through: a link there (symbolic or hard), a directory or a FIFO is
// refused with UsageError and left as it was, and so is everything it leads to. Before, HDF5 and
// write_text_durably opened the name with O_CREAT | O_TRUNC: a symbolic link's target was overwritten.
TEST(Durable, TemporaryFilesAreNeverWrittenThrough) {
  if (world_rank() != 0) return;
  SharedTempDir dir(MPI_COMM_SELF);
  const std::string precious = dir.file("precious.txt");
  { std::ofstream(precious) << "precious"; }
  const auto text_of = [](const std::string& path) {
    std::ostringstream text;
    text << std::ifstream(path).rdbuf();
    return text.str();
  };
  const auto refused = [](const std::function<void()>& work) {
    try {
      work();
    } catch (const UsageError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  const std::string out = dir.file("o.h5"), temporary = out + ".tmp";
  const auto clear = [&] { std::filesystem::remove(temporary); };
  for (const std::string kind : {"symlink", "dangling", "hardlink", "directory", "fifo"}) {
    SCOPED_TRACE(kind);
    clear();
    if (kind == "symlink") std::filesystem::create_symlink(precious, temporary);
    if (kind == "dangling") std::filesystem::create_symlink(dir.file("made.txt"), temporary);
    if (kind == "hardlink") std::filesystem::create_hard_link(precious, temporary);
    if (kind == "directory") std::filesystem::create_directory(temporary);
    if (kind == "fifo") {
      ASSERT_EQ(::mkfifo(temporary.c_str(), 0644), 0);
    }
    const std::string says = refused([&] { check_output_path("output", out); });
    EXPECT_NE(says.find("--output '" + out + "': its temporary file '" + temporary + "' "), std::string::npos) << says;
    EXPECT_NE(says.find("remove '" + temporary + "'"), std::string::npos) << says;
    EXPECT_NE(refused([&] { TemporaryFile::claim(temporary); }), "");
    EXPECT_NE(refused([&] { write_text_durably(out, "{}"); }), "");
    EXPECT_NE(refused([&] { AtomicOutput output(out); }), "");
    EXPECT_EQ(text_of(precious), "precious");
    EXPECT_FALSE(std::filesystem::exists(dir.file("made.txt")));
    EXPECT_FALSE(std::filesystem::exists(out));
  }
  clear();
}

// A claimed temporary file is the claimer's until it lets go: a second writer is refused (before: it
// truncated the first one's file); what a crashed writer left is taken over by the next one.
TEST(Durable, HeldTemporaryFileIsRefusedLeftOverIsTakenOver) {
  if (world_rank() != 0) return;
  SharedTempDir dir(MPI_COMM_SELF);
  const std::string temporary = dir.file("o.h5.tmp");
  TemporaryFile first = TemporaryFile::claim(temporary);
  EXPECT_FALSE(first.left_over());
  ASSERT_EQ(::write(first.fd(), "half", 4), 4);
  EXPECT_TRUE(temporary_in_use(temporary));
  try {
    TemporaryFile::claim(temporary);
    ADD_FAILURE() << "a held temporary file was claimed twice";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("is being written by another running process"), std::string::npos) << e.what();
  }
  EXPECT_THROW(check_output_path("output", dir.file("o.h5")), UsageError);
  EXPECT_THROW(write_text_durably(dir.file("o.h5"), "{}"), UsageError);
  EXPECT_EQ(std::filesystem::file_size(temporary), 4u);  // untouched by the refused writers
  struct stat crashed {};
  ASSERT_EQ(::fstat(first.fd(), &crashed), 0);
  first.close();  // as a crash would
  EXPECT_FALSE(temporary_in_use(temporary));
  EXPECT_NO_THROW(check_output_path("output", dir.file("o.h5")));
  TemporaryFile next = TemporaryFile::claim(temporary);
  EXPECT_TRUE(next.left_over());
  EXPECT_EQ(std::filesystem::file_size(temporary), 0u);
  // Another file, not the crashed run's reused: a rank of that run still alive, which registered the
  // crashed file's identity for removal, leaves the new one alone.
  struct stat claimed {};
  ASSERT_EQ(::fstat(next.fd(), &claimed), 0);
  EXPECT_NE(claimed.st_ino, crashed.st_ino);
  unlink_if_same_file(temporary.c_str(), crashed.st_dev, crashed.st_ino);
  EXPECT_TRUE(std::filesystem::exists(temporary));
  EXPECT_TRUE(temporary_in_use(temporary));
}

// Every rank throws rank 0's UsageError when the temporary file is held (not an InternalError, nor a hang).
TEST(AtomicOutput, HeldTemporaryFileIsRefusedOnEveryRank) {
  SharedTempDir dir;
  const std::string path = dir.file("out.h5");
  TemporaryFile held;
  on_rank0([&] { held = TemporaryFile::claim(path + ".tmp"); });
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_THROW(AtomicOutput output(path, MPI_COMM_WORLD), UsageError);
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_TRUE(std::filesystem::exists(path + ".tmp"));  // the holder's file is not removed
  EXPECT_FALSE(std::filesystem::exists(path));
}

// attend --report prepares its text on rank 0 through run_on_rank0: a temporary file taken by another
// writer after the up-front check is a usage error (exit 2) on every rank, as for the output itself.
// publish_on_rank0 makes every failure an InternalError, which is what the report's step used before.
TEST(PreparedText, HeldTemporaryFileIsAUsageErrorOnEveryRank) {
  SharedTempDir dir;
  const std::string path = dir.file("report.json");
  TemporaryFile held;
  on_rank0([&] { held = TemporaryFile::claim(path + ".tmp"); });
  MPI_Barrier(MPI_COMM_WORLD);
  std::optional<PreparedText> report;
  const auto prepare = [&] { report.emplace(path, "{}\n"); };
  EXPECT_THROW(run_on_rank0(MPI_COMM_WORLD, "writing " + path + ".tmp", prepare), UsageError);
  EXPECT_THROW(publish_on_rank0(MPI_COMM_WORLD, "writing " + path + ".tmp", prepare), InternalError);
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_FALSE(report.has_value());
  EXPECT_FALSE(std::filesystem::exists(path));
  held.close();
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_NO_THROW(run_on_rank0(MPI_COMM_WORLD, "writing " + path + ".tmp", prepare));
  EXPECT_EQ(report.has_value(), world_rank() == 0);
  on_rank0([&] {
    if (report) report->publish();
  });
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_TRUE(std::filesystem::exists(path));
}

}  // namespace
}  // namespace longctx::io
