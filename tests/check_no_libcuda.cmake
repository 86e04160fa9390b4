# ctest helper: fail if BINARY links libcuda (the driver library) directly.
execute_process(COMMAND ldd ${BINARY} OUTPUT_VARIABLE deps RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "ldd ${BINARY} failed")
endif()
if(deps MATCHES "libcuda\\.so")
  message(FATAL_ERROR "${BINARY} links libcuda directly:\n${deps}")
endif()
message(STATUS "no libcuda in: ${deps}")
