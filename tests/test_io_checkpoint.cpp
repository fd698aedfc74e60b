// Checkpoints under mpirun at 1-4 ranks: round trips, resharding 2 -> 3 -> 1, retention, the commit
// protocol under simulated crashes, stray temporaries, and damaged files (truncated, a flipped byte
// inside a checksummed chunk or in an object header, a chunk zeroed or rewritten with its checksum, a tensor
// with unstored chunks, another format version, non-finite values), each refused or reported with the file
// and the dataset named.
#include <mpi.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>

#include <gtest/gtest.h>

#include "io/checkpoint.hpp"
#include "io/digest.hpp"
#include "io/h5.hpp"
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

// What the test trainer saves: sharded tensors (seeded by their index), one replicated tensor, a global
// blob and per-rank blobs whose length and content depend on the writing rank.
struct Content {
  std::vector<std::pair<std::string, Shape>> sharded = {
      {"model/embed", {11, 5}}, {"model/layer0/wq", {6, 4, 3}}, {"model/tiny", {2, 3}}, {"optimizer/m/embed", {11, 5}}};
  Shape replicated = {3, 2};
};

std::vector<uint8_t> rank_state(int rank) { return std::vector<uint8_t>(static_cast<size_t>(rank + 1), static_cast<uint8_t>(10 + rank)); }
const std::vector<uint8_t> kPosition = {1, 2, 3, 4, 5, 6, 7};

CheckpointMeta meta_for(int64_t step) {
  CheckpointMeta meta;
  meta.step = step;
  meta.seq_len = 4096;
  meta.tokens_seen = step * 4096;
  meta.config = "[model]\nlayers=2\n";
  return meta;
}

// Writes the test content at `step` on `comm` (every rank of it calls this).
std::string write_content(const std::string& dir, int64_t step, MPI_Comm comm, int64_t keep = 0,
                          CrashPoint crash = CrashPoint::none, int64_t previous_step = -1) {
  const int rank = h5::comm_rank(comm);
  const int size = h5::comm_size(comm);
  const Content content;
  CheckpointMeta meta = meta_for(step);
  meta.previous_step = previous_step;
  CheckpointWriter writer(dir, meta, comm);
  for (size_t i = 0; i < content.sharded.size(); ++i) {
    const auto& [name, shape] = content.sharded[i];
    const RowRange rows = even_rows(shape[0], rank, size);
    writer.write_tensor(name, shape, rows, make_block(i, shape, 0, rows));
  }
  writer.write_replicated("model/norm", make_block(99, content.replicated, 0, {0, content.replicated[0]}));
  writer.write_attribute("learning_rate", 0.25);
  writer.write_global_blob("data_position", kPosition);
  writer.write_rank_blob("rng", rank_state(rank));
  return writer.commit(keep, crash);
}

// Checks every tensor of the test content as read by this rank of `comm` (its even rows and the whole).
void expect_content(const std::string& path, MPI_Comm comm) {
  const int rank = h5::comm_rank(comm);
  const int size = h5::comm_size(comm);
  const Content content;
  CheckpointReader reader(path, comm);
  EXPECT_EQ(reader.seq_len(), 4096);
  EXPECT_EQ(reader.config(), "[model]\nlayers=2\n");
  EXPECT_EQ(reader.tensor_names(), (std::vector<std::string>{"model/embed", "model/layer0/wq", "model/norm",
                                                             "model/tiny", "optimizer/m/embed"}));
  for (size_t i = 0; i < content.sharded.size(); ++i) {
    const auto& [name, shape] = content.sharded[i];
    const RowRange rows = even_rows(shape[0], rank, size);
    EXPECT_TRUE(tensors_equal(make_block(i, shape, 0, rows), reader.read_rows(name, rows)))
        << name << " rows [" << rows.begin << ", " << rows.end << ") on rank " << rank << " of " << size;
    EXPECT_TRUE(tensors_equal(make_block(i, shape, 0, {0, shape[0]}), reader.read_whole(name))) << name;
  }
  EXPECT_TRUE(tensors_equal(make_block(99, content.replicated, 0, {0, content.replicated[0]}),
                            reader.read_whole("model/norm")));
  EXPECT_EQ(reader.read_global_blob("data_position"), kPosition);
  EXPECT_EQ(reader.file().read_double_attribute("learning_rate"), 0.25);
  const RankBlob blob = reader.read_rank_blob("rng", rank, size);
  const int64_t old_size = reader.world_size();
  const int expected_source = old_size == size ? rank : static_cast<int>(rank * old_size / size);
  EXPECT_EQ(blob.exact, old_size == size);
  EXPECT_EQ(blob.source_rank, expected_source);
  EXPECT_EQ(blob.bytes, rank_state(expected_source));
}

TEST(Checkpoint, RoundTripOnTheSameRanks) {
  SharedTempDir dir;
  const std::string path = write_content(dir.path(), 7, MPI_COMM_WORLD, 2);
  EXPECT_EQ(path, dir.file("step_00000007.h5"));
  EXPECT_EQ(find_latest_checkpoint(dir.path()), path);
  expect_content(path, MPI_COMM_WORLD);
  CheckpointReader reader(path, MPI_COMM_WORLD);
  EXPECT_EQ(reader.step(), 7);
  EXPECT_EQ(reader.tokens_seen(), 7 * 4096);
  EXPECT_EQ(reader.world_size(), world_size());
  EXPECT_EQ(reader.format_version(), kCheckpointFormatVersion);
  on_rank0([&] {
    const VerifyReport report = verify_checkpoint(path);
    EXPECT_TRUE(report.ok) << report.summary();
    EXPECT_EQ(report.datasets.size(), 8u);  // config, 5 tensors, 2 blobs
    for (const DatasetInfo& info : report.datasets) {
      if (info.path.rfind("/model", 0) == 0 || info.path.rfind("/optimizer", 0) == 0) {
        EXPECT_TRUE(info.checksummed) << info.path;
      }
    }
    const CheckpointSummary summary = inspect_checkpoint(path);
    EXPECT_EQ(summary.step, 7);
    EXPECT_EQ(summary.config, "[model]\nlayers=2\n");
  });
}

