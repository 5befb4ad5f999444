// bufio over memory sources and sinks that count their calls (one call
// stands for one syscall), then once over a real TCP connection.
#include "mnp/bufio.h"

#include <gtest/gtest.h>

#include <cstring>
#include <deque>
#include <random>
#include <string>
#include <vector>

#include "mnp/net.h"
#include "mnp/runtime.h"
#include "testutil.h"

using mnp::Errc;
using mnp::Error;
using mnp::IOResult;
using mnp::bufio::MemorySource;
using mnp::bufio::Reader;
using mnp::bufio::Writer;

namespace {

// A source that plays a script: each step is some bytes and an error, handed
// out by one call (split over several if the caller asks for fewer bytes).
// After the script: EOF.
struct ScriptSource {
  struct Step {
    std::string data;
    Errc err = Errc::ok;
  };
  std::deque<Step> steps;
  std::vector<size_t> asked;  // n of every call

  IOResult operator()(void* buf, size_t n) {
    asked.push_back(n);
    if (steps.empty()) return {0, Error(Errc::eof)};
    Step& s = steps.front();
    size_t c = std::min(n, s.data.size());
    std::memcpy(buf, s.data.data(), c);
    s.data.erase(0, c);
    if (!s.data.empty()) return {c, {}};
    Errc e = s.err;
    steps.pop_front();
    return {c, e == Errc::ok ? Error() : Error(e, "read")};
  }
};

// A sink that keeps what it is given and counts its calls.
struct CountingSink {
  std::string got;
  std::vector<size_t> calls;  // n of every call
  IOResult operator()(const void* buf, size_t n) {
    calls.push_back(n);
    got.append(static_cast<const char*>(buf), n);
    return {n, {}};
  }
};

// Reads every line until an error; returns the lines and the error.
std::vector<std::string> all_lines(Reader& r, Error* last) {
  std::vector<std::string> out;
  for (;;) {
    auto [line, err] = r.read_line();
    if (err) {
      *last = err;
      return out;
    }
    out.emplace_back(line);
  }
}

}  // namespace

TEST(Bufio, LinesSplitAcrossRefills) {
  // Lines of every length around the 16-byte buffer, delivered 7 bytes per
  // source read, so lines start and end anywhere relative to a refill.
  std::string text;
  std::vector<std::string> want;
  for (int len = 0; len < 60; ++len) {
    want.push_back(std::string(static_cast<size_t>(len), static_cast<char>('a' + len % 26)));
    text += want.back() + "\n";
  }
  MemorySource src(text, 7);
  Reader r(src, 16);
  Error last;
  EXPECT_EQ(all_lines(r, &last), want);
  EXPECT_EQ(last, Errc::eof);
}

TEST(Bufio, ReadLineStripsCRLF) {
  MemorySource src("a\r\nb\n\r\nc\rd\n\r\r\n");
  Reader r(src);
  Error last;
  std::vector<std::string> want = {"a", "b", "", "c\rd", "\r"};
  EXPECT_EQ(all_lines(r, &last), want);
  EXPECT_EQ(last, Errc::eof);
}

TEST(Bufio, PartialLastLineThenEOF) {
  MemorySource src("first\nlast");
  Reader r(src);
  auto [a, e1] = r.read_line();
  EXPECT_FALSE(e1);
  EXPECT_EQ(a, "first");
  auto [b, e2] = r.read_line();
  EXPECT_FALSE(e2);
  EXPECT_EQ(b, "last");
  auto [c, e3] = r.read_line();
  EXPECT_EQ(e3, Errc::eof);
  EXPECT_TRUE(c.empty());
  auto [d, e4] = r.read_line();  // EOF again, every time
  EXPECT_EQ(e4, Errc::eof);
}

TEST(Bufio, EmptyInputIsEOF) {
  MemorySource src("");
  Reader r(src);
  EXPECT_EQ(r.read_line().err, Errc::eof);
  char b[4];
  EXPECT_EQ(r.read(b, sizeof b).err, Errc::eof);
}

