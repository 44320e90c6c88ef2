// The random-weight models the sweep's fixture (ctest archs.models) writes, by file stem.
// PHASEMAP_ARCHS_MODELS is defined for the archs test targets (cmake/archs.cmake).
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>

namespace pmtest {

inline std::filesystem::path archs_model(const std::string& stem) {
    const std::filesystem::path p = std::filesystem::path(PHASEMAP_ARCHS_MODELS) / (stem + ".gguf");
    if (!std::filesystem::exists(p))
        throw std::runtime_error("sweep model " + p.string() + " is missing (ctest runs archs.models first)");
    return p;
}

}  // namespace pmtest
