// The roll call: when a rank's wait times out, it asks every other rank what it is waiting for, so the
// error names the rank that is not there (and its host) instead of "a peer rank probably failed".
//
//   comm all_gather timed out after 600 s on rank 0 of a 4-rank MPI communicator (process rank 0 on
//   node16). Roll call (2 of 3 other ranks answered within 5.0 s): ranks 0, 2-3 wait in all_gather #7
//   on the world communicator (for 600.0-600.4 s); rank 1 (host node17, pid 4242) did not answer: it is
//   in no communicator call (computing, reading or writing a file, stopped, or gone), or held inside MPI by
//   one long transfer
//
// A rank answers while it waits in a communicator call (MpiCommunicator's timed waits poll for asks once
// they stop spinning, NCCL's once they start napping), so a rank that waits in ANOTHER call is named
// with that call ("rank 1 waits in broadcast #6 on ..."): the divergence behind most hangs. It runs over its own duplicate of
// MPI_COMM_WORLD (never matched with the caller's traffic) and only on the main thread (MPI_THREAD_FUNNELED).
// Best effort: an MPI error inside the roll call turns it off, it never throws into the wait it serves.
#pragma once

#include <mpi.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

namespace longctx::comm::roll_call {

// Opens the roll call over MPI_COMM_WORLD: its communicator, and every rank's host and pid. Collective
// over the world; make_mpi_world calls it every time (a no-op after the first, and at one rank). `wait`
// completes the posted requests, false when it timed out: then so does open().
bool open(const std::function<bool(std::vector<MPI_Request>&)>& wait);

// Answers the asks that arrived: "this rank waits in `what` (for `seconds`)". One MPI_Improbe when none
// did. `what` names the call, e.g. "all_gather #7 on the world communicator".
void answer(const std::string& what, double seconds);

// Asks every other rank what it waits for and collects the answers for at most `window` seconds (fewer
// once all answered), answering the others' asks meanwhile. `members`: the world ranks of the
// communicator that timed out (empty: all), whose silent ranks are named with host and pid. Returns the
// summary sentence ("Roll call ...: ..."), or "" when there is no roll call (one rank, not opened, or it
// failed).
std::string ask(const std::string& what, double seconds, double window, const std::vector<int>& members = {});

// "rank 3", "ranks 0, 2-5, 9" (ascending ranks).
std::string ranks_text(const std::vector<int>& ranks);

// How long a rank whose wait timed out collects the answers: a quarter of the timeout, within
// [50 ms, 5 s] (a rank that waits answers within a millisecond or so).
inline double window(double timeout_seconds) { return std::min(5.0, std::max(0.05, timeout_seconds / 4)); }

}  // namespace longctx::comm::roll_call
