// The per-token output statistics computed in the graph (EngineOptions::output_stats = graph,
// src/capture/output_stats.hpp) against the host reference (metrics::token_prob_stats, float64):
// every statistic within 1e-6 relative, the same top-1 (greedy) token — on constructed logits
// (ties, near-zero entropy, the vocabulary sizes of real models) through the same ggml ops on
// the CPU backend, and through the engine on stories260K. The random-weight architectures:
// tests/archs/test_output_stats_archs.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "phasemap/capture/capture.hpp"
#include "phasemap/capture/run_sinks.hpp"
#include "phasemap/metrics/token_stats.hpp"
#include "support/generation.hpp"

using namespace phasemap::capture;
using phasemap::metrics::kChosenIsTop1;
using phasemap::metrics::token_prob_stats;
using phasemap::metrics::TokenProbStats;
using pmtest::req;
using pmtest::run;

namespace {

constexpr double kTol = 1e-6;

double rel(double a, double b) { return a == b ? 0.0 : std::abs(a - b) / std::abs(b); }

// Each statistic of the graph path `g` against the host's `h`; returns the worst relative error.
double compare(const TokenProbStats& g, const TokenProbStats& h, const std::string& where) {
    EXPECT_EQ(g.top1_id, h.top1_id) << where;
    double worst = 0;
    for (const auto& [name, a, b] : {std::tuple{"entropy", g.entropy, h.entropy}, std::tuple{"top1", g.top1, h.top1},
                                     std::tuple{"margin", g.margin, h.margin}, std::tuple{"surprisal", g.surprisal, h.surprisal}}) {
        const double r = rel(a, b);
        EXPECT_LE(r, kTol) << where << " " << name << ": graph " << a << ", host " << b;
        worst = std::max(worst, r);
    }
    return worst;
}

// The graph's statistics of the rows against the host's, row by row; the worst relative error.
double compare_rows(const std::vector<float>& rows, int64_t V, const std::string& what) {
    const std::vector<TokenProbStats> g = output_stats_on_cpu(rows, V, 2);
    EXPECT_EQ(g.size(), rows.size() / size_t(V));
    double worst = 0;
    for (size_t r = 0; r < g.size(); ++r) {
        const TokenProbStats h = token_prob_stats(std::span<const float>(rows.data() + r * size_t(V), size_t(V)), kChosenIsTop1);
        worst = std::max(worst, compare(g[r], h, what + " row " + std::to_string(r)));
    }
    return worst;
}

}  // namespace

TEST(OutputStats, RandomLogitsAtRealVocabularySizes) {
    // Gaussian logits of several spreads and offsets over the vocabularies of stories (512),
    // Llama-2 (32000) and Qwen2.5 (151936).
    std::mt19937 rng(7);
    double worst = 0;
    for (int64_t V : {512, 32000, 151936}) {
        std::vector<float> rows;
        for (double sigma : {0.5, 2.0, 6.0, 20.0})
            for (double offset : {0.0, 37.25, -81.5}) {
                std::normal_distribution<double> n(offset, sigma);
                for (int64_t i = 0; i < V; ++i) rows.push_back(float(n(rng)));
            }
        worst = std::max(worst, compare_rows(rows, V, "V=" + std::to_string(V)));
    }
    std::cout << "random logits: worst relative error " << worst << "\n";
}

TEST(OutputStats, TiedMaximaPickTheFirstAndHaveNoMargin) {
    const int64_t V = 32000;
    std::mt19937 rng(3);
    std::normal_distribution<float> n(0.0f, 2.0f);
    std::vector<float> rows;
    auto row = [&] {
        for (int64_t i = 0; i < V; ++i) rows.push_back(std::min(n(rng), 9.0f));
        return rows.data() + rows.size() - size_t(V);
    };
    float* a = row();  // two maxima: the first (7) is the pick, the margin exactly 0
    a[3000] = a[7] = 12.5f;
    float* b = row();  // three maxima, the last at the end of the vocabulary
    b[V - 1] = b[501] = b[20000] = 10.0f;
    rows.insert(rows.end(), size_t(V), 0.25f);  // all tied: token 0, entropy ln V
    float* c = row();  // one maximum one ulp above a runner-up
    c[99] = 11.0f;
    c[98] = std::nextafter(11.0f, 0.0f);
    compare_rows(rows, V, "ties");
    const std::vector<TokenProbStats> g = output_stats_on_cpu(rows, V);
    ASSERT_EQ(g.size(), 4u);
    EXPECT_EQ(g[0].top1_id, 7);
    EXPECT_EQ(g[0].margin, 0.0);
    EXPECT_EQ(g[1].top1_id, 501);
    EXPECT_EQ(g[1].margin, 0.0);
    EXPECT_EQ(g[2].top1_id, 0);
    EXPECT_NEAR(g[2].entropy, std::log(double(V)), 1e-9);
    EXPECT_EQ(g[3].top1_id, 99);
    EXPECT_GT(g[3].margin, 0.0);
}

