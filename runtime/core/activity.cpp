#include "runtime/core/activity.hpp"

#include <algorithm>
#include <chrono>
#include <mutex>
#include <utility>
#include <vector>

namespace longctx::activity {
namespace {

std::mutex& lock() {
  static std::mutex m;
  return m;
}

using Clock = std::chrono::steady_clock;

std::vector<std::pair<std::string, Clock::time_point>>& scopes() {
  static std::vector<std::pair<std::string, Clock::time_point>> s;
  return s;
}

}  // namespace

Scope::Scope(std::string what) {
  std::replace(what.begin(), what.end(), '\n', ' ');
  const std::lock_guard<std::mutex> guard(lock());
  scopes().emplace_back(std::move(what), Clock::now());
}

Scope::~Scope() {
  const std::lock_guard<std::mutex> guard(lock());
  scopes().pop_back();
}

std::string current() {
  const std::lock_guard<std::mutex> guard(lock());
  return scopes().empty() ? std::string() : scopes().back().first;
}

Now now() {
  const std::lock_guard<std::mutex> guard(lock());
  if (scopes().empty()) return {};
  const auto& [what, since] = scopes().back();
  return {what, std::chrono::duration<double>(Clock::now() - since).count()};
}

}  // namespace longctx::activity
