// Test helpers around Engine::generate: a request with a prompt and a budget, and running
// requests with one RecordingSink each (the records in request order).
#pragma once
#include <string>
#include <vector>

#include "phasemap/capture/capture.hpp"
#include "phasemap/capture/run_sinks.hpp"

namespace pmtest {

inline std::vector<phasemap::capture::RunRecord> run(phasemap::capture::Engine& e,
                                                     const std::vector<phasemap::capture::Request>& reqs) {
    std::vector<phasemap::capture::RecordingSink> sinks(reqs.size());
    e.generate(reqs, [&](size_t i) -> phasemap::capture::RunSink& { return sinks[i]; });
    std::vector<phasemap::capture::RunRecord> out;
    for (auto& s : sinks) out.push_back(s.record);
    return out;
}

inline phasemap::capture::Request req(const std::string& prompt, int n_predict) {
    phasemap::capture::Request r;
    r.prompt = prompt;
    r.n_predict = n_predict;
    return r;
}

}  // namespace pmtest
