#pragma once
// One include for users of the CPU library: core types, policies, the attention, the CPU
// backend and the published layers.
#include "lsattn/attention.hpp"
#include "lsattn/core/backend.hpp"
#include "lsattn/core/error.hpp"
#include "lsattn/core/tensor.hpp"
#include "lsattn/cpu.hpp"
#include "lsattn/models/causal.hpp"
#include "lsattn/models/causal_lm.hpp"
#include "lsattn/models/ls_heads.hpp"
#include "lsattn/models/lra.hpp"
#include "lsattn/models/vision.hpp"
#include "lsattn/version.hpp"
