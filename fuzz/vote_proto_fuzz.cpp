// fuzz/vote_proto_fuzz.cpp — libFuzzer target: the voting protocol's parser
// and formatter (demos/vote/vote_proto.h).
//
// Byte 0 picks what the rest is:
//
//   0  client lines, cut at '\n' (byte 1, bit 0: the ID line was seen).
//      An accepted line is exactly "ID <arg>", "<arg>" (ID only) or
//      "VOTE <arg>"; arg is non-empty, within its length limit, of the
//      allowed characters, and a view into the line. A refused one has a
//      reason.
//   1  a server line (without "\n"). Accepted => format_tally of the result
//      is the same bytes plus "\n" (a tally has one spelling), at most 64
//      options, total the sum. Refused => a reason.
//   2  a tally to build: per option, 1 byte of length, that many bytes of
//      name (mapped onto the option alphabet), 4 bytes of count. Formatting
//      it and parsing the result gives it back.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "vote_proto.h"

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "vote_proto_fuzz: property failed: %s\n", what);
    std::abort();
  }
}

bool valid(std::string_view s, size_t max, bool (*ok)(char)) {
  return !s.empty() && s.size() <= max && vote::all_of(s, ok);
}

void client_lines(std::string_view in, bool have_id) {
  while (!in.empty()) {
    size_t nl = in.find('\n');
    std::string_view line = in.substr(0, nl);
    vote::Request r = vote::parse_request(line, have_id);
    if (r.kind == vote::ReqKind::bad) {
      check(r.error != nullptr && std::strlen(r.error) > 0, "a refused line has a reason");
    } else {
      check(r.arg.data() >= line.data() && r.arg.data() + r.arg.size() == line.data() + line.size(),
            "arg is the tail of the line");
      if (r.kind == vote::ReqKind::id) {
        check(!have_id, "an ID only as the first line");
        check(valid(r.arg, vote::kMaxName, vote::is_name_char), "ID grammar");
        check(line == r.arg || line == "ID " + std::string(r.arg), "ID line shape");
      } else {
        check(have_id, "a vote only after the ID");
        check(valid(r.arg, vote::kMaxOption, vote::is_option_char), "option grammar");
        check(line == "VOTE " + std::string(r.arg), "VOTE line shape");
      }
      have_id = true;
    }
    if (nl == std::string_view::npos) break;
    in.remove_prefix(nl + 1);
  }
}

void server_line(std::string_view line) {
  vote::Tally t;
  const char* why = nullptr;
  if (!vote::parse_tally(line, &t, &why)) {
    check(why != nullptr && std::strlen(why) > 0, "a refused tally has a reason");
    return;
  }
  check(t.size() <= vote::kMaxOptions, "at most 64 options");
  check(vote::format_tally(t) == std::string(line) + "\n", "one spelling per tally");
}

void build_tally(const uint8_t* p, size_t n) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
  vote::Tally t;
  while (n > 0 && t.size() < vote::kMaxOptions) {
    size_t len = 1 + p[0] % vote::kMaxOption;
    p++, n--;
    if (n < len + 4) break;
    std::string name;
    for (size_t i = 0; i < len; i++) name += kAlphabet[p[i] % (sizeof kAlphabet - 1)];
    p += len, n -= len;
    uint32_t count;
    std::memcpy(&count, p, 4);
    p += 4, n -= 4;
    t[name] = count;
  }
  std::string line = vote::format_tally(t);
  check(!line.empty() && line.back() == '\n', "a tally ends in \\n");
  vote::Tally back;
  const char* why = nullptr;
  check(vote::parse_tally(std::string_view(line).substr(0, line.size() - 1), &back, &why),
        "a formatted tally parses");
  check(back == t, "format then parse gives the tally back");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  std::string_view rest(reinterpret_cast<const char*>(data) + 2, size - 2);
  switch (data[0] % 3) {
    case 0:
      client_lines(rest, data[1] & 1);
      break;
    case 1:
      server_line(rest);
      break;
    default:
      build_tally(data + 2, size - 2);
      break;
  }
  return 0;
}
