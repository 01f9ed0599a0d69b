# LSATTN_ENABLE_CUDA: OFF, ON (nvcc required) or AUTO (used when found). Sets LSATTN_CUDA_ENABLED.
set(LSATTN_CUDA_ENABLED OFF)
if(LSATTN_ENABLE_CUDA)
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    # No GPU on the build machine: `native` would fail; target Ampere and Hopper by default.
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 80 90)
    endif()
    enable_language(CUDA)
    # CMake 3.25 does not know nvcc 13's C++20 flag; tell it.
    if(NOT "cuda_std_20" IN_LIST CMAKE_CUDA_COMPILE_FEATURES)
      set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
      set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
    endif()
    set(CMAKE_CUDA_STANDARD 20)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    find_package(CUDAToolkit REQUIRED)
    set(LSATTN_CUDA_ENABLED ON)
    message(STATUS "lsattn: CUDA backend enabled (${CMAKE_CUDA_COMPILER}, architectures ${CMAKE_CUDA_ARCHITECTURES})")
  elseif(LSATTN_ENABLE_CUDA STREQUAL "AUTO")
    message(STATUS "lsattn: no CUDA compiler found, the CUDA tests are not built")
  else()
    message(FATAL_ERROR "LSATTN_ENABLE_CUDA=ON but no CUDA compiler (nvcc) was found")
  endif()
endif()

# Bundle-ready CUDA programs (tools/gpu_bundle.sh): the CUDA runtime linked statically, and a
# RUNPATH of $ORIGIN/../lib, where the bundle puts the other shared libraries it ships.
option(LSATTN_CUDA_STATIC_RUNTIME "Link the CUDA runtime statically; give this project's CUDA programs a RUNPATH of \$ORIGIN/../lib" OFF)

# This project's CUDA programs (tests, benchmarks, examples): warnings are errors.
function(lsattn_cuda_program target)
  target_compile_options(${target} PRIVATE -Werror=all-warnings -Xcompiler=-Wall,-Wextra,-Werror)
  if(LSATTN_CUDA_STATIC_RUNTIME)
    set_target_properties(${target} PROPERTIES BUILD_RPATH "\$ORIGIN/../lib")
  endif()
endfunction()
