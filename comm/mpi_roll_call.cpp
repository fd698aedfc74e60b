// The roll call (mpi_roll_call.hpp). Messages on its own communicator, all text:
//   ask     tag 1   "<n>"                        the asker's n-th roll call
//   answer  tag 2   "<n>\n<what>\n<seconds>"     n echoed, so a late answer to an earlier call is dropped
// Every send is non-blocking; its buffer is kept until MPI says it is done (sends to a rank that never
// receives stay pending: the job is ending, and a message this small leaves eagerly anyway).
#include "comm/mpi_roll_call.hpp"

#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <sstream>
#include <thread>
#include <utility>
#include <vector>

#include "comm/communicator.hpp"
#include "runtime/core/activity.hpp"
#include "runtime/core/check.hpp"

namespace longctx::comm::roll_call {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kAskTag = 1;
constexpr int kAnswerTag = 2;
constexpr size_t kHostBytes = 64;

struct Outgoing {
  std::string text;
  MPI_Request request = MPI_REQUEST_NULL;
};

struct Peer {  // what open() gathered of every rank, for the ranks that do not answer
  char host[kHostBytes];
  int64_t pid;
};

struct State {
  bool opened = false;  // open() ran (or was not needed)
  bool on = false;      // usable: opened over 2+ ranks, and no MPI error since
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0;
  int size = 1;
  std::vector<Peer> peers;
  long asked = 0;  // this rank's roll calls so far
  std::vector<std::unique_ptr<Outgoing>> sending;
};

State& state() {
  static State s;
  return s;
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// False (and the roll call off for good) on an MPI error: it must never break the wait it serves.
bool ok(int rc) {
  if (rc != MPI_SUCCESS) state().on = false;
  return rc == MPI_SUCCESS;
}

void send(int to, int tag, std::string text) {
  State& s = state();
  auto out = std::make_unique<Outgoing>();
  out->text = std::move(text);
  if (ok(MPI_Isend(out->text.data(), static_cast<int>(out->text.size()), MPI_CHAR, to, tag, s.comm, &out->request)))
    s.sending.push_back(std::move(out));
}

// Drops the sends MPI has finished with.
void tidy() {
  State& s = state();
  for (size_t i = 0; i < s.sending.size() && s.on;) {
    int done = 0;
    if (ok(MPI_Test(&s.sending[i]->request, &done, MPI_STATUS_IGNORE)) && done) {
      s.sending[i] = std::move(s.sending.back());
      s.sending.pop_back();
    } else {
      ++i;
    }
  }
}

// The next message with `tag` from any rank, if one has arrived.
bool receive(int tag, int& source, std::string& text) {
  State& s = state();
  if (!s.on) return false;
  MPI_Message message = MPI_MESSAGE_NULL;
  MPI_Status status;
  int found = 0;
  if (!ok(MPI_Improbe(MPI_ANY_SOURCE, tag, s.comm, &found, &message, &status)) || !found) return false;
  int count = 0;
  if (!ok(MPI_Get_count(&status, MPI_CHAR, &count))) return false;
  text.assign(static_cast<size_t>(std::max(count, 0)), '\0');
  if (!ok(MPI_Mrecv(text.data(), count, MPI_CHAR, &message, MPI_STATUS_IGNORE))) return false;
  source = status.MPI_SOURCE;
  return true;
}

std::string seconds_text(double seconds) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f", seconds);
  return text;
}

// "rank 3 (host h, pid p)", up to 4 ranks so; more: "ranks 8-15 (hosts a, b, ...)".
std::string where_text(const std::vector<int>& ranks) {
  const State& s = state();
  const auto host = [&](int rank) { return std::string(s.peers[static_cast<size_t>(rank)].host); };
  if (ranks.size() <= 4) {
    std::string out;
    for (int rank : ranks)
      out += (out.empty() ? "rank " : ", rank ") + std::to_string(rank) + " (host " + host(rank) + ", pid " +
             std::to_string(s.peers[static_cast<size_t>(rank)].pid) + ")";
    return out;
  }
  std::string out = ranks_text(ranks);
  std::vector<std::string> hosts;
  for (int rank : ranks)
    if (std::find(hosts.begin(), hosts.end(), host(rank)) == hosts.end()) hosts.push_back(host(rank));
  out += hosts.size() == 1 ? " (host " : " (hosts ";
  for (size_t i = 0; i < hosts.size() && i < 4; ++i) out += (i ? ", " : "") + hosts[i];
  if (hosts.size() > 4) out += " and " + std::to_string(hosts.size() - 4) + " more";
  return out + ")";
}

struct Answer {
  std::string what;
  double seconds = 0;
};

std::string summary(const std::map<int, Answer>& answers, double elapsed, const std::vector<int>& members) {
  const State& s = state();
  // Ranks grouped by the call they wait in, the asker's call first, then by lowest rank.
  std::vector<std::pair<std::string, std::vector<int>>> calls;
  const auto add = [&](int rank, const std::string& what) {
    for (auto& [call, ranks] : calls)
      if (call == what) return ranks.push_back(rank);
    calls.push_back({what, {rank}});
  };
  add(s.rank, answers.at(s.rank).what);
  for (const auto& [rank, answer] : answers)
    if (rank != s.rank) add(rank, answer.what);
  std::ostringstream out;
  out << "Roll call (" << answers.size() - 1 << " of " << s.size - 1 << " other rank" << (s.size > 2 ? "s" : "")
      << " answered within " << seconds_text(elapsed) << " s): ";
  size_t shown = 0;
  for (auto& [call, ranks] : calls) {
    if (++shown > 6) break;
    std::sort(ranks.begin(), ranks.end());  // the asker's rank came first
    double least = 1e300, most = 0;
    for (int rank : ranks) {
      least = std::min(least, answers.at(rank).seconds);
      most = std::max(most, answers.at(rank).seconds);
    }
    const std::string span =
        seconds_text(least) == seconds_text(most) ? seconds_text(least) : seconds_text(least) + "-" + seconds_text(most);
    out << (shown > 1 ? "; " : "") << ranks_text(ranks) << (ranks.size() == 1 ? " waits in " : " wait in ") << call
        << " (for " << span << " s)";
  }
  if (calls.size() > 6) out << "; and ranks in " << calls.size() - 6 << " other calls";
  // The silent ranks of the communicator that timed out are the ones to look at; the others (in none of
  // its calls) may just be busy elsewhere.
  std::vector<int> silent, silent_outside;
  for (int rank = 0; rank < s.size; ++rank) {
    if (answers.count(rank)) continue;
    const bool member = members.empty() || std::find(members.begin(), members.end(), rank) != members.end();
    (member ? silent : silent_outside).push_back(rank);
  }
  if (!silent.empty())
    out << "; " << where_text(silent) << " did not answer: " << (silent.size() == 1 ? "it is" : "they are")
        << " in no communicator call (computing, reading or writing a file, stopped, or gone), or held inside MPI by "
           "one long transfer";
  if (!silent_outside.empty())
    out << "; " << ranks_text(silent_outside) << ", outside the communicator that timed out, did not answer either";
  return out.str();
}

// The call a rank waits in, and what it is doing (activity::Scope): "all_reduce #12 on the world
// communicator while evaluating step 4".
std::string with_activity(const std::string& what) {
  const std::string doing = activity::current();
  return doing.empty() ? what : what + " while " + doing;
}

}  // namespace

