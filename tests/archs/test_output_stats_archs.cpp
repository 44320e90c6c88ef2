// The output statistics in the graph (--output-stats graph, src/capture/output_stats.hpp) on
// every random-weight architecture the sweep's fixture writes: greedy runs of two prompts on two
// slots, graph against host — the same tokens, every statistic within 1e-6 relative of the
// float64 host reference. Architectures whose models llama.cpp cannot generate from at all
// (no logits, e.g. encoder-only) are listed and must stay a minority.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "phasemap/capture/capture.hpp"
#include "phasemap/capture/run_sinks.hpp"

namespace {

namespace fs = std::filesystem;
using namespace phasemap::capture;

double rel(double a, double b) { return a == b ? 0.0 : std::abs(a - b) / std::abs(b); }

std::vector<RunRecord> run(Engine& e, const std::vector<Request>& reqs) {
    std::vector<RecordingSink> sinks(reqs.size());
    e.generate(reqs, [&](size_t i) -> RunSink& { return sinks[i]; });
    std::vector<RunRecord> out;
    for (auto& s : sinks) out.push_back(s.record);
    return out;
}

}  // namespace

TEST(OutputStatsArchs, GraphEqualsHostOnEveryArchitecture) {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(PHASEMAP_ARCHS_MODELS))
        if (e.path().extension() == ".gguf") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    ASSERT_GT(files.size(), 50u) << "sweep models missing in " << PHASEMAP_ARCHS_MODELS;
    int compared = 0;
    double worst = 0;
    std::string worst_at, skipped;
    for (const fs::path& f : files) {
        const std::string stem = f.stem().string();
        std::shared_ptr<Model> model;
        std::vector<RunRecord> g, h;
        try {
            ModelOptions mo;
            mo.allow_unverified_architecture = true;  // the statistics do not depend on capture
            model = Model::load(f, mo);
            std::vector<Request> reqs(2);
            reqs[0].prompt = "Hello world, this is";
            reqs[1].prompt = "The quick brown fox";
            for (Request& r : reqs) r.n_predict = 6;
            EngineOptions o;
            o.layers = "none";
            o.n_ctx = 256;
            o.n_parallel = 2;
            o.output_stats = OutputStats::graph;
            Engine eg(model, o);
            ASSERT_EQ(eg.facts().output_stats, "graph") << stem;
            o.output_stats = OutputStats::host;
            Engine eh(model, o);
            g = run(eg, reqs);
            h = run(eh, reqs);
        } catch (const std::exception& e) {
            skipped += " " + stem;
            continue;
        }
        ++compared;
        for (size_t i = 0; i < g.size(); ++i) {
            ASSERT_EQ(g[i].tokens.size(), h[i].tokens.size()) << stem << " prompt " << i;
            for (size_t t = 0; t < g[i].tokens.size(); ++t) {
                const auto& a = g[i].tokens[t];
                const auto& b = h[i].tokens[t];
                EXPECT_EQ(a.id, b.id) << stem << " prompt " << i << " token " << t;
                for (const auto& [name, x, y] : {std::tuple{"entropy", a.stats.entropy, b.stats.entropy},
                                                 std::tuple{"top1", a.stats.top1, b.stats.top1},
                                                 std::tuple{"margin", a.stats.margin, b.stats.margin},
                                                 std::tuple{"surprisal", a.stats.surprisal, b.stats.surprisal}}) {
                    const double r = rel(x, y);
                    EXPECT_LE(r, 1e-6) << stem << " prompt " << i << " token " << t << " " << name << ": graph " << x << ", host " << y;
                    if (r > worst) {
                        worst = r;
                        worst_at = stem + " " + name;
                    }
                }
            }
        }
    }
    std::cout << compared << " architectures compared, worst relative error " << worst << " (" << worst_at << "); not generated:"
              << (skipped.empty() ? " none" : skipped) << "\n";
    EXPECT_GE(compared, int(files.size() * 3 / 4));
}