// 2 ranks write, 3 ranks read (rows and per-rank state resharded) and write again, 1 rank reads.
TEST(Checkpoint, ReshardsTwoToThreeToOne) {
  if (world_size() < 3) GTEST_SKIP() << "needs 3 ranks";
  SharedTempDir dir;
  const int rank = world_rank();
  MPI_Comm two = MPI_COMM_NULL, three = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, rank < 2 ? 0 : MPI_UNDEFINED, rank, &two);
  MPI_Comm_split(MPI_COMM_WORLD, rank < 3 ? 0 : MPI_UNDEFINED, rank, &three);

  if (two != MPI_COMM_NULL) write_content(dir.path(), 1, two);
  MPI_Barrier(MPI_COMM_WORLD);
  if (three != MPI_COMM_NULL) {
    const std::string latest = find_latest_checkpoint(dir.path()).value_or("");
    EXPECT_EQ(latest, dir.file("step_00000001.h5"));
    expect_content(latest, three);  // checks rows and the rank-state rule floor(r * 2 / 3)
    // Re-save what was loaded, now as 3 ranks.
    const Content content;
    CheckpointReader reader(latest, three);
    CheckpointWriter writer(dir.path(), meta_for(2), three);
    for (const auto& [name, shape] : content.sharded) {
      const RowRange rows = even_rows(shape[0], rank, 3);
      writer.write_tensor(name, shape, rows, reader.read_rows(name, rows));
    }
    writer.write_replicated("model/norm", reader.read_whole("model/norm"));
    writer.write_attribute("learning_rate", 0.25);
    writer.write_global_blob("data_position", reader.read_global_blob("data_position"));
    writer.write_rank_blob("rng", rank_state(rank));
    writer.commit(0);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  on_rank0([&] {
    const std::string latest = find_latest_checkpoint(dir.path()).value_or("");
    EXPECT_EQ(latest, dir.file("step_00000002.h5"));
    EXPECT_EQ(CheckpointReader(latest).world_size(), 3);
    expect_content(latest, MPI_COMM_NULL);  // one process, serial driver
    expect_content(latest, MPI_COMM_SELF);  // one process, MPI-IO driver
  });
  if (two != MPI_COMM_NULL) MPI_Comm_free(&two);
  if (three != MPI_COMM_NULL) MPI_Comm_free(&three);
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST(Checkpoint, KeepsTheNewestFiles) {
  SharedTempDir dir;
  for (int64_t step = 1; step <= 5; ++step) write_content(dir.path(), step * 10, MPI_COMM_WORLD, 2);
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_EQ(list_checkpoints(dir.path()),
            (std::vector<std::string>{dir.file("step_00000040.h5"), dir.file("step_00000050.h5")}));
  EXPECT_EQ(find_latest_checkpoint(dir.path()), dir.file("step_00000050.h5"));
  MPI_Barrier(MPI_COMM_WORLD);
  // Going back in steps (a resume from an older checkpoint): the new one is latest and is never deleted.
  write_content(dir.path(), 20, MPI_COMM_WORLD, 1);
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_EQ(find_latest_checkpoint(dir.path()), dir.file("step_00000020.h5"));
  EXPECT_EQ(list_checkpoints(dir.path()), (std::vector<std::string>{dir.file("step_00000020.h5")}));
}

// `latest` rolled back by hand (to step 2, with 4, 6, 8 there from a run that went further): the next commit
// (step 3, keep 2) keeps the rollback point and deletes the abandoned steps, the farthest first. Before, it
// deleted by step number alone: step 2 went, step 8 stayed, and without `latest` a resume took step 8.
TEST(Checkpoint, RetentionAfterARollbackDeletesTheAbandonedStepsFirst) {
  SharedTempDir dir;
  for (int64_t step : {2, 4, 6, 8}) write_content(dir.path(), step, MPI_COMM_WORLD, 0);
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) std::ofstream(dir.file("latest")) << "step_00000002.h5\n";
  MPI_Barrier(MPI_COMM_WORLD);
  write_content(dir.path(), 3, MPI_COMM_WORLD, 4);  // keep 4: one file too many, the farthest goes
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_EQ(list_checkpoints(dir.path()), (std::vector<std::string>{dir.file("step_00000002.h5"), dir.file("step_00000003.h5"),
                                                                   dir.file("step_00000004.h5"), dir.file("step_00000006.h5")}));
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) std::ofstream(dir.file("latest")) << "step_00000003.h5\n";
  MPI_Barrier(MPI_COMM_WORLD);
  // Short of room before the next commit (keep 4: down to 3 files): the abandoned step 6 goes, not step 2.
  const std::vector<std::string> removed = make_room_for_checkpoint(dir.path(), 4, MPI_COMM_WORLD, 0);
  on_rank0([&] {
    EXPECT_EQ(removed, (std::vector<std::string>{dir.file("step_00000006.h5")}));
  });
  MPI_Barrier(MPI_COMM_WORLD);
  write_content(dir.path(), 3, MPI_COMM_WORLD, 2);  // the same step again, keep 2: 4 goes before 2
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_EQ(list_checkpoints(dir.path()),
            (std::vector<std::string>{dir.file("step_00000002.h5"), dir.file("step_00000003.h5")}));
  EXPECT_EQ(find_latest_checkpoint(dir.path()), dir.file("step_00000003.h5"));
}

