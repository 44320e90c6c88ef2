// CLI verb registry: each verb lives in one file of src/cli and registers itself
// with a static `Verb` object; main() builds the CLI11 app from the registry.
#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace phasemap::cli {

// Error with a message for the user, for a check a verb makes itself; main() prints
// "phasemap: error: <what>" and exits 1 — as it does for any std::exception from the library,
// which verbs let through unwrapped.
struct UserError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct Verb {
    // `setup` adds options to the sub-command and returns the action to run after parsing.
    using Setup = std::function<std::function<int()>(CLI::App&)>;
    Verb(std::string name, std::string help, Setup setup);
    std::string name, help;
    Setup setup;
};

std::vector<Verb*>& verbs();

}  // namespace phasemap::cli
