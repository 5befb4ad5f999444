// tests/main.cpp — the GoogleTest main of mnp-tests.
//
// Besides running the tests it checks CONFORMANCE.md 30 for the whole run:
// the fds open after every test has run are those open before. A leak fails
// the run (exit 1) and lists each extra fd with what it points to.
//
// It does not touch SIGPIPE: the runtime must keep writes from raising it on
// its own (ReadWrite.WriteToResetPeerRaisesNoSigpipe proves it).
#include <gtest/gtest.h>

#include <cstdio>

#include "testutil.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // The runtime leaves threads behind between runs: a death test must
  // re-execute the binary rather than fork a threaded process.
  GTEST_FLAG_SET(death_test_style, "threadsafe");

  const auto before = mnptest::open_fds();
  int rc = RUN_ALL_TESTS();
  const auto after = mnptest::open_fds();

  const auto leaked = mnptest::fds_added(before, after);
  if (after.size() != before.size() || !leaked.empty()) {
    std::fprintf(stderr,
                 "\nmnp-tests: FAILED: %zu fds open before the tests, %zu after. Leaked:\n%s"
                 "Closed (open before, gone after):\n%s",
                 before.size(), after.size(), mnptest::describe(leaked).c_str(),
                 mnptest::describe(mnptest::fds_added(after, before)).c_str());
    if (rc == 0) rc = 1;
  }
  return rc;
}