// Retention follows the previous_step links from `latest`. A run went from 40 to 50 (saving 42, 49, 50) and
// `latest` was rolled back by hand to 40; the rerun saves at 45 (linked to 40). Its files past the links go
// first, also 42, below its step, then the oldest of its history. Before, "abandoned" meant past the step
// of `latest`: 42 was kept, and the rollback point 40 deleted. Both halves fail on that rule.
TEST(Checkpoint, RetentionFollowsTheRunsHistoryAfterARollback) {
  SharedTempDir dir;
  const std::vector<std::pair<int64_t, int64_t>> saved = {{28, 21}, {35, 28}, {40, 35}, {42, 40}, {49, 42}, {50, 49}};
  for (const auto& [step, previous] : saved) write_content(dir.path(), step, MPI_COMM_WORLD, 0, CrashPoint::none, previous);
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_EQ(CheckpointReader(dir.file("step_00000042.h5")).previous_step(), 40);
  write_content(dir.path(), 45, MPI_COMM_WORLD, 0, CrashPoint::none, 40);  // latest: 45
  MPI_Barrier(MPI_COMM_WORLD);
  // Short of room before the next save (keep 4: down to 3 files): 50, 49 and 42 (the abandoned files, the
  // farthest first), then 28, the oldest of the history. (By step alone: 50, 49, 28, 35.)
  const std::vector<std::string> removed = make_room_for_checkpoint(dir.path(), 4, MPI_COMM_WORLD, 0);
  on_rank0([&] {
    EXPECT_EQ(removed, (std::vector<std::string>{dir.file("step_00000050.h5"), dir.file("step_00000049.h5"),
                                                 dir.file("step_00000042.h5"), dir.file("step_00000028.h5")}));
  });
  MPI_Barrier(MPI_COMM_WORLD);
  // The abandoned files again, `latest` at 45, and the save of 50 (linked to 45) with keep 3: 49 and 42 go,
  // then 35. (By step alone: 35, 40, 42, leaving the abandoned 49.)
  for (const auto& [step, previous] : saved)
    if (step > 40) write_content(dir.path(), step, MPI_COMM_WORLD, 0, CrashPoint::none, previous);
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) std::ofstream(dir.file("latest")) << "step_00000045.h5\n";
  MPI_Barrier(MPI_COMM_WORLD);
  write_content(dir.path(), 50, MPI_COMM_WORLD, 3, CrashPoint::none, 45);
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_EQ(list_checkpoints(dir.path()), (std::vector<std::string>{dir.file("step_00000040.h5"), dir.file("step_00000045.h5"),
                                                                   dir.file("step_00000050.h5")}));
  EXPECT_EQ(CheckpointReader(dir.file("step_00000050.h5")).previous_step(), 45);
}

// checkpoint.keep counts and deletes only the run's own files: a step_*.h5 that is not a checkpoint, or
// a copy whose name states another step, stays untouched (before: the oldest names were deleted first,
// whatever they held). verify and resume refuse a file whose name and step attribute disagree.
TEST(Checkpoint, RetentionLeavesForeignAndRenamedFilesAlone) {
  SharedTempDir dir;
  write_content(dir.path(), 10, MPI_COMM_WORLD, 2);
  MPI_Barrier(MPI_COMM_WORLD);
  on_rank0([&] {
    std::ofstream(dir.file("step_00000005.h5")) << "someone else's notes\n";
    fs::copy_file(dir.file("step_00000010.h5"), dir.file("step_00000099.h5"));
  });
  MPI_Barrier(MPI_COMM_WORLD);
  for (int64_t step : {20, 30, 40}) write_content(dir.path(), step, MPI_COMM_WORLD, 2);
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_EQ(list_own_checkpoints(dir.path()),
            (std::vector<std::string>{dir.file("step_00000030.h5"), dir.file("step_00000040.h5")}));
  EXPECT_TRUE(fs::exists(dir.file("step_00000005.h5")));
  EXPECT_TRUE(fs::exists(dir.file("step_00000099.h5")));
  EXPECT_EQ(step_in_file_name(dir.file("step_00000099.h5")), 99);
  EXPECT_EQ(step_in_file_name(dir.file("copy.h5")), std::nullopt);
  on_rank0([&] {
    const VerifyReport renamed = verify_checkpoint(dir.file("step_00000099.h5"));
    EXPECT_FALSE(renamed.ok);
    EXPECT_NE(renamed.summary().find("the file name says step 99 but its step attribute is 10"), std::string::npos)
        << renamed.summary();
    EXPECT_TRUE(verify_checkpoint(dir.file("step_00000040.h5")).ok);
    EXPECT_THROW(check_step_matches_file_name(CheckpointReader(dir.file("step_00000099.h5"))), InputError);
  });
  MPI_Barrier(MPI_COMM_WORLD);
}

// Short of room (here: told so), a save with checkpoint.keep = 3 first removes a killed save's
// temporary, then the oldest checkpoints down to keep - 1 = 2, never the one `latest` names; with room,
// or keep < 2, it removes nothing.
TEST(Checkpoint, MakeRoomDeletesWhatTheCommitWouldOnly) {
  SharedTempDir dir;
  for (int64_t step : {10, 20, 30}) write_content(dir.path(), step, MPI_COMM_WORLD, 0);
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) std::ofstream(dir.file("step_00000040.h5.tmp")) << "a killed save";
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_TRUE(make_room_for_checkpoint(dir.path(), 3, MPI_COMM_WORLD, uint64_t{1} << 40).empty());  // room
  // Room is the newest checkpoint's size plus 1/16 for growth: exactly that is enough.
  const uint64_t newest = fs::file_size(dir.file("step_00000030.h5")), needed = newest + newest / 16;
  EXPECT_TRUE(make_room_for_checkpoint(dir.path(), 3, MPI_COMM_WORLD, needed).empty());
  EXPECT_TRUE(fs::exists(dir.file("step_00000040.h5.tmp"))) << "with room, the stray stays";
  MPI_Barrier(MPI_COMM_WORLD);  // every rank looked before rank 0 (below, short of room) removes it
  EXPECT_TRUE(make_room_for_checkpoint(dir.path(), 1, MPI_COMM_WORLD, 0).empty());  // keep 1: never
  EXPECT_TRUE(make_room_for_checkpoint(dir.path(), 4, MPI_COMM_WORLD, 0).empty());  // fewer than keep
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_FALSE(fs::exists(dir.file("step_00000040.h5.tmp"))) << "short of room, the stray goes first";
  EXPECT_EQ(list_own_checkpoints(dir.path()).size(), 3u);
  MPI_Barrier(MPI_COMM_WORLD);
  // One byte short of the margin (the size of the newest alone is not enough).
  const std::vector<std::string> removed = make_room_for_checkpoint(dir.path(), 3, MPI_COMM_WORLD, needed - 1);
  on_rank0([&] {
    EXPECT_EQ(removed, (std::vector<std::string>{dir.file("step_00000010.h5")}));
  });
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_EQ(list_own_checkpoints(dir.path()),
            (std::vector<std::string>{dir.file("step_00000020.h5"), dir.file("step_00000030.h5")}));
  // `latest` naming the oldest (a resume went back): that one stays, the next oldest goes.
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) std::ofstream(dir.file("latest")) << "step_00000020.h5\n";
  MPI_Barrier(MPI_COMM_WORLD);
  make_room_for_checkpoint(dir.path(), 2, MPI_COMM_WORLD, 0);
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_EQ(list_own_checkpoints(dir.path()), (std::vector<std::string>{dir.file("step_00000020.h5")}));
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::string text;
  std::getline(in, text);
  return text;
}