TEST(Bufio, OverlongLineIsReportedThenSkipped) {
  for (size_t chunk : {size_t{1}, size_t{5}, size_t{4096}}) {
    // With a 4 KiB buffer and chunk the whole long line sits in the buffer at
    // once; with small chunks and a 16-byte buffer it spans many refills.
    std::string text = "short\n" + std::string(100, 'x') + "\r\nnext\n" + std::string(11, 'y') +
                       "\n" + std::string(10, 'z') + "\n";
    MemorySource src(text, chunk);
    Reader r(src, chunk == 4096 ? 4096 : 16, 10);
    auto l1 = r.read_line();
    EXPECT_FALSE(l1.err);
    EXPECT_EQ(l1.value, "short");
    auto l2 = r.read_line();
    EXPECT_EQ(l2.err, Errc::line_too_long) << "chunk " << chunk;
    auto l3 = r.read_line();
    EXPECT_FALSE(l3.err) << l3.err.message();
    EXPECT_EQ(l3.value, "next") << "chunk " << chunk;
    auto l4 = r.read_line();  // one byte over
    EXPECT_EQ(l4.err, Errc::line_too_long) << "chunk " << chunk;
    auto l5 = r.read_line();  // exactly the maximum
    EXPECT_FALSE(l5.err);
    EXPECT_EQ(l5.value, std::string(10, 'z'));
    EXPECT_EQ(r.read_line().err, Errc::eof);
  }
}

TEST(Bufio, MaxLengthDoesNotCountTheTerminator) {
  std::string ten(10, 'q');
  std::string text = ten + "\r\n" + ten + "\n" + ten;
  MemorySource src(text);
  Reader r(src, 16, 10);
  for (int i = 0; i < 3; ++i) {
    auto [line, err] = r.read_line();
    EXPECT_FALSE(err) << i << ": " << err.message();
    EXPECT_EQ(line, ten) << i;
  }
  EXPECT_EQ(r.read_line().err, Errc::eof);
}

TEST(Bufio, OverlongLineIsReportedWithoutWaitingForItsEnd) {
  // A peer that sends an endless line: the error comes as soon as the line is
  // known to be too long, not when (if ever) it ends.
  ScriptSource src;
  src.steps.push_back({std::string(40, 'x'), Errc::ok});
  src.steps.push_back({"", Errc::timeout});  // would block here
  Reader r(src, 16, 20);
  EXPECT_EQ(r.read_line().err, Errc::line_too_long);
  EXPECT_LE(src.asked.size(), 2u);
}

TEST(Bufio, OverlongLineAtEOFIsTooLong) {
  std::string text(11, 'x');
  MemorySource src(text);
  Reader r(src, 16, 10);
  EXPECT_EQ(r.read_line().err, Errc::line_too_long);
  EXPECT_EQ(r.read_line().err, Errc::eof);
}

TEST(Bufio, LineLongerThanTheBufferIsAssembled) {
  std::string big(10000, 'b');
  std::string text = "x\n" + big + "\ny\n";
  MemorySource src(text, 333);
  Reader r(src, 16);
  Error last;
  std::vector<std::string> want = {"x", big, "y"};
  EXPECT_EQ(all_lines(r, &last), want);
  EXPECT_EQ(last, Errc::eof);
}

TEST(Bufio, SourceErrorSurfaces) {
  ScriptSource src;
  src.steps.push_back({"ok\npart", Errc::reset});
  Reader r(src);
  auto l1 = r.read_line();
  EXPECT_FALSE(l1.err);
  EXPECT_EQ(l1.value, "ok");
  auto l2 = r.read_line();
  EXPECT_EQ(l2.err, Errc::reset);
  EXPECT_TRUE(l2.value.empty());
}

TEST(Bufio, ErrorMidLineKeepsWhatWasRead) {
  // A timeout in the middle of a line loses nothing: once the deadline is
  // extended, the next call returns the whole line.
  ScriptSource src;
  src.steps.push_back({"hel", Errc::timeout});
  src.steps.push_back({"lo wor", Errc::timeout});
  src.steps.push_back({"ld\nnext\n", Errc::ok});
  Reader r(src, 16);
  EXPECT_EQ(r.read_line().err, Errc::timeout);
  EXPECT_EQ(r.read_line().err, Errc::timeout);
  auto l = r.read_line();
  EXPECT_FALSE(l.err);
  EXPECT_EQ(l.value, "hello world");
  EXPECT_EQ(r.read_line().value, "next");
}

TEST(Bufio, BytesThatCameWithAnErrorComeFirst) {
  ScriptSource src;
  src.steps.push_back({"x\ny", Errc::eof});
  Reader r(src);
  EXPECT_EQ(r.read_line().value, "x");
  EXPECT_EQ(r.read_line().value, "y");
  EXPECT_EQ(r.read_line().err, Errc::eof);
  EXPECT_EQ(src.asked.size(), 1u);  // the EOF was kept and returned once...
  EXPECT_EQ(r.read_line().err, Errc::eof);
  EXPECT_EQ(src.asked.size(), 2u);  // ...then the source is asked again
}