std::string ranks_text(const std::vector<int>& ranks) {
  std::string out = ranks.size() == 1 ? "rank " : "ranks ";
  for (size_t i = 0; i < ranks.size();) {
    size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    if (i > 0) out += ", ";
    out += std::to_string(ranks[i]);
    if (j > i) out += "-" + std::to_string(ranks[j]);
    i = j + 1;
  }
  return out;
}

bool open(const std::function<bool(std::vector<MPI_Request>&)>& wait) {
  State& s = state();
  if (s.opened) return true;
  int size = 1;
  if (!ok(MPI_Comm_size(MPI_COMM_WORLD, &size))) return s.opened = true;
  if (size < 2) return s.opened = true;
  std::vector<MPI_Request> requests(1, MPI_REQUEST_NULL);
  LONGCTX_CHECK_MPI(MPI_Comm_idup(MPI_COMM_WORLD, &s.comm, &requests[0]));
  if (!wait(requests)) return false;
  LONGCTX_CHECK_MPI(MPI_Comm_set_errhandler(s.comm, MPI_ERRORS_RETURN));
  LONGCTX_CHECK_MPI(MPI_Comm_rank(s.comm, &s.rank));
  s.size = size;
  static Peer me{};  // MPI reads it until the gather completes, also after a timeout here
  std::strncpy(me.host, process_host().c_str(), kHostBytes - 1);
  me.pid = static_cast<int64_t>(getpid());
  s.peers.resize(static_cast<size_t>(size));
  LONGCTX_CHECK_MPI(MPI_Iallgather(&me, sizeof(Peer), MPI_BYTE, s.peers.data(), sizeof(Peer), MPI_BYTE, s.comm,
                                   &requests[0]));
  if (!wait(requests)) return false;
  s.opened = s.on = true;
  return true;
}

void answer(const std::string& what, double seconds) {
  State& s = state();
  if (!s.on) return;
  int source = 0;
  std::string ask;
  while (receive(kAskTag, source, ask))
    send(source, kAnswerTag, ask + '\n' + with_activity(what) + '\n' + seconds_text(seconds));
  if (!s.sending.empty()) tidy();
}

std::string ask(const std::string& what, double seconds, double window, const std::vector<int>& members) {
  State& s = state();
  if (!s.on) return "";
  const std::string number = std::to_string(++s.asked);
  for (int rank = 0; rank < s.size; ++rank)
    if (rank != s.rank) send(rank, kAskTag, number);
  std::map<int, Answer> answers{{s.rank, {with_activity(what), seconds}}};
  const Clock::time_point start = Clock::now();
  while (s.on && static_cast<int>(answers.size()) < s.size && seconds_since(start) < window) {
    answer(what, seconds + seconds_since(start));  // the others may be asking too
    int source = 0;
    std::string text;
    bool heard = false;
    while (receive(kAnswerTag, source, text)) {
      heard = true;
      const size_t first = text.find('\n'), second = text.find('\n', first == std::string::npos ? 0 : first + 1);
      if (second == std::string::npos || text.compare(0, first, number) != 0 || first != number.size()) continue;
      answers[source] = {text.substr(first + 1, second - first - 1), std::strtod(text.c_str() + second + 1, nullptr)};
    }
    if (!heard) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!s.on) return "";
  return summary(answers, seconds_since(start), members);
}

}  // namespace longctx::comm::roll_call
