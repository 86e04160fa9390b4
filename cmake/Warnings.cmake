# Warnings for host C++ code. Kept as an interface target so third-party code is not affected.
add_library(vlmserve_warnings INTERFACE)
target_compile_options(vlmserve_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wno-unused-parameter>)
