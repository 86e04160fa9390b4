# Third-party dependencies, all from the distribution's packages (scripts/bootstrap.sh installs them).
#
# gRPC and protobuf are found through pkg-config plus find_program(grpc_cpp_plugin): the CMake config
# files Debian ships for gRPC are known to be broken on some distributions.

# GoogleTest: the installed package, or (plan B on the GPU machine) a source tree built here.
find_package(GTest QUIET)
if(NOT GTest_FOUND)
  if(VLMSERVE_GTEST_SOURCE_DIR AND EXISTS "${VLMSERVE_GTEST_SOURCE_DIR}/CMakeLists.txt")
    set(INSTALL_GTEST OFF CACHE BOOL "" FORCE)
    set(BUILD_GMOCK OFF CACHE BOOL "" FORCE)
    add_subdirectory(${VLMSERVE_GTEST_SOURCE_DIR} ${CMAKE_BINARY_DIR}/_gtest EXCLUDE_FROM_ALL)
    if(NOT TARGET GTest::gtest)  # GoogleTest ≥ 1.11 defines these aliases itself
      add_library(GTest::gtest ALIAS gtest)
      add_library(GTest::gtest_main ALIAS gtest_main)
    endif()
  else()
    message(FATAL_ERROR "GoogleTest not found: install libgtest-dev (scripts/bootstrap.sh does) or "
                        "pass -DVLMSERVE_GTEST_SOURCE_DIR=<googletest source tree>")
  endif()
endif()

if(VLMSERVE_MINIMAL)
  return()
endif()

find_package(PkgConfig REQUIRED)
pkg_check_modules(GRPCPP REQUIRED IMPORTED_TARGET grpc++)
pkg_check_modules(PROTOBUF REQUIRED IMPORTED_TARGET protobuf)
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)  # the metrics endpoint
find_program(VLMSERVE_PROTOC protoc REQUIRED)
find_program(VLMSERVE_GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)
# Server reflection has no pkg-config file in Debian's packages: the library itself.
find_library(VLMSERVE_GRPCPP_REFLECTION grpc++_reflection REQUIRED)
find_package(spdlog REQUIRED)
find_package(OpenSSL REQUIRED)  # TLS material checks, API-key digests (server/)
find_package(PNG REQUIRED)
find_package(JPEG REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(CLI11 QUIET)
if(NOT CLI11_FOUND)
  # Debian's libcli11-dev is header-only; some versions ship no CMake config.
  find_path(CLI11_INCLUDE_DIR CLI/CLI.hpp REQUIRED)
  add_library(CLI11::CLI11 INTERFACE IMPORTED)
  target_include_directories(CLI11::CLI11 INTERFACE ${CLI11_INCLUDE_DIR})
endif()
message(STATUS "vlmserve: grpc++ ${GRPCPP_VERSION}, protobuf ${PROTOBUF_VERSION}, "
               "spdlog ${spdlog_VERSION}, nlohmann_json ${nlohmann_json_VERSION}, "
               "libpng ${PNG_VERSION_STRING}, libjpeg ${JPEG_VERSION}")
