// Analysis printed right after generation (`generate --analyze`), shared with `analyze`.
#pragma once
#include <CLI/CLI.hpp>

#include <memory>

#include "phasemap/run_sinks.hpp"

namespace phasemap::cli {

class AnalyzeHook {
public:
    AnalyzeHook();
    ~AnalyzeHook();
    AnalyzeHook(AnalyzeHook&&) noexcept;
    AnalyzeHook& operator=(AnalyzeHook&&) noexcept;
    void add_options(CLI::App& app);   // --analyze and the metric options
    bool enabled() const;
    void run(const capture::RunRecord& r, size_t n_runs);   // prints the summary

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace phasemap::cli
