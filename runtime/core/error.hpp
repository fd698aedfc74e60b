// Typed errors and the process exit codes they map to (../shared/spec/interfaces.md, "Exit codes").
// User mistakes are exceptions carrying their exit code; main() turns them into the process status.
#pragma once

#include <exception>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>

namespace longctx {

enum class ExitCode : int {
  ok = 0,
  internal = 1,   // a bug or a failed library call
  usage = 2,      // bad option or config; nothing was written
  bad_input = 3,  // bad input file or checkpoint; nothing was overwritten
  requeue = 75,   // stopped on a signal after a checkpoint was committed
};

class Error : public std::runtime_error {
 public:
  Error(ExitCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ExitCode code() const { return code_; }

 private:
  ExitCode code_;
};

// Bad option value, malformed list, inconsistent configuration.
class UsageError : public Error {
 public:
  explicit UsageError(const std::string& message) : Error(ExitCode::usage, message) {}
  // About the value of one option (its long name, "seq-len"): the config phase adds where that value came
  // from when it was not the command line (a config file, an environment variable).
  UsageError(const std::string& message, const std::string& option) : Error(ExitCode::usage, message), option_(option) {}
  const std::string& option() const { return option_; }

 private:
  std::string option_;
};

// Missing, truncated, damaged or mismatching input file or checkpoint.
class InputError : public Error {
 public:
  explicit InputError(const std::string& message) : Error(ExitCode::bad_input, message) {}
};

// A failed library call or a broken invariant.
class InternalError : public Error {
 public:
  explicit InternalError(const std::string& message) : Error(ExitCode::internal, message) {}
};

// The exit code and message a run ends with for `failure` (a std::exception): an Error's own; running out
// of memory and any other exception are internal failures. What main() prints, and what train's
// log.summary records.
inline std::pair<int, std::string> exit_of(const std::exception_ptr& failure) {
  try {
    std::rethrow_exception(failure);
  } catch (const Error& e) {
    return {static_cast<int>(e.code()), e.what()};
  } catch (const std::bad_alloc&) {
    return {static_cast<int>(ExitCode::internal),
            "out of memory: this rank could not allocate what the problem needs (use more ranks, or a smaller size)"};
  } catch (const std::exception& e) {
    return {static_cast<int>(ExitCode::internal), std::string("internal failure: ") + e.what()};
  }
}

}  // namespace longctx
