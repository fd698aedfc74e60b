// What this process is doing, in words ("evaluating step 4"), for the messages of waits that time out: a
// communicator call's timeout and the roll call's answers say it beside the call, so that ranks waiting in
// different phases (one evaluating, one training) show as such. Scopes nest; the innermost one is said.
// Made on one thread (the main one: a scope's end removes the newest), read on any.
#pragma once

#include <string>

namespace longctx::activity {

class Scope {
 public:
  explicit Scope(std::string what);  // one line (a line break is said as a space)
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;
};

// The innermost scope's text; "" outside any.
std::string current();

// The innermost scope's text and how long it has lasted; {"", 0} outside any.
struct Now {
  std::string what;
  double seconds = 0;
};
Now now();

}  // namespace longctx::activity
