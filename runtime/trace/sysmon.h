// runtime/trace/sysmon — MNP_DEBUG settings and the monitor thread.
#pragma once

namespace mnp::rt {

struct DebugOptions {
  int schedtrace_ms = 0;  // 0: off
  int netpoll_ms = 0;
  int lockpark_ms = 100;  // report a G parked this long holding a Mutex; 0: off
  int hog_ms = 10;        // report a G running this long without a park; 0: off
  bool stacks = false;    // measure stack high-water marks
  bool quitexit = false;  // SIGQUIT exits after the dump, as Go does
};
extern DebugOptions debug_opts;

void parse_debug_env();  // MNP_DEBUG, at mnp::run
void sysmon_start();     // after the Ps exist
void sysmon_stop_and_join();
void print_stack_report();

}  // namespace mnp::rt