// A crash at each point of the protocol leaves the old checkpoint as latest and loadable, and the next
// commit cleans up after it.
TEST(Checkpoint, CrashAtAnyPointKeepsTheOldCheckpoint) {
  SharedTempDir dir;
  const std::string old_path = write_content(dir.path(), 1, MPI_COMM_WORLD, 3);
  MPI_Barrier(MPI_COMM_WORLD);

  // Crash after the temporary is complete, before the rename.
  write_content(dir.path(), 2, MPI_COMM_WORLD, 3, CrashPoint::after_temporary_closed);
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_TRUE(fs::exists(dir.file("step_00000002.h5.tmp")));
  EXPECT_EQ(find_latest_checkpoint(dir.path()), old_path);
  EXPECT_EQ(list_checkpoints(dir.path()), std::vector<std::string>{old_path});
  expect_content(old_path, MPI_COMM_WORLD);

  // Crash after the rename, before `latest` moves: latest still names the old one; both are intact.
  write_content(dir.path(), 3, MPI_COMM_WORLD, 3, CrashPoint::after_rename);
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_EQ(read_text(dir.file("latest")), "step_00000001.h5");
  EXPECT_EQ(find_latest_checkpoint(dir.path()), old_path);
  on_rank0([&] {
    EXPECT_TRUE(verify_checkpoint(dir.file("step_00000003.h5")).ok);
    EXPECT_TRUE(verify_checkpoint(old_path).ok);
  });

  // Crash while writing latest.tmp: the half-made latest.tmp is ignored.
  write_content(dir.path(), 4, MPI_COMM_WORLD, 3, CrashPoint::after_latest_temporary);
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_TRUE(fs::exists(dir.file("latest.tmp")));
  EXPECT_EQ(find_latest_checkpoint(dir.path()), old_path);

  // A failure half way through writing (an exception on every rank): the temporary is removed.
  try {
    CheckpointWriter writer(dir.path(), meta_for(5), MPI_COMM_WORLD);
    writer.write_tensor("model/embed", {4, 2}, even_rows(4, world_rank(), world_size()),
                        Tensor(block_shape({4, 2}, 0, even_rows(4, world_rank(), world_size()))));
    throw InternalError("simulated failure");
  } catch (const InternalError&) {
  }
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_FALSE(fs::exists(dir.file("step_00000005.h5.tmp")));
  EXPECT_EQ(find_latest_checkpoint(dir.path()), old_path);
  MPI_Barrier(MPI_COMM_WORLD);

  // The next good commit publishes and removes the strays of the crashed attempts.
  const std::string next = write_content(dir.path(), 6, MPI_COMM_WORLD, 3);
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_EQ(find_latest_checkpoint(dir.path()), next);
  EXPECT_FALSE(fs::exists(dir.file("step_00000002.h5.tmp")));
  EXPECT_FALSE(fs::exists(dir.file("latest.tmp")));
  EXPECT_EQ(list_checkpoints(dir.path()),
            (std::vector<std::string>{dir.file("step_00000003.h5"), dir.file("step_00000004.h5"), next}));
}

