// The fault-injection variables: see fault_injection.hpp.
#include "runtime/train/fault_injection.hpp"

#include "runtime/core/error.hpp"
#include "runtime/core/log.hpp"
#include "runtime/process.hpp"

namespace longctx::train {
namespace {

// A variable's whole number: digits only, at most 18.
bool whole_number(const std::string& text, int64_t& out) {
  if (text.empty() || text.size() > 18 || text.find_first_not_of("0123456789") != std::string::npos) return false;
  out = std::stoll(text);
  return true;
}

}  // namespace

std::optional<NanGradientFault> nan_gradient_fault(int world_size) {
  const auto value = process_getenv("LONGCTX_FAULT_NAN_GRADIENT");
  if (!value) return std::nullopt;
  const std::string& v = *value;
  const size_t colon = v.find(':');
  NanGradientFault fault;
  int64_t rank = 0;
  if (!whole_number(v.substr(0, colon), fault.step) || fault.step < 1 ||
      (colon != std::string::npos && (!whole_number(v.substr(colon + 1), rank) || rank >= world_size)))
    throw UsageError("LONGCTX_FAULT_NAN_GRADIENT=" + v + ": expected STEP or STEP:RANK (a step >= 1, a rank below " +
                     std::to_string(world_size) + ")");
  fault.rank = static_cast<int>(rank);
  log::warn_once("LONGCTX_FAULT_NAN_GRADIENT: rank " + std::to_string(fault.rank) + " puts a nan into its gradient at step " +
                 std::to_string(fault.step) + " (fault injection for the tests)");
  return fault;
}

std::optional<SignalFault> signal_fault_at() {
  const auto value = process_getenv("LONGCTX_FAULT_SIGNAL_AT");
  if (!value) return std::nullopt;
  const std::string& v = *value;
  const size_t colon = v.find(':');
  SignalFault fault;
  fault.at = v.substr(0, colon);
  if ((fault.at != "checkpoint" && fault.at != "dump" && fault.at != "eval") || colon == std::string::npos ||
      !whole_number(v.substr(colon + 1), fault.step) || fault.step < 1)
    throw UsageError("LONGCTX_FAULT_SIGNAL_AT=" + v + ": expected checkpoint:STEP, dump:STEP or eval:STEP (a step >= 1)");
  log::warn_once("LONGCTX_FAULT_SIGNAL_AT: rank 0 raises SIGUSR1 in the " + fault.at + " of step " +
                 std::to_string(fault.step) + " (fault injection for the tests)");
  return fault;
}

}  // namespace longctx::train
