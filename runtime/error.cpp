// Errors as values: kinds, their texts, and the errno mapping.
#include "mnp/error.h"

#include <cerrno>
#include <cstring>

namespace mnp {

const char* errc_text(Errc e) noexcept {
  switch (e) {
    case Errc::ok:
      return "ok";
    case Errc::closed:
      return "use of closed network connection";
    case Errc::timeout:
      return "i/o timeout (deadline exceeded)";
    case Errc::eof:
      return "EOF";
    case Errc::reset:
      return "connection reset by peer";
    case Errc::refused:
      return "connection refused";
    case Errc::addr_in_use:
      return "address already in use";
    case Errc::addr_not_avail:
      return "cannot assign requested address";
    case Errc::too_many_files:
      return "too many open files";
    case Errc::no_such_host:
      return "no such host";
    case Errc::invalid:
      return "invalid argument";
    case Errc::line_too_long:
      return "line too long";
    case Errc::not_supported:
      return "not supported";
    case Errc::chan_closed:
      return "send on closed channel";
    case Errc::sys:
      return "system error";
  }
  return "unknown error";
}

Errc errc_from_errno(int err) noexcept {
  switch (err) {
    case 0:
      return Errc::ok;
    case ECONNRESET:
    case EPIPE:
    case ECONNABORTED:
      return Errc::reset;
    case ECONNREFUSED:
      return Errc::refused;
    case EADDRINUSE:
      return Errc::addr_in_use;
    case EADDRNOTAVAIL:
      return Errc::addr_not_avail;
    case EMFILE:
    case ENFILE:
      return Errc::too_many_files;
    case ETIMEDOUT:
      return Errc::timeout;
    case EINVAL:
      return Errc::invalid;
    case EOPNOTSUPP:
      return Errc::not_supported;
    default:
      return Errc::sys;
  }
}

std::string Error::message() const {
  std::string s;
  if (op_) {
    s += op_;
    s += ' ';
  }
  if (!context_.empty()) {
    s += context_;
    s += ' ';
  }
  if (!s.empty()) {
    s.back() = ':';
    s += ' ';
  }
  // An errno says more than our kind for the catch-all cases; for the named
  // kinds Go's canonical text reads better (and is what people search for).
  if (kind_ == Errc::sys && errno_ == 0 && !context_.empty()) {
    s.resize(s.size() - 2);  // the context already says what failed
  } else if (errno_ != 0 &&
             (kind_ == Errc::sys || kind_ == Errc::reset || kind_ == Errc::invalid)) {
    // glibc capitalises ("Connection reset by peer"); Go and the kinds' own
    // texts do not.
    std::string e = std::strerror(errno_);
    if (!e.empty() && e[0] >= 'A' && e[0] <= 'Z' && !(e.size() > 1 && e[1] >= 'A' && e[1] <= 'Z'))
      e[0] = static_cast<char>(e[0] - 'A' + 'a');
    s += e;
  } else {
    s += errc_text(kind_);
  }
  return s;
}

}  // namespace mnp
