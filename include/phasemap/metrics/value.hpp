// Common vocabulary of the metric library: values that may be missing (with a reason) and the
// error type for inputs a metric cannot be computed on (METRICS.md §2–§6).
//
// Owns: Value owns its reason text. Throws: nothing here; MetricError is the type the metric functions throw.
#pragma once
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

namespace phasemap::metrics {

inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// A scalar metric value. When the metric is undefined for the input (e.g. ratio_norm with fewer
// than 3 ct values, §2.5) `v` is NaN and `missing_reason` says why, in words meant for the user
// (CLI, JSON, reports print it verbatim).
struct Value {
    double v = kNaN;
    std::string missing_reason = "not computed";

    bool ok() const noexcept { return missing_reason.empty(); }
    static Value of(double x) { return Value{x, {}}; }
    static Value missing(std::string why) { return Value{kNaN, std::move(why)}; }
};

// Thrown for inputs a metric cannot be computed on at all (too few layers, non-finite state
// values, inconsistent shapes) and for invalid options. The message names the problem.
struct MetricError : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};

}  // namespace phasemap::metrics
