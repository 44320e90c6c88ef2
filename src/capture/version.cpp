#include "phasemap/capture/version.hpp"

namespace phasemap {
std::string version() { return PHASEMAP_VERSION; }
std::string llama_commit() { return PHASEMAP_LLAMA_COMMIT; }
std::string version_string() { return "phasemap " + version() + " (llama.cpp " + llama_commit() + ")"; }
}  // namespace phasemap
