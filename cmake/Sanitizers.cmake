# VLMSERVE_SANITIZE: AddressSanitizer + UndefinedBehaviorSanitizer on all host code, -O1 -g (CI).
# nvcc forwards the same flags to the host compiler for the host half of .cu files; device code is
# checked by compute-sanitizer on the GPU machine instead (scripts/gpu/check.sh).
if(VLMSERVE_SANITIZE)
  set(_san -fsanitize=address -fsanitize=undefined -fno-omit-frame-pointer
           -fno-sanitize-recover=all)
  add_compile_options("$<$<COMPILE_LANGUAGE:CXX>:${_san};-O1;-g>")
  # -Xcompiler splits its argument at commas, so each flag is passed on its own.
  list(TRANSFORM _san PREPEND "-Xcompiler=" OUTPUT_VARIABLE _san_cuda)
  add_compile_options("$<$<COMPILE_LANGUAGE:CUDA>:${_san_cuda}>")
  add_link_options(-fsanitize=address,undefined)
endif()

# VLMSERVE_TSAN: ThreadSanitizer on all host code (scripts/test.sh's tsan stage: the engine's
# queue, workers, scheduler and streaming to sinks). Not with CUDA or ASan.
if(VLMSERVE_TSAN)
  if(VLMSERVE_SANITIZE)
    message(FATAL_ERROR "VLMSERVE_TSAN and VLMSERVE_SANITIZE cannot be combined")
  endif()
  add_compile_options("$<$<COMPILE_LANGUAGE:CXX>:-fsanitize=thread;-O1;-g;-fno-omit-frame-pointer>")
  add_link_options(-fsanitize=thread)
endif()

# VLMSERVE_FUZZ: coverage instrumentation for libFuzzer on all code (clang only); the fuzz
# executables add -fsanitize=fuzzer themselves (tests/CMakeLists.txt).
if(VLMSERVE_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "VLMSERVE_FUZZ=ON needs clang (configure with -DCMAKE_CXX_COMPILER=clang++)")
  endif()
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fsanitize=fuzzer-no-link>)
endif()