// Every rank knows the temporary file of a save in progress: the rank that aborts the job (or that fails,
// or gets the signal) removes it, though rank 0 holds it (before: a job ended mid-save left it).
TEST(Checkpoint, AnyRankRemovesTheTemporaryFileOfASaveCutShort) {
  SharedTempDir dir;
  const int aborting = world_size() - 1;
  {
    CheckpointWriter writer(dir.path(), meta_for(5), MPI_COMM_WORLD);
    MPI_Barrier(MPI_COMM_WORLD);
    EXPECT_TRUE(fs::exists(writer.temporary_path()));
    MPI_Barrier(MPI_COMM_WORLD);
    if (world_rank() == aborting) remove_claims_before_abort();
    MPI_Barrier(MPI_COMM_WORLD);
    EXPECT_FALSE(fs::exists(writer.temporary_path()));
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

template <class F>
std::string input_error_of(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    EXPECT_EQ(e.code(), ExitCode::bad_input);
    return e.what();
  } catch (const std::exception& e) {
    return std::string("WRONG EXCEPTION TYPE: ") + e.what();
  }
  return "NO EXCEPTION";
}

TEST(Checkpoint, StrayTemporaryIsNeverLatestAndIsCleanedSafely) {
  SharedTempDir dir;
  const std::string good = write_content(dir.path(), 3, MPI_COMM_WORLD);
  MPI_Barrier(MPI_COMM_WORLD);
  on_rank0([&] {
    // A complete-looking temporary of a newer step, as a crash just before the rename leaves it.
    fs::copy_file(good, dir.file("step_00000009.h5.tmp"));
    std::ofstream(dir.file("step_00000010.h5.tmp")) << "half a file";
    EXPECT_EQ(find_latest_checkpoint(dir.path()), good);
    fs::remove(dir.file("latest"));  // even without `latest`, a .tmp is never chosen
    EXPECT_EQ(find_latest_checkpoint(dir.path()), good);
    EXPECT_EQ(list_checkpoints(dir.path()), std::vector<std::string>{good});
    {  // one that a running writer holds (another job on this directory) is not stray
      const TemporaryFile held = TemporaryFile::claim(dir.file("step_00000011.h5.tmp"));
      EXPECT_EQ(remove_stray_temporaries(dir.path()), 2);
      EXPECT_TRUE(fs::exists(dir.file("step_00000011.h5.tmp")));
    }
    EXPECT_EQ(remove_stray_temporaries(dir.path()), 1);
    EXPECT_TRUE(fs::exists(good));
    EXPECT_EQ(list_checkpoints(dir.path()), std::vector<std::string>{good});
    std::ofstream(dir.file("latest")) << "step_00000042.h5\n";
    try {
      find_latest_checkpoint(dir.path());
      ADD_FAILURE() << "latest naming a missing file was accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("names step_00000042.h5, which does not exist"), std::string::npos) << e.what();
    }
    // A dangling symbolic link is refused as well, not taken for "no latest" (the newest file by name).
    fs::remove(dir.file("latest"));
    fs::create_symlink("nowhere", dir.file("latest"));
    EXPECT_NE(input_error_of([&] { find_latest_checkpoint(dir.path()); })
                  .find("latest: is a symbolic link to 'nowhere', which is not there"),
              std::string::npos);
    // One to a text file naming the checkpoint is followed.
    std::ofstream(dir.file("named")) << fs::path(good).filename().string() << "\n";
    fs::remove(dir.file("latest"));
    fs::create_symlink("named", dir.file("latest"));
    EXPECT_EQ(find_latest_checkpoint(dir.path()), good);
  });
  MPI_Barrier(MPI_COMM_WORLD);
}

// File offset of the first chunk of `dataset` in `path`.
haddr_t first_chunk_address(const std::string& path, const std::string& dataset) {
  h5::File file = h5::File::open(path);
  h5::Dataset data = file.open_dataset(dataset);
  hsize_t offset[8] = {0};
  unsigned mask = 0;
  haddr_t address = HADDR_UNDEF;
  hsize_t bytes = 0;
  const h5::Dataspace space = data.file_space();
  EXPECT_GE(H5Dget_chunk_info(data.id(), space.id(), 0, offset, &mask, &address, &bytes), 0);
  EXPECT_GT(bytes, 8u);
  return address;
}

void flip_byte(const std::string& path, haddr_t address, char mask) {
  std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
  io.seekg(static_cast<std::streamoff>(address));
  char byte = 0;
  io.read(&byte, 1);
  byte = static_cast<char>(byte ^ mask);
  io.seekp(static_cast<std::streamoff>(address));
  io.write(&byte, 1);
}

// Damaged copies of a good checkpoint, examined by one process (ASSERTs may return from here).
void check_damaged_copies(const SharedTempDir& dir, const std::string& good) {
  // Truncated: half the file is gone.
  const std::string truncated = dir.file("truncated.h5");
  fs::copy_file(good, truncated);
  fs::resize_file(truncated, fs::file_size(truncated) / 2);
  std::string message = input_error_of([&] { CheckpointReader reader(truncated); });
  EXPECT_NE(message.find("truncated.h5"), std::string::npos) << message;
  VerifyReport report = verify_checkpoint(truncated);
  EXPECT_FALSE(report.ok);
  EXPECT_NE(report.summary().find("truncated.h5"), std::string::npos) << report.summary();

  // One flipped byte inside a checksummed chunk of model/layer0/wq.
  const std::string flipped = dir.file("flipped.h5");
  fs::copy_file(good, flipped);
  const haddr_t address = first_chunk_address(flipped, "model/layer0/wq");
  ASSERT_NE(address, HADDR_UNDEF);
  flip_byte(flipped, address + 5, 0x10);
  report = verify_checkpoint(flipped);
  EXPECT_FALSE(report.ok);
  ASSERT_EQ(report.problems.size(), 1u) << report.summary();
  EXPECT_NE(report.problems[0].find("flipped.h5: /model/layer0/wq"), std::string::npos) << report.summary();
  // In words (before: HDF5's "data error detected by Fletcher32 checksum (Read failed); filter returned ...").
  EXPECT_NE(report.problems[0].find("/model/layer0/wq: read failed: Fletcher32 checksum mismatch (damaged on disk)"),
            std::string::npos)
      << report.summary();
  EXPECT_EQ(report.problems[0].find("filter returned failure"), std::string::npos) << report.summary();
  message = input_error_of([&] { CheckpointReader(flipped).read_whole("model/layer0/wq"); });
  EXPECT_NE(message.find("/model/layer0/wq: read failed"), std::string::npos) << message;
  EXPECT_EQ(verify_checkpoint_dir(dir.path()).size(), 1u);  // only the committed file is in the listing

  // Another format version, and another format.
  const std::string future = dir.file("future.h5");
  fs::copy_file(good, future);
  {
    h5::File file = h5::File::open(future, h5::Mode::read_write);
    file.write_attribute("format_version", int64_t{2});
  }
  message = input_error_of([&] { CheckpointReader reader(future); });
  EXPECT_NE(message.find("future.h5: format_version is 2, this build reads format_version 1"), std::string::npos)
      << message;
  {
    h5::File file = h5::File::open(future, h5::Mode::read_write);
    file.write_attribute("format", std::string("something-else"));
  }
  message = input_error_of([&] { CheckpointReader reader(future); });
  EXPECT_NE(message.find("format is 'something-else'"), std::string::npos) << message;

  // Shapes and attributes that do not match the config.
  const CheckpointReader reader(good);
  message = input_error_of([&] { reader.expect_shape("model/embed", {11, 6}); });
  EXPECT_NE(message.find("model/embed: shape [11,5] in the checkpoint, [11,6] expected"), std::string::npos)
      << message;
  message = input_error_of([&] { reader.expect_shape("model/missing", {1}); });
  EXPECT_NE(message.find("model/missing: missing from the checkpoint"), std::string::npos) << message;
  message = input_error_of([&] { reader.expect_attribute("seq_len", 8192); });
  EXPECT_NE(message.find("seq_len is 4096 in the checkpoint, 8192 expected"), std::string::npos) << message;
  message = input_error_of([&] { CheckpointReader missing(dir.file("nothing.h5")); });
  EXPECT_NE(message.find("nothing.h5: no such file"), std::string::npos) << message;
}

// Damaged files are examined by one process (rank 0); the other ranks wait.
TEST(Checkpoint, DamagedFilesAreRefusedNamingTheDataset) {
  SharedTempDir dir;
  const std::string good = write_content(dir.path(), 1, MPI_COMM_WORLD);
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) check_damaged_copies(dir, good);
  MPI_Barrier(MPI_COMM_WORLD);
}

