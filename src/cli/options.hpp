// CLI11 validators of the validated option layer: every numeric flag gets `->check(in(domain))`
// (finite, in range, whole where it must be), every path flag `->check(kPath)` (not empty), every
// enum flag `->check(one_of({...}))`. The domains are phasemap/metrics/option_domains.hpp, which the
// manifest uses too. A rejected value is a usage error (exit 2) naming the flag.
#pragma once
#include <CLI/CLI.hpp>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <vector>

#include "phasemap/metrics/option_domains.hpp"

namespace phasemap::cli {

inline CLI::Validator in(const opt::Domain& d) {
    return CLI::Validator(
        [d](std::string& s) -> std::string {
            const char* b = s.c_str();
            char* end = nullptr;
            errno = 0;
            const double v = std::strtod(b, &end);
            if (s.empty() || end == b || *end != '\0') return "'" + s + "' is not a number";
            return opt::domain_problem(v, d);
        },
        opt::describe(d));
}

// A path option given as '' would silently mean "not given".
inline const CLI::Validator kPath(
    [](std::string& s) -> std::string { return s.empty() ? std::string("the path is empty") : std::string(); }, "PATH");

inline CLI::Validator one_of(std::vector<std::string> values) {
    std::string list;
    for (const auto& v : values) list += (list.empty() ? "" : ", ") + v;
    return CLI::Validator(
        [values, list](std::string& s) -> std::string {
            for (const auto& v : values)
                if (s == v) return {};
            return "'" + s + "' is not one of: " + list;
        },
        "{" + list + "}");
}

}  // namespace phasemap::cli
