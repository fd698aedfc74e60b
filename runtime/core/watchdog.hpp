// A deadline for work that waits on other ranks without a timeout of its own: the collective MPI-IO
// inside HDF5 (checkpoints, activation dumps, attend's files) and the MPI calls around it, the broadcast
// after rank-0-only steps (io::run_on_rank0), MPI_Comm_create_group, MPI_Finalize, NCCL's set-up and
// release, and the start-up's collectives and MPI_Init (there, the task exits: no MPI to abort with). The
// communicator's calls time out by themselves; these cannot, so a rank stopped or lost mid-write would
// hang the others forever.
//
// While a Guard is alive, a background thread ends the job (the action given to arm()) once no Guard was
// entered or left, and no progress() was reported, for the armed timeout (--comm-timeout). Unarmed (one
// rank: no peer to wait for), Guards cost a lock and nothing else.
#pragma once

#include <functional>
#include <string>

namespace longctx::watchdog {

// Sets the timeout and what to do when it passes (print, then abort every rank); may be called again.
// `set_by`: what sets the timeout, for the message ("--comm-timeout sets this one").
void arm(double timeout_seconds, std::function<void(const std::string& message)> expire,
         const std::string& set_by = "--comm-timeout sets this one");

// Guards cost a lock and nothing else again (a world of one after all: no peer to wait for).
void disarm();

class Guard {
 public:
  // `note`, when given, is called (on the watchdog's thread) when the deadline passes, and what it returns
  // goes into the message: e.g. io::full_disk_note of the directory written to.
  explicit Guard(const std::string& what, std::function<std::string()> note = {});  // e.g. "writing checkpoint step_00000012.h5"
  ~Guard();
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;
};

// The guarded work moved on: the deadline starts again. io's row reads and writes (read_rows, write_rows)
// report each tensor, so guarded regions need not.
void progress();

}  // namespace longctx::watchdog
