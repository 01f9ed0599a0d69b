#pragma once
// The CPU backend (Eigen, OpenMP). Include this to use LongShortAttention<lsattn::cpu, ...>.
#include "lsattn/attention.hpp"
#include "lsattn/backend/cpu/bidirectional.hpp"
#include "lsattn/backend/cpu/causal.hpp"
#include "lsattn/backend/cpu/compression.hpp"
#include "lsattn/backend/cpu/vision.hpp"
#include "lsattn/backend/cpu/linear.hpp"
