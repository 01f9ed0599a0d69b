# ctest driver: install lsattn into a scratch prefix, then build and run the consumer against it
# (find_package), and once more through add_subdirectory.
# Arguments: -DSOURCE_DIR=... -DBINARY_DIR=... -DWORK_DIR=...
function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT code EQUAL 0)
    message(FATAL_ERROR "step failed (${code}): ${ARGN}\n${out}")
  endif()
  message(STATUS "${out}")
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
step(${CMAKE_COMMAND} --install ${BINARY_DIR} --prefix ${WORK_DIR}/prefix)
foreach(mode installed subdirectory)
  if(mode STREQUAL installed)
    set(extra -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
  else()
    set(extra -DLSATTN_SOURCE_DIR=${SOURCE_DIR})
  endif()
  step(${CMAKE_COMMAND} -S ${SOURCE_DIR}/test/consumer -B ${WORK_DIR}/${mode} ${extra} -DCMAKE_BUILD_TYPE=Release)
  step(${CMAKE_COMMAND} --build ${WORK_DIR}/${mode})
  step(${WORK_DIR}/${mode}/consumer ${SOURCE_DIR}/test/data/lra/basic)
endforeach()