// "" when the checkpoint at `path` (written by write_content at step 1) reads back exactly as written,
// else the first difference. Read by one process.
std::string content_difference(const std::string& path) {
  const Content content;
  const CheckpointReader reader(path);
  if (reader.step() != 1 || reader.seq_len() != 4096 || reader.tokens_seen() != 4096) return "root attributes";
  if (reader.config() != "[model]\nlayers=2\n") return "config";
  if (reader.file().read_double_attribute("learning_rate") != 0.25) return "learning_rate";
  if (reader.tensor_names() != std::vector<std::string>{"model/embed", "model/layer0/wq", "model/norm", "model/tiny",
                                                        "optimizer/m/embed"})
    return "tensor names";
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (size_t i = 0; i < content.sharded.size(); ++i) {
    const auto& [name, shape] = content.sharded[i];
    tensors.emplace_back(name, make_block(i, shape, 0, {0, shape[0]}));
  }
  tensors.emplace_back("model/norm", make_block(99, content.replicated, 0, {0, content.replicated[0]}));
  for (const auto& [name, expected] : tensors) {
    const ::testing::AssertionResult same = tensors_equal(expected, reader.read_whole(name));
    if (!same) return name + ": " + same.message();
  }
  if (reader.read_global_blob("data_position") != kPosition) return "data_position";
  const std::vector<std::vector<uint8_t>> blobs = reader.read_all_rank_blobs("rng");
  if (static_cast<int64_t>(blobs.size()) != reader.world_size()) return "rng blob count";
  for (size_t r = 0; r < blobs.size(); ++r)
    if (blobs[r] != rank_state(static_cast<int>(r))) return "rng blob of rank " + std::to_string(r);
  return "";
}

// /config is plain data (no Fletcher32): a changed byte in it is caught by the hash in the root header.
TEST(Checkpoint, DamagedConfigTextIsRefused) {
  SharedTempDir dir;
  const std::string good = write_content(dir.path(), 1, MPI_COMM_WORLD);
  MPI_Barrier(MPI_COMM_WORLD);
  on_rank0([&] {
    std::string bytes;
    {
      std::ifstream in(good, std::ios::binary);
      bytes.assign(std::istreambuf_iterator<char>(in), {});
    }
    const size_t at = bytes.find("layers=2");
    ASSERT_NE(at, std::string::npos);
    bytes[at + 7] = '3';
    const std::string damaged = dir.file("config.h5");
    std::ofstream(damaged, std::ios::binary) << bytes;
    const std::string message = input_error_of([&] { CheckpointReader reader(damaged); });
    EXPECT_NE(message.find("config.h5: /config does not match its recorded hash"), std::string::npos) << message;
    EXPECT_FALSE(verify_checkpoint(damaged).ok);
    EXPECT_EQ(CheckpointReader(good).config(), "[model]\nlayers=2\n");
  });
  MPI_Barrier(MPI_COMM_WORLD);
}

// HDF5 reads a chunk that its chunk index does not list as the fill value, without an error: the
// signature of a damaged chunk index. Made here by never writing the second half of a tensor.
TEST(Checkpoint, TensorWithUnstoredChunksIsRefused) {
  SharedTempDir dir;
  const std::string good = write_content(dir.path(), 1, MPI_COMM_WORLD);
  MPI_Barrier(MPI_COMM_WORLD);
  on_rank0([&] {
    const std::string partial = dir.file("partial.h5");
    fs::copy_file(good, partial);
    {
      h5::File file = h5::File::open(partial, h5::Mode::read_write);
      h5::DatasetOptions options;
      options.chunk = {2, 2};
      options.fletcher32 = true;
      h5::Dataset dataset = create_float_dataset(file, "model/partial", {8, 2}, options);
      write_rows(dataset, 0, {0, 4}, make_block(7, {8, 2}, 0, {0, 4}).span());
      h5::Dataset one = create_float_dataset(file, "model/one_missing", {8, 2}, options);
      write_rows(one, 0, {0, 6}, make_block(8, {8, 2}, 0, {0, 6}).span());
    }
    const VerifyReport report = verify_checkpoint(partial);
    EXPECT_FALSE(report.ok);
    ASSERT_EQ(report.problems.size(), 2u) << report.summary();
    EXPECT_NE(report.problems[0].find("partial.h5: /model/one_missing: 3 of 4 chunks are stored"), std::string::npos)
        << report.summary();
    EXPECT_NE(report.problems[1].find("partial.h5: /model/partial: 2 of 4 chunks are stored"), std::string::npos)
        << report.summary();
    std::string message = input_error_of([&] { CheckpointReader(partial).read_whole("model/partial"); });
    EXPECT_NE(message.find("partial.h5: /model/partial: 2 of 4 chunks"), std::string::npos) << message;
    // Even the rows that were written: the tensor as a whole is damaged.
    message = input_error_of([&] { CheckpointReader(partial).read_rows("model/partial", {0, 2}); });
    EXPECT_NE(message.find("partial.h5: /model/partial: 2 of 4 chunks"), std::string::npos) << message;
  });
  MPI_Barrier(MPI_COMM_WORLD);
}

// Metadata is checksummed: every single-byte flip in the object header of a tensor (its shape, type,
// filters, chunk index address) is refused by verify or the reader, or changes nothing that is read.
TEST(Checkpoint, FlippedObjectHeaderBytesAreRefusedOrHarmless) {
  SharedTempDir dir;
  const std::string good = write_content(dir.path(), 1, MPI_COMM_WORLD);
  MPI_Barrier(MPI_COMM_WORLD);
  on_rank0([&] {
    ASSERT_EQ(content_difference(good), "");
    const std::string damaged = dir.file("damaged.h5");
    fs::copy_file(good, damaged);
    H5O_info_t header;
    {
      h5::File file = h5::File::open(damaged);
      const h5::Dataset dataset = file.open_dataset("model/layer0/wq");
      ASSERT_GE(H5Oget_info2(dataset.id(), &header, H5O_INFO_BASIC | H5O_INFO_HDR), 0);
    }
    ASSERT_GT(header.hdr.space.total, 0u);
    int refused = 0;
    std::vector<std::string> missed;
    for (hsize_t offset = 0; offset < header.hdr.space.total; ++offset) {
      const haddr_t address = header.addr + offset;
      flip_byte(damaged, address, 0x01);
      std::string difference;
      if (verify_checkpoint(damaged).ok) {
        try {
          difference = content_difference(damaged);
        } catch (const InputError&) {
          ++refused;
        } catch (const std::exception& e) {
          difference = std::string("not an InputError: ") + e.what();
        }
      } else {
        ++refused;
      }
      flip_byte(damaged, address, 0x01);
      if (!difference.empty()) missed.push_back("header byte " + std::to_string(offset) + ": " + difference);
    }
    EXPECT_GT(refused, 0);
    EXPECT_TRUE(missed.empty()) << missed.size() << " of " << header.hdr.space.total
                                << " flips passed verify and changed what is read, e.g. "
                                << (missed.empty() ? "" : missed.front());
  });
  MPI_Barrier(MPI_COMM_WORLD);
}

