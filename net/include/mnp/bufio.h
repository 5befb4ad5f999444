// mnp/bufio.h — buffered reading and writing (Go's bufio), bounded.
//
//   mnp::bufio::Reader in(*conn);           // 4 KiB buffer, lines up to 64 KiB
//   for (;;) {
//     auto [line, err] = in.read_line();    // "GET / HTTP/1.1", no "\r\n"
//     if (err == mnp::Errc::line_too_long) continue;  // that line was skipped
//     if (err) break;                       // Errc::eof after the last line
//   }
//   mnp::bufio::Writer out(*conn);
//   out.write("HTTP/1.1 200 OK\r\n");
//   out.flush();                            // one Conn::write for both lines
//
// Both sit on a type-erased source or sink: a function pointer and a context
// pointer, so a Reader over a Conn, over memory (MemorySource, for tests and
// fuzzers) or over any callable costs the same indirect call. Neither owns its
// source or sink, which must outlive it. Every buffer is fixed at construction:
// nothing grows with the input beyond the maximum line length.
//
// Not thread-safe: one G uses a Reader (or a Writer) at a time, as in Go.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>

#include "mnp/error.h"

namespace mnp::net {
class Conn;
}

namespace mnp::bufio {

// Reads up to n bytes into buf. The contract of Conn::read: some bytes, or
// {0, Errc::eof} at the end, or an error (possibly with bytes).
using ReadFn = IOResult (*)(void* ctx, void* buf, size_t n);
// Writes all n bytes, or fewer with an error (the contract of Conn::write).
// Fewer with no error is reported as a short write.
using WriteFn = IOResult (*)(void* ctx, const void* buf, size_t n);

constexpr size_t default_buffer_size = 4096;
constexpr size_t default_max_line = 64 * 1024;
constexpr size_t min_buffer_size = 16;  // smaller sizes are raised to this (as Go)

// A source over bytes in memory: hands out at most `chunk` bytes per read (to
// exercise short reads, as a socket does), then {0, Errc::eof} forever. Counts
// its calls, so a test can tell how many "syscalls" a Reader made.
class MemorySource {
 public:
  // data is not copied: it must outlive the source.
  explicit MemorySource(std::string_view data, size_t chunk = SIZE_MAX)
      : data_(data), chunk_(chunk == 0 ? 1 : chunk) {}
  explicit MemorySource(const char* data, size_t chunk = SIZE_MAX)
      : MemorySource(std::string_view(data), chunk) {}
  MemorySource(std::string&&, size_t = SIZE_MAX) = delete;  // would dangle
  IOResult operator()(void* buf, size_t n);
  size_t calls() const { return calls_; }
  size_t remaining() const { return data_.size() - pos_; }

 private:
  std::string_view data_;
  size_t pos_ = 0;
  size_t chunk_;
  size_t calls_ = 0;
};

// A buffered reader (Go's bufio.Reader).
//
// read() serves from the buffer; when the buffer is empty it makes exactly
// one source read to refill it, or, when the caller's buffer is at least as
// large as ours, reads straight into the caller's (no copy).
//
// read_line() and read_until() return a view valid until the next call on
// this Reader. A line fits in max_line bytes, its terminator not counted:
//   - longer: the call returns Errc::line_too_long at once (it does not wait
//     for the rest of the line), and the next read_line/read_until first
//     discards input up to and including the end of that line, so it returns
//     the line after it. Nothing else is lost. A read() in between cancels the
//     skip and returns the rest of the long line as bytes.
//   - at end of file, a last line without a terminator is returned as a line;
//     the call after returns {"", Errc::eof}.
//   - any other source error (a timeout, a reset) is returned with an empty
//     view, and the part of the line read so far is kept: after the deadline
//     is extended, the next call returns the whole line.
// Source errors are returned once, after the bytes read before them, and are
// not sticky: the call after asks the source again (a Conn after a timeout
// can be read again; after EOF it answers EOF again).
class Reader {
 public:
  Reader(ReadFn fn, void* ctx, size_t size = default_buffer_size,
         size_t max_line = default_max_line);
  explicit Reader(net::Conn& c, size_t size = default_buffer_size,
                  size_t max_line = default_max_line);
  // Any object callable as IOResult(void* buf, size_t n), held by reference
  // (MemorySource, a lambda): it must outlive the Reader.
  template <class F>
  requires std::is_invocable_r_v<IOResult, F&, void*, size_t>
  explicit Reader(F& f, size_t size = default_buffer_size, size_t max_line = default_max_line)
      : Reader(&call<F>, &f, size, max_line) {}