TEST(Bufio, ReadUntilKeepsTheDelimiter) {
  MemorySource src("a,bb,,c");
  Reader r(src);
  std::vector<std::string> got;
  for (;;) {
    auto [s, err] = r.read_until(',');
    if (err) {
      EXPECT_EQ(err, Errc::eof);
      break;
    }
    got.emplace_back(s);
  }
  std::vector<std::string> want = {"a,", "bb,", ",", "c"};
  EXPECT_EQ(got, want);
}

TEST(Bufio, ReadUntilOverlongSkipsToTheDelimiter) {
  MemorySource src("0123456789abc;ok;", 3);
  Reader r(src, 16, 8);
  EXPECT_EQ(r.read_until(';').err, Errc::line_too_long);
  EXPECT_EQ(r.read_until(';').value, "ok;");
}

TEST(Bufio, ReadMakesOneSourceReadPerRefill) {
  std::string data(10000, 'r');
  MemorySource src(data);
  Reader r(src);
  std::string got;
  char buf[100];
  for (;;) {
    auto [n, err] = r.read(buf, sizeof buf);
    got.append(buf, n);
    if (err) {
      EXPECT_EQ(err, Errc::eof);
      break;
    }
  }
  EXPECT_EQ(got, data);
  // 4096 + 4096 + 1808, then the EOF: one source read per 4 KiB.
  EXPECT_EQ(src.calls(), 4u);
}

TEST(Bufio, LargeReadOnAnEmptyBufferGoesToTheSource) {
  ScriptSource src;
  src.steps.push_back({std::string(9000, 'z'), Errc::ok});
  Reader r(src);
  std::string buf(8192, '\0');
  auto [n, err] = r.read(buf.data(), buf.size());
  EXPECT_FALSE(err);
  EXPECT_EQ(n, 8192u);
  ASSERT_EQ(src.asked.size(), 1u);
  EXPECT_EQ(src.asked[0], 8192u);  // straight into the caller's buffer
  EXPECT_EQ(r.buffered(), 0u);
}

TEST(Bufio, ReadAfterReadLineSeesTheRest) {
  MemorySource src("line\nraw bytes");
  Reader r(src);
  EXPECT_EQ(r.read_line().value, "line");
  char buf[64];
  auto [n, err] = r.read(buf, sizeof buf);
  EXPECT_FALSE(err);
  EXPECT_EQ(std::string(buf, n), "raw bytes");
}

TEST(Bufio, SourceWithoutProgressDoesNotSpin) {
  int calls = 0;
  auto lazy = [&](void*, size_t) -> IOResult {
    ++calls;
    return {0, {}};
  };
  Reader r(lazy);
  auto [line, err] = r.read_line();
  EXPECT_TRUE(err);
  EXPECT_LE(calls, 100);
}

TEST(Bufio, WriterMakesOneSinkCallPer4KiB) {
  CountingSink sink;
  Writer w(sink);
  std::string want;
  for (int i = 0; i < 10000; ++i) {
    char c = static_cast<char>('a' + i % 26);
    want += c;
    auto [n, err] = w.write(&c, 1);
    ASSERT_FALSE(err);
    ASSERT_EQ(n, 1u);
  }
  EXPECT_EQ(sink.calls, (std::vector<size_t>{4096, 4096}));
  EXPECT_EQ(w.buffered(), 10000u - 8192u);
  EXPECT_FALSE(w.flush());
  EXPECT_EQ(sink.calls.size(), 3u);
  EXPECT_EQ(w.buffered(), 0u);
  EXPECT_FALSE(w.flush());  // nothing buffered: no call
  EXPECT_EQ(sink.calls.size(), 3u);
  EXPECT_EQ(sink.got, want);
}

TEST(Bufio, WriterLargeWriteGoesStraightThrough) {
  CountingSink sink;
  Writer w(sink);
  std::string big(10000, 'L');
  auto [n, err] = w.write(big);
  EXPECT_FALSE(err);
  EXPECT_EQ(n, big.size());
  EXPECT_EQ(sink.calls, (std::vector<size_t>{10000}));
  EXPECT_EQ(w.buffered(), 0u);

  // With bytes buffered, a large write tops the buffer up, flushes it, then
  // sends the rest in one call; order is kept.
  ASSERT_FALSE(w.write("head").err);
  ASSERT_FALSE(w.write(big).err);
  EXPECT_EQ(sink.calls, (std::vector<size_t>{10000, 4096, 10004 - 4096}));
  EXPECT_EQ(sink.got, big + "head" + big);
}