// Links and attributes stay in their (checksummed) object headers past the 8 after which HDF5 would
// move them to a heap: HDF5 1.10.8 crashes, rather than failing, when it lists a damaged dense group.
TEST(Checkpoint, LinksAndAttributesStayInObjectHeaders) {
  SharedTempDir dir;
  CheckpointWriter writer(dir.path(), meta_for(1), MPI_COMM_WORLD);
  for (int i = 0; i < 12; ++i) {
    writer.write_replicated("model/t" + std::to_string(i), make_block(i, {2}, 0, {0, 2}));
    writer.write_attribute("extra" + std::to_string(i), int64_t{i});
  }
  const std::string path = writer.commit(0);
  on_rank0([&] {
    h5::File file = h5::File::open(path);
    H5G_info_t links;
    ASSERT_GE(H5Gget_info(file.open_group("model").id(), &links), 0);
    EXPECT_EQ(links.nlinks, 12u);
    EXPECT_EQ(links.storage_type, H5G_STORAGE_TYPE_COMPACT);
    H5O_info_t root;
    ASSERT_GE(H5Oget_info2(file.id(), &root, H5O_INFO_NUM_ATTRS | H5O_INFO_META_SIZE), 0);
    // format, format_version, step, world_size, seq_len, tokens_seen, previous_step, config_fnv1a64, then
    // the extras
    EXPECT_EQ(root.num_attrs, 8 + 12);
    EXPECT_EQ(root.meta_size.attr.heap_size, 0u);
    EXPECT_TRUE(verify_checkpoint(path).ok);
  });
  MPI_Barrier(MPI_COMM_WORLD);
}

