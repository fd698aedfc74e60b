// The tests' stop points (LONGCTX_FAULT_STOP_*, the README's developer section): where `variable` is "1",
// the process stops itself (SIGSTOP) at that point, so that a test can act there (signal it, fill a disk,
// change a file), which it would reach only by timing otherwise; SIGCONT lets it go on.
#pragma once

#include <csignal>
#include <cstdlib>
#include <cstring>

namespace longctx {

inline void stop_here_if_set(const char* variable) {
  if (const char* value = std::getenv(variable); value && std::strcmp(value, "1") == 0) std::raise(SIGSTOP);
}

}  // namespace longctx