TEST(OutputStats, NearZeroEntropyKeepsItsRelativePrecision) {
    // One logit far above the rest: entropy, surprisal and 1 − top1 are tiny, so their relative
    // error is that of the tail's exponentials — where an uncorrected f32 l − m would cost up to
    // |l − m|·2⁻²⁴ per term. The maxima are not round numbers, so l − m rounds in f32.
    const int64_t V = 151936;
    std::mt19937 rng(11);
    std::vector<float> rows;
    double worst = 0;
    for (double gap : {9.3, 15.7, 18.9, 22.1, 29.6}) {
        for (const bool single : {false, true}) {
            std::uniform_real_distribution<double> jitter(0.0, 1.0);
            const float m = float(3.14159 + 0.1 * gap);
            for (int64_t i = 0; i < V; ++i) rows.push_back(float(m - gap - 40.0 * jitter(rng)));
            float* r = rows.data() + rows.size() - size_t(V);
            r[1234] = m;
            if (single) r[77] = float(m - gap);  // one runner-up carries the whole tail
        }
    }
    // A difference l − m that f32 rounds by half an ulp: m = 2⁻¹⁹, runner-up −40, so fl(l − m)
    // = −40 while l − m = −40 − 2⁻¹⁹ — uncorrected, e = exp(−40) is 1.9e-6 too large relative.
    for (const float runner : {-40.0f, -24.0f}) {
        const size_t at = rows.size();
        rows.insert(rows.end(), size_t(V), -100.0f);
        rows[at + 5] = std::ldexp(1.0f, -19);
        rows[at + 6] = runner;
    }
    // Against an independent long-double evaluation that sums the tail apart from the maximum's
    // 1. The graph path is within the bound on every row. The float64 host reference adds the
    // tail to z ≈ 1 (terms below 2⁻⁵³ of the maximum are lost) and rounds ln z + max before
    // subtracting l, so on the most extreme rows it is itself off the exact value by more than
    // 1e-6 (its stored values are kept bit for bit: results DBs compare rows exactly); there
    // the graph is compared with the exact value only, elsewhere with the host as everywhere.
    const std::vector<TokenProbStats> g = output_stats_on_cpu(rows, V);
    size_t host_rows = 0;
    double host_err = 0;
    for (size_t r = 0; r < g.size(); ++r) {
        const float* l = rows.data() + r * size_t(V);
        const size_t arg = size_t(std::max_element(l, l + V) - l);
        long double tail = 0, w = 0;
        for (int64_t i = 0; i < V; ++i) {
            const long double dd = (long double)l[arg] - (long double)l[i];
            const long double e = std::exp(-dd);
            if (size_t(i) != arg) tail += e;
            w += e * dd;
        }
        const double surprisal = double(std::log1p(tail)), entropy = double(std::log1p(tail) + w / (1 + tail));
        EXPECT_LE(rel(g[r].surprisal, surprisal), kTol) << "graph, row " << r;
        EXPECT_LE(rel(g[r].entropy, entropy), kTol) << "graph, row " << r;
        worst = std::max({worst, rel(g[r].surprisal, surprisal), rel(g[r].entropy, entropy)});
        const TokenProbStats h = token_prob_stats(std::span<const float>(l, size_t(V)), kChosenIsTop1);
        const double he = std::max(rel(h.surprisal, surprisal), rel(h.entropy, entropy));
        host_err = std::max(host_err, he);
        if (he > kTol) continue;
        ++host_rows;
        worst = std::max(worst, compare(g[r], h, "near-zero entropy row " + std::to_string(r)));
    }
    EXPECT_GE(host_rows, 8u);  // gaps up to 22 nats: the host is exact to the bound there
    EXPECT_LT(g[9].entropy, 1e-6);  // the test reaches the regime it is about
    std::cout << "host reference off the exact value by up to " << host_err << " on the most extreme rows\n";
    std::cout << "near-zero entropy: worst relative error " << worst << ", smallest entropy " << g[10].entropy << "\n";
}

