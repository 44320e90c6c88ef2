// The metric registry: one table listing every metric once, with its exact spec name, unit, axis,
// description, the options it reads and how to read its value from a RunSummary. CLI, store and
// report enumerate metrics from here.
//
// Adding a metric: compute it in one file (src/metrics/<name>.cpp, exposed through RunSummary),
// add one entry to the table in src/metrics/registry.cpp, add one test in tests/metrics/.
// (The table is a single array rather than self-registering static objects because the library
// is static: objects nobody references would be dropped by the linker.)
//
// Owns: the registry is a static table. Lifetimes: the span, pointers and string_views returned refer to it
// and live for the whole process. Throws: nothing; an unknown name gives nullptr.
#pragma once
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "phasemap/metrics/quantile.hpp"
#include "phasemap/metrics/value.hpp"

namespace phasemap::metrics {

struct RunSummary;

enum class Axis { token, layer, output, run, routing };  // routing: MoE routing (docs/metrics-moe.md)
std::string_view to_string(Axis a);

// How a metric's value is shaped.
enum class Shape {
    per_token,        // one number per generated token (NaN where undefined)
    per_token_label,  // one label per generated token
    scalar,           // one number per run (may be missing with a reason)
    label,            // one label per run (may be missing with a reason)
    table,            // a structured result; read it from RunSummary directly
};
std::string_view to_string(Shape s);

struct MetricInfo {
    std::string_view name{};         // exact METRICS.md name
    std::string_view unit{};         // "1" for dimensionless
    Axis axis = Axis::run;
    Shape shape = Shape::table;
    std::string_view spec{};         // METRICS.md section, e.g. "§2.5"
    std::string_view description{};
    std::vector<std::string_view> options{};  // names (as in options_record) of the options it reads
    std::string_view limen_name{};   // key of the same quantity in LIMEN summary.json; empty if none

    // Accessors; exactly the one matching `shape` is set (none for `table`).
    std::vector<double> (*per_token)(const RunSummary&) = nullptr;           // size T
    std::vector<std::string> (*per_token_label)(const RunSummary&) = nullptr;// size T ("" when undefined)
    Value (*scalar)(const RunSummary&) = nullptr;
    // Label accessor: returns the label, or a Value-like missing reason through `why` when undefined.
    std::string (*label)(const RunSummary&, std::string& why) = nullptr;
};

// §3-style summary (n, median, q1, q3; non-finite dropped) of one per-token metric.
struct NamedSummary {
    std::string_view name;        // registry name
    std::string_view limen_name;  // LIMEN summary.json key, empty if none
    Summary summary;
};
// Summaries of every per_token metric of the registry, in registry order: what a LIMEN-style
// summary.json holds (the entries with a limen_name) and more.
std::vector<NamedSummary> per_token_summaries(const RunSummary& r);

// All metrics, in a stable order (token, layer, output, run, routing).
std::span<const MetricInfo> metric_registry();
// The entry called `name`, or nullptr.
const MetricInfo* find_metric(std::string_view name);

}  // namespace phasemap::metrics
