// fuzz/bufio_reader_fuzz.cpp — libFuzzer target: mnp::bufio::Reader.
//
// The input is a small header and the bytes the Reader reads:
//
//   byte 0      buffer size: 16 + b (16..271, so lines longer than the buffer
//               are assembled in the overflow string)
//   byte 1      max line length: 1 + b % 64
//   byte 2      mode: b % 4 — 0 read_line, 1 read_until(delim), 2 read() only,
//               3 read_line and read_until('\n') mixed; bit 4: the source
//               also returns timeouts (alone, or together with bytes)
//   byte 3      the delimiter of mode 1
//   bytes 4-11  seed of the source's chunking (1..n bytes per call, some
//               calls 1 byte) and of read()'s sizes
//   the rest    the stream
//
// What must hold, whatever the input:
//   - a line never exceeds max_line (read_line: without its "\r\n" or "\n";
//     read_until: without its delimiter) and never contains the delimiter
//     except read_until's last byte;
//   - the lines returned, with the lines reported as line_too_long, are
//     exactly the lines of the input, in order (a model computed here from
//     the whole input): nothing lost, duplicated or reordered, every
//     overlong line reported once and then skipped, the last line without a
//     terminator returned as a line, then EOF, and EOF again after it;
//   - a timeout from the source is returned once, with an empty line, and
//     loses nothing: the sequence without timeouts is the model;
//   - read() alone returns the stream byte for byte;
//   - the Reader stops: a bounded number of calls reaches EOF.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "mnp/bufio.h"

