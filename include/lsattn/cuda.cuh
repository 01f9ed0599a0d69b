#pragma once
// The CUDA backend. Include this (from a .cu file compiled by nvcc) to use
// LongShortAttention<lsattn::cuda, T, ...> with device views, a stream and a workspace.
#if !defined(__CUDACC__)
#error "lsattn/cuda.cuh must be compiled by nvcc (a .cu file); CPU users include <lsattn/lsattn.hpp>"
#endif

#include "lsattn/attention.hpp"
#include "lsattn/backend/cuda/bidirectional.cuh"
#include "lsattn/backend/cuda/causal.cuh"
#include "lsattn/backend/cuda/linear.cuh"
#include "lsattn/backend/cuda/vision.cuh"
#include "lsattn/backend/cuda/runtime.cuh"
