// RunCommand: run a shell command line (the real binaries in CLI and e2e tests) and capture its
// stdout and exit code. Redirections (2>&1, < file) belong to the command line.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace vlmserve::testing {

struct CommandResult {
  int exit_code = -1;  // -1: killed by a signal or not started
  std::string out;
};

inline CommandResult RunCommand(const std::string& command_line) {
  CommandResult r;
  FILE* p = popen(command_line.c_str(), "r");
  EXPECT_NE(p, nullptr) << command_line;
  if (!p) return r;
  std::array<char, 4096> buf;
  for (size_t n; (n = fread(buf.data(), 1, buf.size(), p)) > 0;) r.out.append(buf.data(), n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace vlmserve::testing