namespace {

using mnp::Errc;
using mnp::Error;
using mnp::IOResult;

[[noreturn]] void fail(const char* what, const std::string& detail = {}) {
  std::fprintf(stderr, "bufio_reader_fuzz: invariant broken: %s%s%s\n", what,
               detail.empty() ? "" : ": ", detail.c_str());
  std::abort();
}

uint64_t next(uint64_t* s) {  // splitmix64
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A socket-like source: random short reads, optional timeouts, then EOF
// forever.
struct Source {
  std::string_view data;
  size_t pos = 0;
  uint64_t rng;
  bool timeouts;
  size_t calls = 0;

  IOResult operator()(void* buf, size_t n) {
    ++calls;
    const uint64_t r = next(&rng);
    if (timeouts && r % 8 == 0) return {0, Error(Errc::timeout, "read")};
    if (pos >= data.size()) return {0, Error(Errc::eof, "read")};
    size_t c = (r >> 8) % 4 == 0 ? 1 : 1 + (r >> 16) % (data.size() - pos);
    if (c > n) c = n;
    std::memcpy(buf, data.data() + pos, c);
    pos += c;
    // Bytes and an error in one call, as a Conn may return them.
    if (timeouts && (r >> 40) % 16 == 0) return {c, Error(Errc::timeout, "read")};
    return {c, {}};
  }
};

struct Item {
  bool too_long;
  std::string line;
  bool operator==(const Item& o) const { return too_long == o.too_long && line == o.line; }
};

std::string show(const std::vector<Item>& v, size_t at) {
  std::string s = "at item " + std::to_string(at) + ":";
  for (size_t i = at; i < v.size() && i < at + 3; i++)
    s += v[i].too_long ? " [too long]" : " \"" + v[i].line + "\"";
  return s;
}

// The lines of `in` as the Reader must return them.
std::vector<Item> model(std::string_view in, char delim, bool strip_cr, size_t max_line) {
  std::vector<Item> out;
  size_t pos = 0;
  while (pos < in.size()) {
    const size_t d = in.find(delim, pos);
    if (d == std::string_view::npos) {  // the last line, unterminated: as is
      std::string_view seg = in.substr(pos);
      out.push_back(seg.size() > max_line ? Item{true, {}} : Item{false, std::string(seg)});
      break;
    }
    std::string_view seg = in.substr(pos, d - pos);
    if (strip_cr && !seg.empty() && seg.back() == '\r') seg.remove_suffix(1);
    if (seg.size() > max_line) {
      out.push_back({true, {}});
    } else {
      std::string line(seg);
      if (!strip_cr) line += delim;  // read_until keeps the delimiter
      out.push_back({false, std::move(line)});
    }
    pos = d + 1;
  }
  return out;
}

void check_lines(std::string_view in, mnp::bufio::Reader& rd, Source& src, char delim, bool mixed) {
  const bool strip_cr = delim == '\n' && !mixed;
  // Mixed mode: read_line and read_until('\n') alternate; each line's model
  // depends on which call returns it, so only the contents are compared
  // (without "\r" and "\n"), and the max is the tighter read_until one.
  const std::vector<Item> want = model(in, delim, strip_cr || mixed, rd.max_line());
  std::vector<Item> got;
  const size_t max_calls = 8 * in.size() + 64;
  size_t eofs = 0;
  for (size_t call = 0; call < max_calls; call++) {
    const bool use_line = !mixed ? delim == '\n' : (next(&src.rng) & 1);
    auto [line, err] = use_line ? rd.read_line() : rd.read_until(delim);
    if (err == Errc::timeout) {
      if (!line.empty()) fail("a timeout came with a non-empty line");
      continue;
    }
    if (err == Errc::eof) {
      if (!line.empty()) fail("EOF came with a non-empty line");
      if (++eofs == 2) break;  // EOF, and EOF again
      continue;
    }
    if (eofs) fail("a line after EOF");
    if (err == Errc::line_too_long) {
      if (!line.empty()) fail("line_too_long came with a non-empty line");
      got.push_back({true, {}});
      continue;
    }
    if (err) fail("unexpected error", err.message());
    const size_t limit = rd.max_line() + (use_line ? 0 : 1);
    if (line.size() > limit) fail("a line longer than max_line", std::to_string(line.size()));
    std::string s(line);
    if (!use_line) {
      // read_until: the delimiter is the last byte, except on the last line.
      const size_t d = s.find(delim);
      if (d != std::string::npos && d + 1 != s.size()) fail("a delimiter inside a line");
      if (mixed) {
        if (!s.empty() && s.back() == delim) {
          s.pop_back();
          if (!s.empty() && s.back() == '\r') s.pop_back();
        }
      }
    } else if (s.find('\n') != std::string::npos) {
      fail("a '\\n' inside a line");
    }
    got.push_back({false, std::move(s)});
  }
  if (eofs < 2) fail("no EOF after a bounded number of calls");
  if (mixed) {
    // One item per input line either way; read_until counts a "\r" that
    // read_line does not, so a line at the limit may be too long for one
    // call and not the other: compare the lines both returned.
    if (got.size() != want.size()) {
      fail("mixed: the number of lines differs",
           std::to_string(got.size()) + " vs " + std::to_string(want.size()));
    }
    for (size_t i = 0; i < want.size(); i++) {
      if (!got[i].too_long && !want[i].too_long && got[i].line != want[i].line)
        fail("mixed: the lines differ from the input's",
             "want " + show(want, i) + "; got " + show(got, i));
    }
    return;
  }
  for (size_t i = 0; i < want.size() || i < got.size(); i++) {
    if (i >= got.size() || i >= want.size() || !(got[i] == want[i])) {
      fail("the lines differ from the input's", "want " + show(want, i) + "; got " + show(got, i));
    }
  }
}

void check_read(std::string_view in, mnp::bufio::Reader& rd, Source& src) {
  std::string out;
  std::vector<char> buf(600);
  const size_t max_calls = 8 * in.size() + 64;
  size_t call = 0;
  for (; call < max_calls; call++) {
    const size_t n = next(&src.rng) % buf.size();
    auto [got, err] = rd.read(buf.data(), n);
    if (got > n) fail("read returned more than asked");
    out.append(buf.data(), got);
    if (err == Errc::eof) break;
    if (err && !(err == Errc::timeout)) fail("unexpected error", err.message());
  }
  if (call == max_calls) fail("no EOF after a bounded number of calls");
  if (out != in) fail("read() did not return the stream byte for byte");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 12) return 0;
  const size_t bufsize = 16 + data[0];
  const size_t max_line = 1 + data[1] % 64;
  const int mode = data[2] % 4;
  const bool timeouts = data[2] & 0x10;
  const char delim = static_cast<char>(data[3]);
  uint64_t seed = 0;
  std::memcpy(&seed, data + 4, 8);
  std::string_view in(reinterpret_cast<const char*>(data) + 12, size - 12);

  Source src{in, 0, seed, timeouts};
  mnp::bufio::Reader rd(src, bufsize, max_line);
  switch (mode) {
    case 0:
      check_lines(in, rd, src, '\n', false);
      break;
    case 1:
      check_lines(in, rd, src, delim, false);
      break;
    case 2:
      check_read(in, rd, src);
      break;
    default:
      check_lines(in, rd, src, '\n', true);
      break;
  }
  return 0;
}
