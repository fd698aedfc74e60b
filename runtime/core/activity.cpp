#include "runtime/core/activity.hpp"

#include <algorithm>
#include <mutex>
#include <vector>

namespace longctx::activity {
namespace {

std::mutex& lock() {
  static std::mutex m;
  return m;
}

std::vector<std::string>& scopes() {
  static std::vector<std::string> s;
  return s;
}

}  // namespace

Scope::Scope(std::string what) {
  std::replace(what.begin(), what.end(), '\n', ' ');
  const std::lock_guard<std::mutex> guard(lock());
  scopes().push_back(std::move(what));
}

Scope::~Scope() {
  const std::lock_guard<std::mutex> guard(lock());
  scopes().pop_back();
}

std::string current() {
  const std::lock_guard<std::mutex> guard(lock());
  return scopes().empty() ? std::string() : scopes().back();
}

}  // namespace longctx::activity
