// Backend-independent parts of the communicator interface: element sizes and the Request handle.
//
// Request lifetime: wait() hands the pending operation to the backend and, whether it returns or throws
// (CommTimeout, a failed library call), the Request is no longer pending afterwards; a backend's Impl
// destructor releases whatever an unfinished operation still holds (the MPI backend cancels
// point-to-point operations and abandons collectives, which MPI cannot cancel). A Request that is
// destroyed or assigned over while pending is waited for; a failure there cannot be thrown out of a
// destructor or a noexcept move, so it is logged on this rank (log::error) and the operation is
// abandoned as above. The job does not hang and does not std::terminate: the failure that caused it
// (a peer gone or diverged) surfaces loudly at that rank's next communicator call.
#include "comm/communicator.hpp"

#include <exception>

#include "runtime/core/log.hpp"

namespace longctx::comm {

size_t size_of(DataType type) {
  switch (type) {
    case DataType::f32: return 4;
    case DataType::f64: return 8;
    case DataType::i32: return 4;
    case DataType::i64: return 8;
    case DataType::u8: return 1;
  }
  throw InternalError("comm: unknown DataType " + std::to_string(static_cast<int>(type)));
}

namespace {
void finish_quietly(std::unique_ptr<Request::Impl>& impl) noexcept {
  if (!impl) return;
  std::unique_ptr<Request::Impl> pending = std::move(impl);
  try {
    pending->wait();
  } catch (const std::exception& e) {
    log::error(std::string("comm: a pending request was destroyed and could not complete; abandoned: ") +
               e.what());
  } catch (...) {
    log::error("comm: a pending request was destroyed and could not complete (unknown error); abandoned");
  }
}
}  // namespace

Request& Request::operator=(Request&& other) noexcept {
  if (this != &other) {
    finish_quietly(impl_);
    impl_ = std::move(other.impl_);
  }
  return *this;
}

Request::~Request() { finish_quietly(impl_); }

void Request::wait() {
  if (!impl_) return;
  std::unique_ptr<Impl> pending = std::move(impl_);
  pending->wait();
}

bool Request::test() {
  if (!impl_) return true;
  bool done = false;
  try {
    done = impl_->test();
  } catch (...) {
    impl_.reset();
    throw;
  }
  if (done) impl_.reset();
  return done;
}

}  // namespace longctx::comm
