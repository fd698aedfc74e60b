// Writes a checkpoint directory and an activation dump for tests/h5py_read_check.py (an outside reader:
// h5py, not our code). Run under mpirun (any number of ranks); argv[1] is the output directory.
// Values are exact in float32 so Python can recompute them: tensor element at flat global index i of
// tensor number t is t + i / 4.
#include <mpi.h>

#include <cstdio>
#include <exception>
#include <string>

#include "io/activation_dump.hpp"
#include "io/checkpoint.hpp"

namespace {

using namespace longctx;

Tensor block_of(int tensor, const Shape& global, io::RowRange rows) {
  Tensor block(io::block_shape(global, 0, rows));
  const int64_t row_elements = element_count(global) / global[0];
  for (int64_t i = 0; i < block.size(); ++i)
    block[i] = static_cast<float>(tensor) + static_cast<float>(rows.begin * row_elements + i) / 4.0f;
  return block;
}

void write_all(const std::string& dir, MPI_Comm comm) {
  const int rank = io::h5::comm_rank(comm);
  const int size = io::h5::comm_size(comm);
  io::CheckpointMeta meta;
  meta.step = 12;
  meta.seq_len = 16;
  meta.tokens_seen = 192;
  meta.config = "[model]\nlayers=1\ndim=6\n";
  io::CheckpointWriter writer(dir + "/ckpt", meta, comm);
  const Shape w = {7, 6};
  writer.write_tensor("model/w", w, io::even_rows(7, rank, size), block_of(1, w, io::even_rows(7, rank, size)));
  writer.write_tensor("optimizer/m/w", w, io::even_rows(7, rank, size), block_of(2, w, io::even_rows(7, rank, size)));
  writer.commit(2);

  io::ActivationDump dump(dir + "/acts.h5", comm);
  const Shape qkv = {16, 2, 3};
  const char* names[] = {"q", "k", "v", "o"};
  for (int i = 0; i < 4; ++i)
    dump.write(2, 0, names[i], qkv, io::even_rows(16, rank, size), block_of(10 + i, qkv, io::even_rows(16, rank, size)));
  dump.close();
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  try {
    if (argc != 2) throw UsageError("usage: io_h5py_writer DIR");
    write_all(argv[1], MPI_COMM_WORLD);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "io_h5py_writer: %s\n", e.what());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Finalize();
  return 0;
}
