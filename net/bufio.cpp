// bufio: Go's bufio.Reader and bufio.Writer over a type-erased source/sink.
//
// Reader state: the unread bytes are buf_[r_, w_). A line that fits in the
// buffer is returned as a view into it (no copy); one that does not is
// assembled in line_, which never holds more than max_line + 2 bytes. Three
// flags carry state from one call to the next:
//   err_           a source error that arrived with (or after) bytes still
//                  unread; returned once those are consumed.
//   line_pending_  line_ holds the start of a line cut short by an error.
//   skipping_      the last line was too long; discard through its end first.
#include "mnp/bufio.h"

#include <algorithm>
#include <cstring>

#include "mnp/net.h"

namespace mnp::bufio {
namespace {

IOResult conn_read(void* c, void* buf, size_t n) {
  return static_cast<net::Conn*>(c)->read(buf, n);
}
IOResult conn_write(void* c, const void* buf, size_t n) {
  return static_cast<net::Conn*>(c)->write(buf, n);
}

// Go's bufio gives up after this many reads that return neither bytes nor an
// error (io.ErrNoProgress): a source bug, not a slow peer.
constexpr int max_empty_reads = 100;

}  // namespace

// --- MemorySource ------------------------------------------------------------

IOResult MemorySource::operator()(void* buf, size_t n) {
  ++calls_;
  if (pos_ >= data_.size()) return {0, Error(Errc::eof)};
  size_t c = std::min({n, chunk_, data_.size() - pos_});
  std::memcpy(buf, data_.data() + pos_, c);
  pos_ += c;
  return {c, {}};
}

// --- Reader ------------------------------------------------------------------

Reader::Reader(ReadFn fn, void* ctx, size_t size, size_t max_line)
    : src_(fn),
      ctx_(ctx),
      size_(std::max(size, min_buffer_size)),
      max_line_(std::max<size_t>(max_line, 1)) {
  buf_ = std::make_unique<char[]>(size_);
}

Reader::Reader(net::Conn& c, size_t size, size_t max_line)
    : Reader(&conn_read, &c, size, max_line) {}

Error Reader::take_err() {
  Error e = std::move(err_);
  err_ = Error{};
  return e;
}

void Reader::compact() {
  if (r_ == 0) return;
  std::memmove(buf_.get(), buf_.get() + r_, w_ - r_);
  w_ -= r_;
  r_ = 0;
}

void Reader::fill() {
  if (r_ == w_) r_ = w_ = 0;
  IOResult res = src_(ctx_, buf_.get() + w_, size_ - w_);
  w_ += std::min(res.n, size_ - w_);  // a source that claims more is not believed
  if (res.err) {
    err_ = std::move(res.err);
    empty_reads_ = 0;
  } else if (res.n == 0) {
    if (++empty_reads_ >= max_empty_reads) {
      err_ = Error(Errc::sys, "bufio: the source returned no bytes and no error 100 times");
      empty_reads_ = 0;
    }
  } else {
    empty_reads_ = 0;
  }
}

IOResult Reader::read(void* p, size_t n) {
  skipping_ = false;  // the caller wants bytes, not lines: nothing is skipped
  if (line_pending_) {
    // The start of a line cut short by an error: those bytes come first.
    size_t c = std::min(n, line_.size());
    std::memcpy(p, line_.data(), c);
    line_.erase(0, c);
    line_pending_ = !line_.empty();
    return {c, {}};
  }
  if (n == 0) return {0, {}};
  if (r_ == w_) {
    if (err_) return {0, take_err()};
    // As large as our buffer: read straight into the caller's, no copy.
    if (n >= size_) return src_(ctx_, p, n);
    fill();
    if (r_ == w_) return {0, take_err()};
  }
  size_t c = std::min(n, w_ - r_);
  std::memcpy(p, buf_.get() + r_, c);
  r_ += c;
  return {c, {}};
}

bool Reader::skip_line() {
  for (;;) {
    const char* start = buf_.get() + r_;
    if (const void* hit = std::memchr(start, skip_delim_, w_ - r_)) {
      r_ += static_cast<size_t>(static_cast<const char*>(hit) - start) + 1;
      skipping_ = false;
      return true;
    }
    r_ = w_;
    if (err_) {
      if (err_ == Errc::eof) skipping_ = false;  // the long line ended with the input
      return false;
    }
    fill();
  }
}

Result<std::string_view> Reader::read_line() {
  return read_line_impl('\n', true);
}
Result<std::string_view> Reader::read_until(char delim) {
  return read_line_impl(delim, false);
}

Result<std::string_view> Reader::read_line_impl(char delim, bool strip_cr) {
  const char* op = strip_cr ? "read_line" : "read_until";
  if (!line_pending_) line_.clear();  // the view returned last time dies here
  if (skipping_ && !skip_line()) return {{}, take_err()};

  // The most bytes a line may have before its delimiter: max_line, plus one
  // for read_line's "\r", which is only known to be part of the terminator
  // once the "\n" after it arrives.
  const size_t limit = max_line_ + (strip_cr ? 1 : 0);
  const size_t keep_delim = strip_cr ? 0 : 1;  // read_until returns the delimiter
  size_t scanned = 0;                          // bytes of buf_[r_, w_) searched already
  for (;;) {
    const char* start = buf_.get() + r_;
    const void* hit = std::memchr(start + scanned, delim, w_ - r_ - scanned);
    if (hit != nullptr) {
      size_t i = static_cast<size_t>(static_cast<const char*>(hit) - start);
      size_t before = line_.size() + i;  // line bytes before the delimiter
      bool cr = strip_cr && (i > 0 ? start[i - 1] == '\r' : !line_.empty() && line_.back() == '\r');
      if (before - (cr ? 1 : 0) > max_line_) {
        // The whole line is here: drop it, delimiter included; no skip needed.
        r_ += i + 1;
        line_.clear();
        line_pending_ = false;
        return {{}, Error(Errc::line_too_long, op)};
      }
      std::string_view line;
      if (!line_pending_) {
        line = std::string_view(start, i + keep_delim);  // zero-copy: it fit in the buffer
      } else {
        line_.append(start, i + keep_delim);
        line = line_;
      }
      r_ += i + 1;
      line_pending_ = false;
      if (cr) line.remove_suffix(1);
      return {line, {}};
    }
    scanned = w_ - r_;
    if (line_.size() + scanned > limit) {
      // Too long whatever comes next. Say so now rather than wait for the
      // end of a line a peer may never send; the next call skips the rest.
      r_ = w_;
      line_.clear();
      line_pending_ = false;
      skipping_ = true;
      skip_delim_ = delim;
      return {{}, Error(Errc::line_too_long, op)};
    }
    if (err_) {
      if (err_ == Errc::eof && (line_pending_ || scanned > 0)) {
        // The last line has no terminator: return it; EOF comes next call.
        if (line_.size() + scanned > max_line_) {
          r_ = w_;
          line_.clear();
          line_pending_ = false;
          return {{}, Error(Errc::line_too_long, op)};
        }
        std::string_view line;
        if (!line_pending_) {
          line = std::string_view(start, scanned);
        } else {
          line_.append(start, scanned);
          line = line_;
        }
        r_ = w_;
        line_pending_ = false;
        return {line, {}};
      }
      // EOF with nothing pending, or an error that cuts the line short: the
      // bytes so far stay (in line_ and the buffer) for the next call.
      return {{}, take_err()};
    }
    if (w_ == size_) {
      if (r_ > 0) {
        compact();  // scanned counts from r_, so it stays valid
      } else {
        // A line longer than the buffer: move what we have to line_.
        line_.append(buf_.get(), w_);
        line_pending_ = true;
        r_ = w_ = 0;
        scanned = 0;
      }
    }
    fill();
  }
}

// --- Writer ------------------------------------------------------------------

Writer::Writer(WriteFn fn, void* ctx, size_t size)
    : dst_(fn), ctx_(ctx), size_(std::max(size, min_buffer_size)) {
  buf_ = std::make_unique<char[]>(size_);
}

Writer::Writer(net::Conn& c, size_t size) : Writer(&conn_write, &c, size) {}

Error Writer::sink(const void* buf, size_t n, size_t* written) {
  IOResult r = dst_(ctx_, buf, n);
  *written = std::min(r.n, n);
  if (r.err) return std::move(r.err);
  if (r.n < n) return Error(Errc::sys, "bufio: short write");  // Go's io.ErrShortWrite
  return {};
}

IOResult Writer::write(const void* p, size_t n) {
  if (err_) return {0, err_};
  const char* src = static_cast<const char*>(p);
  size_t done = 0;
  while (n - done > available()) {
    if (n_ == 0) {
      // Larger than the buffer and nothing buffered: straight to the sink.
      size_t w = 0;
      Error e = sink(src + done, n - done, &w);
      done += w;
      if (e) {
        err_ = std::move(e);
        return {done, err_};
      }
    } else {
      size_t c = available();
      std::memcpy(buf_.get() + n_, src + done, c);
      n_ += c;
      done += c;
      if (Error e = flush()) return {done, e};
    }
  }
  std::memcpy(buf_.get() + n_, src + done, n - done);
  n_ += n - done;
  return {n, {}};
}

Error Writer::flush() {
  if (err_) return err_;
  if (n_ == 0) return {};
  size_t w = 0;
  Error e = sink(buf_.get(), n_, &w);
  if (e) {
    // Keep what the sink did not take, as Go does; the error is sticky.
    if (w > 0 && w < n_) std::memmove(buf_.get(), buf_.get() + w, n_ - w);
    n_ -= std::min(w, n_);
    err_ = e;
    return e;
  }
  n_ = 0;
  return {};
}

}  // namespace mnp::bufio