TEST(OutputStats, NonFiniteLogitsGiveNonFiniteStatistics) {
    // As on the host: the engine refuses to decode from them (emit's finiteness check).
    std::vector<float> rows(2 * 512, 0.5f);
    rows[40] = std::nanf("");
    rows[512 + 9] = INFINITY;
    const std::vector<TokenProbStats> g = output_stats_on_cpu(rows, 512);
    ASSERT_EQ(g.size(), 2u);
    for (const TokenProbStats& s : g) EXPECT_FALSE(std::isfinite(s.entropy) && std::isfinite(s.top1));
}

TEST(OutputStats, ParsesItsOption) {
    EXPECT_EQ(parse_output_stats("graph"), OutputStats::graph);
    EXPECT_EQ(parse_output_stats("host"), OutputStats::host);
    EXPECT_EQ(parse_output_stats("auto"), OutputStats::automatic);
    EXPECT_STREQ(output_stats_name(OutputStats::automatic), "auto");
    EXPECT_STREQ(output_stats_name(OutputStats::host), "host");
    EXPECT_THROW(parse_output_stats("gpu"), std::invalid_argument);
}

namespace {

std::vector<Request> stories_requests() {
    std::vector<Request> reqs{req("Once upon a time", 40), req("The little dog", 40), req("Tom and Sue went to", 40),
                              req("One day, a big bird", 40), req("Lily wanted", 40)};
    return reqs;
}

// Runs `reqs` on a graph engine and a host engine of the same options; the same tokens and
// statistics within the bound. Returns the worst relative error.
double graph_vs_host(const std::shared_ptr<Model>& model, EngineOptions o, const std::vector<Request>& reqs) {
    o.output_stats = OutputStats::graph;
    Engine g(model, o);
    EXPECT_EQ(g.facts().output_stats, "graph");
    EXPECT_EQ(provenance_json(model->info(), g.facts(), o.layers)["engine"]["output_stats"], "graph");  // recorded per run
    o.output_stats = OutputStats::host;
    Engine h(model, o);
    EXPECT_EQ(h.facts().output_stats, "host");
    const auto a = run(g, reqs);
    const auto b = run(h, reqs);
    for (size_t i = 0; i < reqs.size(); ++i) {  // each run says which path it took (greedy: the engine's)
        EXPECT_EQ(a[i].start.output_stats, reqs[i].sampling.temperature > 0 ? "host" : "graph") << "prompt " << i;
        EXPECT_EQ(b[i].start.output_stats, "host") << "prompt " << i;
    }
    double worst = 0;
    for (size_t i = 0; i < reqs.size(); ++i) {
        EXPECT_EQ(a[i].end.text, b[i].end.text) << "prompt " << i;
        EXPECT_EQ(a[i].logits, b[i].logits) << "prompt " << i;  // save_logits: the same rows
        const size_t n = std::min(a[i].tokens.size(), b[i].tokens.size());
        EXPECT_EQ(a[i].tokens.size(), b[i].tokens.size()) << "prompt " << i;
        for (size_t t = 0; t < n; ++t) {
            EXPECT_EQ(a[i].tokens[t].id, b[i].tokens[t].id) << "prompt " << i << " token " << t;
            worst = std::max(worst, compare(a[i].tokens[t].stats, b[i].tokens[t].stats,
                                            "prompt " + std::to_string(i) + " token " + std::to_string(t)));
        }
    }
    return worst;
}

}  // namespace

