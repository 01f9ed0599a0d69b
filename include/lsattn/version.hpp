#pragma once

#define LSATTN_VERSION_MAJOR 0
#define LSATTN_VERSION_MINOR 1
#define LSATTN_VERSION_PATCH 0

namespace lsattn {
inline constexpr const char* version = "0.1.0";
}
