// Private helpers of src/stats.
#pragma once
#include <cstddef>
#include <stdexcept>
#include <string>

namespace phasemap::stats::detail {

inline void same_size(std::size_t a, std::size_t b, const char* what) {
    if (a != b) throw std::invalid_argument(std::string(what) + ": inputs differ in length");
}

}  // namespace phasemap::stats::detail
