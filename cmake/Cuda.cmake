# CUDA detection. VLMSERVE_CUDA = AUTO (ON when nvcc is found) / ON (error if missing) / OFF.
#
# Architectures: a developer or CI build compiles for exactly one architecture to keep build time
# down: `native` when a GPU is visible at configure time, otherwise 90 (H100/H200). Release and
# Docker builds pass the list explicitly:
#   -DCMAKE_CUDA_ARCHITECTURES="80;89;90"      # A100, L4/L40/RTX 40xx, H100/H200
# Never `all` or `all-major`: compile time grows with every architecture.
#
# The CUDA runtime is linked statically (CMake's default), cuBLASLt dynamically, and libcuda is never
# linked: binaries start on machines without a driver and GPU tests skip there.
set(VLMSERVE_HAVE_CUDA OFF)
if(NOT VLMSERVE_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      execute_process(COMMAND nvidia-smi -L RESULT_VARIABLE _smi_rc OUTPUT_VARIABLE _smi_out
                      ERROR_QUIET)
      if(_smi_rc EQUAL 0 AND _smi_out MATCHES "GPU 0")
        set(CMAKE_CUDA_ARCHITECTURES native)
      else()
        set(CMAKE_CUDA_ARCHITECTURES 90)
      endif()
    endif()
    enable_language(CUDA)
    # CMake 3.25 does not know nvcc's C++20 flag; device code and the headers it includes stay C++17.
    set(CMAKE_CUDA_STANDARD 17)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    find_package(CUDAToolkit REQUIRED)
    if(VLMSERVE_LINEINFO)
      add_compile_options($<$<COMPILE_LANGUAGE:CUDA>:-lineinfo>)
    endif()
    set(VLMSERVE_HAVE_CUDA ON)
  elseif(VLMSERVE_CUDA STREQUAL "ON")
    message(FATAL_ERROR "VLMSERVE_CUDA=ON but no CUDA compiler (nvcc) was found. Install the CUDA "
                        "toolkit, put nvcc on PATH (or set CUDACXX), or configure with -DVLMSERVE_CUDA=OFF.")
  else()
    message(STATUS "vlmserve: nvcc not found, building without CUDA (VLMSERVE_CUDA=AUTO)")
  endif()
endif()
