// Fault injection for the tests: environment variables that make `train` fail, or be signalled, at a
// chosen point, where real faults land only by timing or by rounding. Each says so once (a warning) when
// set; a malformed value is a UsageError naming the variable.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace longctx::train {

// LONGCTX_FAULT_NAN_GRADIENT=S[:R]: rank R (default 0) puts a nan into its own gradient of step S, before the
// all-reduce. It tests a finite loss with a non-finite gradient, which real numbers reach only through
// rounding that depends on the build and the CPU (a huge train.lr: dS = P * (dP - delta) cancels exactly in
// one build and leaves an overflowing remainder in another).
struct NanGradientFault {
  int64_t step = 0;
  int rank = 0;
};
// LONGCTX_FAULT_NAN_GRADIENT as set, or nullopt; its rank must be below `world_size`.
std::optional<NanGradientFault> nan_gradient_fault(int world_size);

// LONGCTX_FAULT_SIGNAL_AT=checkpoint:S, dump:S or eval:S: rank 0 raises SIGUSR1 on itself as it ends writing
// step S's checkpoint (or activation dump), or after the first sequence of step S's evaluation, as a signal
// that arrives there would: the tests that such a signal stops the run at that step, where a real one
// lands only by timing. (The other ranks get none: they learn it from rank 0, as from a real one.)
struct SignalFault {
  std::string at;  // checkpoint, dump or eval
  int64_t step = 0;
};
// LONGCTX_FAULT_SIGNAL_AT as set, or nullopt.
std::optional<SignalFault> signal_fault_at();

}  // namespace longctx::train
