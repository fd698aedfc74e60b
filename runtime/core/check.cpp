#include "runtime/core/check.hpp"

namespace longctx {
namespace {
int g_rank = -1;
std::string g_host = "?";
}  // namespace

void set_process_identity(int rank, const std::string& host) {
  g_rank = rank;
  g_host = host;
}

int process_rank() { return g_rank; }
const std::string& process_host() { return g_host; }

void fail_check(const char* library, const char* statement, const std::string& detail, const char* file,
                int line) {
  std::ostringstream message;
  message << library << " check failed: " << statement << ": " << detail << " (" << file << ":" << line
          << ", rank " << g_rank << " on " << g_host << ")";
  throw InternalError(message.str());
}

}  // namespace longctx
