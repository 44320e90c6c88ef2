// Test helpers around Engine::generate: the stories260K model loaded once, a request with a
// prompt and a budget, and running requests with one RecordingSink each (the records in request
// order).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "phasemap/capture/capture.hpp"
#include "phasemap/capture/run_sinks.hpp"
#include "support/paths.hpp"

namespace pmtest {

// ../shared/models/stories260K.gguf, loaded once per test binary; nullptr when it is absent.
inline std::shared_ptr<phasemap::capture::Model> stories() {
    static std::shared_ptr<phasemap::capture::Model> m;
    const auto p = shared_model("stories260K.gguf");
    if (p.empty()) return nullptr;
    if (!m) m = phasemap::capture::Model::load(p);
    return m;
}

#define NEED_STORIES()                                                                  \
    auto model = pmtest::stories();                                                     \
    if (!model) GTEST_SKIP() << "../shared/models/stories260K.gguf is not present"
// The same model as a path (`model_path`), for code that loads it itself (the run plan).
#define NEED_STORIES_PATH()                                                             \
    const std::string model_path = pmtest::shared_model("stories260K.gguf").string();   \
    if (model_path.empty()) GTEST_SKIP() << "../shared/models/stories260K.gguf is not present"

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
