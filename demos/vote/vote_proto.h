// demos/vote/vote_proto.h — the voting protocol's lines, parsed and formatted
// in one place (the server, the load client and fuzz/vote_proto_fuzz.cpp).
//
// Client -> server, one line each (bufio::Reader has already cut the line
// and its "\n" or "\r\n", and refused one longer than its max_line):
//
//   first line   "ID <name>" or just "<name>"   name: 1..64 of [A-Za-z0-9._-]
//   then         "VOTE <option>"                option: 1..16 of [A-Za-z0-9_-]
//
// Server -> client, after every vote:
//
//   "TALLY A=120 B=64 total=184"
//
// options in ascending byte order, each once, counts in decimal without
// leading zeros (0 is "0"), and total equal to their sum: a tally has exactly
// one spelling, so format_tally(parse_tally(s)) == s for every s that parses
// (the fuzzer's main property). Anything else is an error with a reason the
// server sends back ("ERR <reason>"); nothing is guessed.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace vote {

constexpr size_t kMaxName = 64;
constexpr size_t kMaxOption = 16;
// The server keeps one counter per option: without a cap a client could
// grow its map without bound, one new option per vote.
constexpr size_t kMaxOptions = 64;

enum class ReqKind { id, vote, bad };

struct Request {
  ReqKind kind = ReqKind::bad;
  std::string_view arg;         // the name or the option (a view into the line)
  const char* error = nullptr;  // kind == bad: why, for "ERR <reason>"
};

inline bool is_option_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}
inline bool is_name_char(char c) {
  return is_option_char(c) || c == '.';
}

inline bool all_of(std::string_view s, bool (*ok)(char)) {
  for (char c : s)
    if (!ok(c)) return false;
  return true;
}

// One client line. have_id: the client's ID line has been seen already.
inline Request parse_request(std::string_view line, bool have_id) {
  Request r;
  if (!have_id) {
    std::string_view name = line.starts_with("ID ") ? line.substr(3) : line;
    if (name.empty()) {
      r.error = "empty ID";
    } else if (name.size() > kMaxName) {
      r.error = "ID longer than 64 bytes";
    } else if (!all_of(name, is_name_char)) {
      r.error = "ID may hold only letters, digits, '.', '_' and '-'";
    } else {
      r.kind = ReqKind::id;
      r.arg = name;
    }
    return r;
  }
  if (!line.starts_with("VOTE ")) {
    r.error = "expected \"VOTE <option>\"";
    return r;
  }
  std::string_view option = line.substr(5);
  if (option.empty()) {
    r.error = "empty option";
  } else if (option.size() > kMaxOption) {
    r.error = "option longer than 16 bytes";
  } else if (!all_of(option, is_option_char)) {
    r.error = "option may hold only letters, digits, '_' and '-'";
  } else {
    r.kind = ReqKind::vote;
    r.arg = option;
  }
  return r;
}

using Tally = std::map<std::string, uint64_t>;

// "TALLY A=120 B=64 total=184\n" (total is the sum of the counts).
inline std::string format_tally(const Tally& tally) {
  std::string s = "TALLY";
  uint64_t total = 0;
  for (const auto& [option, n] : tally) {
    s += ' ';
    s += option;
    s += '=';
    s += std::to_string(n);
    total += n;
  }
  return s + " total=" + std::to_string(total) + "\n";
}

// A decimal count: no sign, no leading zero, fits in 64 bits.
inline bool parse_count(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 20 || (s.size() > 1 && s[0] == '0')) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

// A tally line without its "\n". False, with *error set, if it is not the one
// spelling format_tally would give.
inline bool parse_tally(std::string_view line, Tally* out, const char** error) {
  auto fail = [&](const char* why) {
    *error = why;
    return false;
  };
  out->clear();
  if (!line.starts_with("TALLY ")) return fail("expected \"TALLY \"");
  line.remove_prefix(6);
  uint64_t sum = 0;
  std::string_view last;
  for (;;) {
    size_t sp = line.find(' ');
    std::string_view field = line.substr(0, sp);
    size_t eq = field.find('=');
    if (eq == std::string_view::npos) return fail("a field without '='");
    std::string_view key = field.substr(0, eq);
    uint64_t n = 0;
    if (!parse_count(field.substr(eq + 1), &n)) return fail("a count that is not a plain decimal");
    if (sp == std::string_view::npos) {  // the last field: the total
      if (key != "total") return fail("the last field must be total=");
      if (n != sum) return fail("total is not the sum of the counts");
      return true;
    }
    if (key.empty() || key.size() > kMaxOption || !all_of(key, is_option_char))
      return fail("a malformed option");
    if (!out->empty() && key <= last) return fail("options out of order or repeated");
    if (out->size() == kMaxOptions) return fail("more than 64 options");
    if (n > UINT64_MAX - sum) return fail("total overflows");
    sum += n;
    last = key;
    out->emplace(std::string(key), n);
    line.remove_prefix(sp + 1);
  }
}

}  // namespace vote