TEST(OutputStats, StoriesGraphEqualsHostSequentialAndBatched) {
    NEED_STORIES();
    EngineOptions o;
    o.layers = "hf:all";
    double worst = graph_vs_host(model, o, stories_requests());
    o.n_parallel = 4;
    worst = std::max(worst, graph_vs_host(model, o, stories_requests()));
    o.save_logits = true;  // the graph path also returns the full row when it is saved
    worst = std::max(worst, graph_vs_host(model, o, stories_requests()));
    std::cout << "stories260K: worst relative error " << worst << "\n";
}

TEST(OutputStats, SampledSequencesBesideGreedyOnes) {
    // A sampled sequence keeps the host path (llama.cpp's CPU chain needs its row); in the same
    // batch as greedy ones both paths give the same tokens and statistics, and a slot switches
    // path when the next sequence admitted to it needs the other (5 requests on 2 slots).
    NEED_STORIES();
    std::vector<Request> reqs = stories_requests();
    reqs[1].sampling.temperature = 0.9f;
    reqs[1].sampling.seed = 4;
    reqs[2].sampling.temperature = 1.3f;
    reqs[2].sampling.top_k = 30;
    reqs[2].sampling.seed = 9;
    EngineOptions o;
    o.layers = "none";
    o.n_parallel = 2;
    graph_vs_host(model, o, reqs);
}

TEST(OutputStats, TiedLogitsThroughTheEngine) {
    // The last block's output scaled to zero: the final RMS norm gives 0 and every logit is 0
    // (stories260K has no output bias) — all V tied, so both paths pick token 0 with entropy ln V.
    NEED_STORIES();
    const int L = model->info().n_layer;
    std::vector<Request> reqs{req("Once upon a time", 6), req("The little dog", 6)};
    for (Request& r : reqs) {
        Intervention iv;
        iv.op = InterventionOp::scale;
        iv.block = L - 1;
        iv.strength = 0.0;
        r.interventions.push_back(iv);
    }
    EngineOptions o;
    o.layers = "none";
    o.n_parallel = 2;
    graph_vs_host(model, o, reqs);
    o.output_stats = OutputStats::graph;
    Engine g(model, o);
    const auto a = run(g, reqs);
    for (const auto& rr : a)
        for (const TokenRecord& t : rr.tokens) {
            EXPECT_EQ(t.id, 0);
            EXPECT_EQ(t.stats.margin, 0.0);
            EXPECT_NEAR(t.stats.entropy, std::log(double(model->info().n_vocab)), 1e-12);
        }
}

TEST(OutputStats, PrefillStatesLogitsUnderTheGraphPath) {
    // prefill_states hands the full logits row: an engine on the graph path switches its slot to
    // the host path for it, and the logits equal the host engine's.
    NEED_STORIES();
    const std::vector<int32_t> ids = model->tokenize("Once upon a time there was", true);
    EngineOptions o;
    o.layers = "hf:1";
    o.output_stats = OutputStats::graph;
    std::vector<float> lg, lh;
    Engine g(model, o);
    const std::vector<float> sg = g.prefill_states(ids, &lg);
    o.output_stats = OutputStats::host;
    Engine h(model, o);
    const std::vector<float> sh = h.prefill_states(ids, &lh);
    EXPECT_EQ(sg, sh);
    ASSERT_EQ(lg.size(), size_t(model->info().n_vocab));
    EXPECT_EQ(lg, lh);
    // and generation afterwards is back on the graph path for greedy sequences
    const auto a = run(g, {req("Once upon a time", 8)});
    const auto b = run(h, {req("Once upon a time", 8)});
    ASSERT_EQ(a[0].tokens.size(), b[0].tokens.size());
    for (size_t t = 0; t < a[0].tokens.size(); ++t) compare(a[0].tokens[t].stats, b[0].tokens[t].stats, "after prefill_states");
}

TEST(OutputStats, AutoIsTheHostPathOnTheCpuBackend) {
    // The default (auto): the CPU backend computes the statistics on the host, where one fused
    // float64 pass costs less than the graph's unfused ones; graph must be asked for there.
    NEED_STORIES();
    EngineOptions o;
    o.layers = "none";
    EXPECT_EQ(o.output_stats, OutputStats::automatic);
    Engine a(model, o);
    EXPECT_EQ(a.facts().output_stats, "host");
    o.output_stats = OutputStats::graph;
    Engine g(model, o);
    EXPECT_EQ(g.facts().output_stats, "graph");
}
