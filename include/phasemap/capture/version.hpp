// phasemap version and the pinned llama.cpp commit it was built against.
//
// Owns: nothing; constant strings. Throws: nothing.
#pragma once
#include <string>

namespace phasemap {
std::string version();             // e.g. "0.1.0"
std::string llama_commit();        // full commit hash of the pinned llama.cpp
std::string version_string();      // "phasemap 0.1.0 (llama.cpp <commit>)"
}  // namespace phasemap
