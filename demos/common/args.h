// demos/common/args.h — the demos' command lines: "--name VALUE" (or
// "--name=VALUE") options, each with its range, parsed strictly.
//
//   demo::Args args("acceptq", "[--backlog N] [--clients N] [--pause SEC]");
//   args.num("--backlog", &f.backlog, 1, 65535)
//       .num("--clients", &f.clients, 1, 1000)
//       .num("--pause", &f.pause, 0.0, 30.0);
//   if (!args.parse(argc, argv)) return 2;
//
// Anything else — an unknown option, a missing value, "12abc", a number out
// of its range, a string not among its choices — is one line on stderr
// naming the option and what it wants, then the usage line; parse() returns
// false and the demo exits 2. (std::atoi would have made "abc" a 0.)
#pragma once

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace demo {

class Args {
 public:
  Args(const char* program, const char* usage) : program_(program), usage_(usage) {}

  Args& num(const char* name, int* out, long lo, long hi) {
    return add(name, [=, this](const char* v) {
      char* end = nullptr;
      errno = 0;
      long x = std::strtol(v, &end, 10);
      if (errno || end == v || *end || x < lo || x > hi)
        return fail(name, v, "an integer in " + std::to_string(lo) + ".." + std::to_string(hi));
      *out = static_cast<int>(x);
      return true;
    });
  }
  Args& num(const char* name, size_t* out, size_t lo, size_t hi) {
    return add(name, [=, this](const char* v) {
      char* end = nullptr;
      errno = 0;
      unsigned long long x = std::strtoull(v, &end, 10);
      if (errno || end == v || *end || *v == '-' || x < lo || x > hi)
        return fail(name, v, "an integer in " + std::to_string(lo) + ".." + std::to_string(hi));
      *out = static_cast<size_t>(x);
      return true;
    });
  }
  // lo_open: the value must be above lo, not equal to it (a rate, a duration).
  Args& num(const char* name, double* out, double lo, double hi, bool lo_open = false) {
    return add(name, [=, this](const char* v) {
      char* end = nullptr;
      errno = 0;
      double x = std::strtod(v, &end);
      if (errno || end == v || *end || !std::isfinite(x) || x < lo || (lo_open && x == lo) ||
          x > hi) {
        char want[96];
        std::snprintf(want, sizeof want, "a number in %s%g..%g", lo_open ? "(" : "", lo, hi);
        return fail(name, v, want);
      }
      *out = x;
      return true;
    });
  }
  Args& str(const char* name, std::string* out) {
    return add(name, [=](const char* v) {
      *out = v;
      return true;
    });
  }
  Args& choice(const char* name, std::string* out, std::initializer_list<const char*> choices) {
    std::vector<std::string> cs(choices.begin(), choices.end());
    return add(name, [=, this](const char* v) {
      for (const auto& c : cs) {
        if (c == v) {
          *out = v;
          return true;
        }
      }
      std::string want = "one of";
      for (const auto& c : cs) want += " " + c;
      return fail(name, v, want);
    });
  }

  bool parse(int argc, char** argv) {
    for (int i = 1; i < argc; i++) {
      std::string_view a = argv[i];
      std::string value;
      const char* v = nullptr;
      if (size_t eq = a.find('='); a.starts_with("--") && eq != std::string_view::npos) {
        value = std::string(a.substr(eq + 1));
        a = a.substr(0, eq);
        v = value.c_str();
      }
      const Opt* opt = nullptr;
      for (const auto& o : opts_)
        if (a == o.name) opt = &o;
      if (!opt) {
        std::fprintf(stderr, "%s: unknown option '%s'\n", program_, argv[i]);
        return usage();
      }
      if (!v) {
        if (i + 1 >= argc) {
          std::fprintf(stderr, "%s: %s needs a value\n", program_, opt->name);
          return usage();
        }
        v = argv[++i];
      }
      if (!opt->set(v)) return usage();
    }
    return true;
  }

 private:
  struct Opt {
    const char* name;
    std::function<bool(const char*)> set;
  };

  Args& add(const char* name, std::function<bool(const char*)> set) {
    opts_.push_back({name, std::move(set)});
    return *this;
  }
  bool fail(const char* name, const char* v, const std::string& want) const {
    std::fprintf(stderr, "%s: %s '%s': want %s\n", program_, name, v, want.c_str());
    return false;
  }
  bool usage() const {
    std::fprintf(stderr, "usage: %s %s\n", program_, usage_);
    return false;
  }

  const char* program_;
  const char* usage_;
  std::vector<Opt> opts_;
};

}  // namespace demo