TEST(Bufio, WriterErrorsAreSticky) {
  int calls = 0;
  auto failing = [&](const void*, size_t n) -> IOResult {
    ++calls;
    return {n / 2, Error(Errc::reset, "write")};
  };
  Writer w(failing, 16);
  ASSERT_FALSE(w.write("0123456789").err);  // buffered, no call yet
  EXPECT_EQ(w.flush(), Errc::reset);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(w.buffered(), 5u);  // what the sink did not take is kept
  EXPECT_EQ(w.write("more").err, Errc::reset);
  EXPECT_EQ(w.flush(), Errc::reset);
  EXPECT_EQ(w.error(), Errc::reset);
  EXPECT_EQ(calls, 1);  // never asked again
}

TEST(Bufio, WriterShortWriteIsAnError) {
  auto shorty = [](const void*, size_t n) -> IOResult { return {n - 1, {}}; };
  Writer w(shorty, 16);
  ASSERT_FALSE(w.write("abc").err);
  EXPECT_TRUE(w.flush());
  EXPECT_TRUE(w.write("x").err);
}

// Over a real connection, once per backend (tests/testutil.h).
class BufioConn : public mnptest::BackendTest {};
INSTANTIATE_TEST_SUITE_P(, BufioConn, ::testing::ValuesIn(mnptest::all_backends()),
                         mnptest::backend_test_name);

TEST_P(BufioConn, LinesOverTcp) {
  run_on_backend([] {
    auto [ln, err] = mnp::net::listen("tcp", "127.0.0.1:0");
    ASSERT_FALSE(err) << err.message();
    auto [c, derr] = mnp::net::dial("tcp", ln->addr().to_string());
    ASSERT_FALSE(derr) << derr.message();
    auto [s, aerr] = ln->accept();
    ASSERT_FALSE(aerr) << aerr.message();

    Writer out(*c);
    std::string big(6000, 'B');
    ASSERT_FALSE(out.write("GET / HTTP/1.1\r\nHost: x\r\n").err);
    ASSERT_FALSE(out.write(big + "\n\r\n").err);
    ASSERT_FALSE(out.flush());
    ASSERT_FALSE(c->close_write());

    Reader in(*s);
    std::vector<std::string> got;
    Error last;
    got = all_lines(in, &last);
    EXPECT_EQ(last, Errc::eof) << last.message();
    std::vector<std::string> want = {"GET / HTTP/1.1", "Host: x", big, ""};
    EXPECT_EQ(got, want);
  });
}

// Random text, random short reads, random buffer and line sizes: read_line
// must agree with a plain split on "\n" of the whole input.
TEST(Bufio, ReadLineMatchesASplitOfTheWholeInput) {
  std::mt19937 rng(20240611);
  for (int iter = 0; iter < 2000; ++iter) {
    std::string text;
    size_t len = rng() % 300;
    for (size_t i = 0; i < len; ++i) {
      unsigned k = rng() % 10;
      text += k == 0 ? '\n' : k == 1 ? '\r' : static_cast<char>('a' + k);
    }
    size_t max_line = 1 + rng() % 40;
    size_t size = 16 + rng() % 40;
    size_t chunk = 1 + rng() % 70;

    // The expected results: a line, or "!" for line_too_long.
    std::vector<std::string> want;
    size_t pos = 0;
    while (pos < text.size()) {
      size_t nl = text.find('\n', pos);
      std::string line = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
      if (nl != std::string::npos && !line.empty() && line.back() == '\r') line.pop_back();
      want.push_back(line.size() > max_line ? "!" : line);
      pos = nl == std::string::npos ? text.size() : nl + 1;
    }

    MemorySource src(text, chunk);
    Reader r(src, size, max_line);
    std::vector<std::string> got;
    for (;;) {
      auto [line, err] = r.read_line();
      if (err == Errc::eof) break;
      if (err) {
        ASSERT_EQ(err, Errc::line_too_long);
        got.push_back("!");
      } else {
        got.emplace_back(line);
      }
      ASSERT_LE(got.size(), want.size() + 1);
    }
    ASSERT_EQ(got, want) << "iteration " << iter << " max_line " << max_line << " size " << size
                         << " chunk " << chunk;
  }
}