// A run's directory gone (removed or moved away while the run held it) is not made again without its lock
// when the caller says it must exist; by default the writer makes it.
TEST(Checkpoint, WriterDoesNotRemakeAMissingDirectoryWhenToldNotTo) {
  SharedTempDir dir;
  const std::string gone = dir.path() + "/gone";
  EXPECT_THROW(CheckpointWriter(gone, meta_for(1), MPI_COMM_WORLD, /*create_dir=*/false), InternalError);
  EXPECT_FALSE(std::filesystem::exists(gone));
  MPI_Barrier(MPI_COMM_WORLD);
  { CheckpointWriter made(gone, meta_for(1), MPI_COMM_WORLD); }
  EXPECT_TRUE(std::filesystem::is_directory(gone));
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST(Checkpoint, VerifyReportsNonFiniteValues) {
  SharedTempDir dir;
  const int rank = world_rank();
  const RowRange rows = even_rows(8, rank, world_size());
  Tensor block = make_block(5, {8, 2}, 0, rows);
  if (rows.begin <= 6 && 6 < rows.end) block[(6 - rows.begin) * 2 + 1] = std::numeric_limits<float>::quiet_NaN();
  CheckpointWriter writer(dir.path(), meta_for(1), MPI_COMM_WORLD);
  writer.write_tensor("optimizer/v", {8, 2}, rows, block);
  const std::string path = writer.commit(0);
  on_rank0([&] {
    const VerifyReport report = verify_checkpoint(path);
    EXPECT_FALSE(report.ok);
    EXPECT_NE(report.summary().find("/optimizer/v: non-finite value nan at flat index 13"), std::string::npos)
        << report.summary();
  });
  MPI_Barrier(MPI_COMM_WORLD);
}

// Zeroes the first chunk of `dataset` in `path` together with its Fletcher32 checksum (the last 4 bytes
// of the chunk): Fletcher32 of zeros is 0, so the read passes the checksum, as after a file system lost
// those blocks.
void zero_first_chunk(const std::string& path, const std::string& dataset) {
  hsize_t bytes = 0;
  haddr_t address = HADDR_UNDEF;
  {
    h5::File file = h5::File::open(path);
    h5::Dataset data = file.open_dataset(dataset);
    hsize_t offset[8] = {0};
    unsigned mask = 0;
    const h5::Dataspace space = data.file_space();
    ASSERT_GE(H5Dget_chunk_info(data.id(), space.id(), 0, offset, &mask, &address, &bytes), 0);
  }
  ASSERT_NE(address, HADDR_UNDEF);
  std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
  io.seekp(static_cast<std::streamoff>(address));
  const std::vector<char> zeros(bytes, 0);
  io.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
  ASSERT_TRUE(io.good());
}

// The damage a chunk's own checksum cannot see: a chunk zeroed with its checksum, and a value rewritten
// through HDF5 (which computes the chunk's checksum anew). Each tensor's and blob's digest catches it, in
// every reader: the whole tensor on each rank, rows that tile it across the ranks, the blobs, and verify.
// A checkpoint written before digests (none stored) reads as before.
TEST(Checkpoint, DigestCatchesWhatChunkChecksumsCannot) {
  SharedTempDir dir;
  const int rank = world_rank(), size = world_size();
  const std::string good = write_content(dir.path(), 1, MPI_COMM_WORLD);
  const std::string zeroed = dir.file("zeroed.h5"), rewritten = dir.file("rewritten.h5");
  const std::string blobs = dir.file("blobs.h5"), older = dir.file("older.h5");
  on_rank0([&] {
    fs::copy_file(good, zeroed);
    zero_first_chunk(zeroed, "model/embed");
    fs::copy_file(good, rewritten);
    {
      h5::File file = h5::File::open(rewritten, h5::Mode::read_write);
      h5::Dataset data = file.open_dataset("model/layer0/wq");
      h5::Dataspace where = data.file_space();
      where.select_box({5, 3, 2}, {1, 1, 1});
      const float value = 42.0f;
      data.write(H5T_NATIVE_FLOAT, h5::Dataspace::simple({1}), where, &value);
    }
    fs::copy_file(good, blobs);
    zero_first_chunk(blobs, "state/global/data_position");
    zero_first_chunk(blobs, "state/rank/rng");
    fs::copy_file(good, older);
    {
      h5::File file = h5::File::open(older, h5::Mode::read_write);
      for (const std::string& name : file.dataset_paths()) {
        h5::Dataset data = file.open_dataset(name);
        if (data.has_attribute("digest")) {
          ASSERT_GE(H5Adelete(data.id(), "digest"), 0) << name;
        }
      }
    }
  });
  MPI_Barrier(MPI_COMM_WORLD);
  const auto mismatch = [](const std::string& file, const std::string& dataset) {
    return file + ": /" + dataset + ": its contents do not match the digest written with them";
  };
  {
    const CheckpointReader reader(zeroed, MPI_COMM_WORLD);
    const RowRange rows = even_rows(11, rank, size);
    std::string message = input_error_of([&] { reader.read_rows("model/embed", rows); });
    EXPECT_NE(message.find(mismatch(zeroed, "model/embed")), std::string::npos) << message;
    message = input_error_of([&] { reader.read_whole("model/embed"); });
    EXPECT_NE(message.find(mismatch(zeroed, "model/embed")), std::string::npos) << message;
    // A few rows are not the tensor: nothing to compare them with (they read as stored).
    EXPECT_NO_THROW(reader.read_rows("model/embed", {10, 11}));
    // The other tensors are whole.
    EXPECT_TRUE(tensors_equal(make_block(2, {2, 3}, 0, {0, 2}), reader.read_whole("model/tiny")));
    EXPECT_TRUE(tensors_equal(make_block(3, {11, 5}, 0, rows), reader.read_rows("optimizer/m/embed", rows)));
  }
  {
    const CheckpointReader reader(rewritten, MPI_COMM_WORLD);
    const std::string message = input_error_of([&] { reader.read_whole("model/layer0/wq"); });
    EXPECT_NE(message.find(mismatch(rewritten, "model/layer0/wq")), std::string::npos) << message;
  }
  {
    const CheckpointReader reader(blobs, MPI_COMM_WORLD);
    std::string message = input_error_of([&] { reader.read_global_blob("data_position"); });
    EXPECT_NE(message.find(mismatch(blobs, "state/global/data_position")), std::string::npos) << message;
    message = input_error_of([&] { reader.read_rank_blob("rng", rank, size); });
    EXPECT_NE(message.find(mismatch(blobs, "state/rank/rng")), std::string::npos) << message;
  }
  expect_content(older, MPI_COMM_WORLD);
  on_rank0([&] {
    for (const auto& [file, dataset] : std::vector<std::pair<std::string, std::string>>{
             {zeroed, "model/embed"}, {rewritten, "model/layer0/wq"}, {blobs, "state/global/data_position"}}) {
      const VerifyReport report = verify_checkpoint(file);
      EXPECT_FALSE(report.ok) << file;
      EXPECT_NE(report.summary().find(mismatch(file, dataset)), std::string::npos) << report.summary();
    }
    VerifyReport report = verify_checkpoint(good);
    EXPECT_TRUE(report.ok) << report.summary();
    EXPECT_EQ(report.summary().find("without a digest"), std::string::npos) << report.summary();
    report = verify_checkpoint(older);
    EXPECT_TRUE(report.ok) << report.summary();
    EXPECT_NE(report.summary().find("7 without a digest (written before digests, or rewritten since)"), std::string::npos)
        << report.summary();
  });
  MPI_Barrier(MPI_COMM_WORLD);
}

// A tiled read (rows that tile the tensor across the ranks, its digest summed from their parts) where one
// rank's rows fail their checksum: every rank throws (that rank its read error, the others naming it), where
// the others waited for it in the sum (a hang).
TEST(Checkpoint, ATiledReadThatFailsOnOneRankFailsOnAll) {
  SharedTempDir dir;
  const int rank = world_rank(), size = world_size();
  const std::string good = write_content(dir.path(), 1, MPI_COMM_WORLD);
  const std::string path = dir.file("one_bad_chunk.h5");
  const Shape shape = {8, 2};
  on_rank0([&] {
    fs::copy_file(good, path);
    h5::File file = h5::File::open(path, h5::Mode::read_write);
    h5::DatasetOptions options;
    options.chunk = {1, 2};  // a chunk per row: the last rank's rows alone hold the damage
    options.fletcher32 = true;
    h5::Dataset dataset = create_float_dataset(file, "model/rows", shape, options);
    const Tensor all = make_block(9, shape, 0, {0, 8});
    write_rows(dataset, 0, {0, 8}, all.span());
    dataset.write_attribute("digest", digest_attribute_value(float_digest(all.data(), all.size(), 0)));
  });
  MPI_Barrier(MPI_COMM_WORLD);
  on_rank0([&] {
    hsize_t offset[2] = {0, 0};
    unsigned mask = 0;
    haddr_t address = HADDR_UNDEF;
    hsize_t bytes = 0;
    {
      h5::File file = h5::File::open(path);
      h5::Dataset data = file.open_dataset("model/rows");
      const h5::Dataspace space = data.file_space();
      ASSERT_GE(H5Dget_chunk_info(data.id(), space.id(), 7, offset, &mask, &address, &bytes), 0);
    }
    EXPECT_EQ(offset[0], 7u);
    flip_byte(path, address + 1, 0x10);
  });
  MPI_Barrier(MPI_COMM_WORLD);
  const CheckpointReader reader(path, MPI_COMM_WORLD);
  const RowRange rows = even_rows(shape[0], rank, size);
  const std::string message = input_error_of([&] { reader.read_rows("model/rows", rows); });
  if (rows.end == shape[0])
    EXPECT_NE(message.find("/model/rows: read failed"), std::string::npos) << message;
  else
    EXPECT_NE(message.find("one_bad_chunk.h5: /model/rows: the read failed on 1 other rank(s)"), std::string::npos)
        << message;
  MPI_Barrier(MPI_COMM_WORLD);
}

}  // namespace
}  // namespace longctx::io