  Reader(Reader&&) noexcept = default;
  Reader& operator=(Reader&&) noexcept = default;

  // Up to n bytes: from the buffer if it holds any, else after one source
  // read. {0, err} at EOF or on a source error.
  IOResult read(void* buf, size_t n);
  // The next line, without its "\n" and without a "\r" just before it.
  Result<std::string_view> read_line();
  // Bytes up to and including the next delim (Go's ReadSlice/ReadString); at
  // EOF, the bytes before it without delim.
  Result<std::string_view> read_until(char delim);

  size_t buffered() const { return w_ - r_; }  // bytes read() can return without the source
  size_t size() const { return size_; }
  size_t max_line() const { return max_line_; }

 private:
  template <class F>
  static IOResult call(void* ctx, void* buf, size_t n) {
    return (*static_cast<F*>(ctx))(buf, n);
  }
  Result<std::string_view> read_line_impl(char delim, bool strip_cr);
  // One source read into the free end of the buffer. Sets err_ on error.
  void fill();
  // Moves the unread bytes to the front of the buffer.
  void compact();
  // Discards input through the end of the line that was too long. False if
  // it stopped at a source error (err_ is set).
  bool skip_line();
  Error take_err();

  ReadFn src_;
  void* ctx_;
  std::unique_ptr<char[]> buf_;
  size_t size_;
  size_t max_line_;
  size_t r_ = 0, w_ = 0;  // unread bytes are buf_[r_, w_)
  Error err_;             // a source error not yet returned
  int empty_reads_ = 0;   // consecutive {0, ok} reads (a source bug)
  // A line longer than the buffer is assembled here (bounded by max_line + 2).
  std::string line_;
  bool line_pending_ = false;  // line_ holds the start of an unfinished line
  bool skipping_ = false;      // discard through skip_delim_ before the next line
  char skip_delim_ = '\n';
};

// A buffered writer (Go's bufio.Writer).
//
// write() copies into the buffer and hands a full buffer to the sink in one
// call; a write at least as large as the free space, arriving with an empty
// buffer, goes straight to the sink without a copy. flush() hands over what is
// buffered. The first sink error is sticky: every later write and flush
// returns it without calling the sink again (as Go's). The destructor does not
// flush: call flush() and look at its error.
class Writer {
 public:
  Writer(WriteFn fn, void* ctx, size_t size = default_buffer_size);
  explicit Writer(net::Conn& c, size_t size = default_buffer_size);
  // Any object callable as IOResult(const void* buf, size_t n), held by
  // reference: it must outlive the Writer.
  template <class F>
  requires std::is_invocable_r_v<IOResult, F&, const void*, size_t>
  explicit Writer(F& f, size_t size = default_buffer_size) : Writer(&call<F>, &f, size) {}

  Writer(Writer&&) noexcept = default;
  Writer& operator=(Writer&&) noexcept = default;

  // Accepts all n bytes, or returns the sticky error with how many of these
  // bytes were accepted (buffered or written) before it.
  IOResult write(const void* buf, size_t n);
  IOResult write(std::string_view s) { return write(s.data(), s.size()); }
  Error flush();

  size_t buffered() const { return n_; }           // bytes waiting for flush
  size_t available() const { return size_ - n_; }  // free space in the buffer
  size_t size() const { return size_; }
  const Error& error() const { return err_; }  // the sticky error, if any

 private:
  template <class F>
  static IOResult call(void* ctx, const void* buf, size_t n) {
    return (*static_cast<F*>(ctx))(buf, n);
  }
  // One sink call for n bytes; a short write without an error becomes one.
  Error sink(const void* buf, size_t n, size_t* written);

  WriteFn dst_;
  void* ctx_;
  std::unique_ptr<char[]> buf_;
  size_t size_;
  size_t n_ = 0;  // buffered bytes: buf_[0, n_)
  Error err_;
};

}  // namespace mnp::bufio
