// Continuous batching (Engine::serve): sequences join and leave the lock-step batch between
// decode steps; a sequence's tokens (equal), statistics and states (float rounding) against
// its solo run; cancellation;
// a failing request does not stop the others.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <deque>
#include <map>

#include "phasemap/capture/capture.hpp"
#include "phasemap/capture/run_sinks.hpp"
#include "support/generation.hpp"
#include "support/paths.hpp"

using namespace phasemap::capture;

namespace {


// Admits request i once the loop has asked `at[i]` times while busy (i.e. after about that
// many decode steps), so sequences join while others run; records failures.
struct StagedSource final : RequestSource {
    std::vector<Request> reqs;
    std::vector<int> at;
    std::vector<RecordingSink> sinks;
    std::map<size_t, std::string> failures;
    size_t next_i = 0;
    int polls = 0;
    StagedSource(std::vector<Request> r, std::vector<int> a) : reqs(std::move(r)), at(std::move(a)), sinks(reqs.size()) {}
    std::optional<Admission> next(bool idle) override {
        if (!idle) ++polls;
        if (next_i == reqs.size()) return std::nullopt;
        if (!idle && polls < at[next_i]) return std::nullopt;
        const size_t i = next_i++;
        return Admission{reqs[i], &sinks[i], i};
    }
    void failed(const Admission& a, std::exception_ptr e) override {
        try { std::rethrow_exception(e); }
        catch (const std::exception& x) { failures[a.run_index] = x.what(); }
    }
};

bool same_stats(const phasemap::metrics::TokenProbStats& a, const phasemap::metrics::TokenProbStats& b) {
    return std::memcmp(&a.entropy, &b.entropy, sizeof a.entropy) == 0 && std::memcmp(&a.top1, &b.top1, sizeof a.top1) == 0 &&
           std::memcmp(&a.margin, &b.margin, sizeof a.margin) == 0 && std::memcmp(&a.surprisal, &b.surprisal, sizeof a.surprisal) == 0 &&
           a.top1_id == b.top1_id;
}

// Counts the tokens, stats and state floats of `b` that differ bitwise from `a`.
struct Diff {
    size_t tokens = 0, stats = 0, states = 0;
    double max_abs = 0;
    double rel_stats = 0;   // largest relative difference of entropy / top1 / margin / surprisal
    double rel_states = 0;  // ‖a − b‖ / ‖a‖ over all states
};
Diff diff(const RunRecord& a, const RunRecord& b) {
    Diff d;
    d.rel_stats = 0;
    if (a.tokens.size() != b.tokens.size()) d.tokens = std::max(a.tokens.size(), b.tokens.size());
    for (size_t t = 0; t < std::min(a.tokens.size(), b.tokens.size()); ++t) {
        if (a.tokens[t].id != b.tokens[t].id) ++d.tokens;
        if (!same_stats(a.tokens[t].stats, b.tokens[t].stats)) ++d.stats;
        const auto& x = a.tokens[t].stats;
        const auto& y = b.tokens[t].stats;
        for (auto [u, v] : {std::pair{x.entropy, y.entropy}, {x.top1, y.top1}, {x.margin, y.margin}, {x.surprisal, y.surprisal}})
            d.rel_stats = std::max(d.rel_stats, std::abs(u - v) / std::max(std::abs(u), 1e-12));
    }
    if (a.states.size() != b.states.size()) d.states = std::max(a.states.size(), b.states.size());
    else
        for (size_t i = 0; i < a.states.size(); ++i)
            if (std::memcmp(&a.states[i], &b.states[i], sizeof(float)) != 0) {
                ++d.states;
                d.max_abs = std::max(d.max_abs, double(std::abs(a.states[i] - b.states[i])));
            }
    double num = 0, den = 0;
    for (size_t i = 0; i < std::min(a.states.size(), b.states.size()); ++i) {
        num += (double(a.states[i]) - b.states[i]) * (double(a.states[i]) - b.states[i]);
        den += double(a.states[i]) * a.states[i];
    }
    d.rel_states = std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
    return d;
}

// Beside other rows, llama.cpp's CPU matrix products do not sum in the same order as for a row
// alone (docs/serve.md): the tokens are equal, the floats agree to float rounding.
void expect_equal_beside_others(const RunRecord& solo, const RunRecord& got, size_t i) {
    const Diff d = diff(solo, got);
    EXPECT_EQ(d.tokens, 0u) << "request " << i;
    EXPECT_LE(d.rel_stats, 1e-4) << "request " << i;
    EXPECT_LE(d.rel_states, 1e-5) << "request " << i << " (max |diff| " << d.max_abs << ")";
    EXPECT_EQ(solo.end.text, got.end.text) << "request " << i;
    ::testing::Test::RecordProperty("request_" + std::to_string(i), "rel_stats " + std::to_string(d.rel_stats) + " rel_states " +
                                    std::to_string(d.rel_states) + " max_abs " + std::to_string(d.max_abs));
}

std::vector<Request> panel() {
    using pmtest::req;
    return {req("Once upon a time", 20), req("The little dog", 9), req("Tom and Sue went to", 30), req("One day, a big bird", 14),
            req("Lily had a red ball", 25), req("The sun was hot", 6), req("Once upon a time", 17)};
}

}  // namespace

TEST(ContinuousBatching, JoiningSequencesEqualTheirSoloRuns) {
    NEED_STORIES();
    EngineOptions o;
    o.layers = "hf:all";
    Engine solo(model, o);
    o.n_parallel = 3;
    Engine par(model, o);
    const std::vector<Request> reqs = panel();
    // Joins at several steps, with slots reused as sequences of other lengths leave.
    StagedSource src(reqs, {0, 2, 5, 5, 11, 12, 20});
    par.serve(src);
    EXPECT_TRUE(src.failures.empty());
    for (size_t i = 0; i < reqs.size(); ++i) {
        const auto alone = pmtest::run(solo, {reqs[i]});
        ASSERT_TRUE(src.sinks[i].record.finished) << "request " << i;
        ASSERT_EQ(src.sinks[i].record.start.run_index, i);
        expect_equal_beside_others(alone[0], src.sinks[i].record, i);
    }
}

TEST(ContinuousBatching, GenerateAdmitsTheNextRequestWhenASlotFrees) {
    NEED_STORIES();
    EngineOptions o;
    o.layers = "hf:4";
    Engine solo(model, o);
    o.n_parallel = 2;
    o.share_prompt_prefix = true;
    Engine par(model, o);
    const std::vector<Request> reqs = panel();
    const auto b = pmtest::run(par, reqs);
    for (size_t i = 0; i < reqs.size(); ++i) {
        const auto a = pmtest::run(solo, {reqs[i]});
        expect_equal_beside_others(a[0], b[i], i);
        EXPECT_EQ(b[i].start.run_index, i);
    }
}

TEST(ContinuousBatching, CancelledSequenceEndsAtTheNextStepAndFreesItsSlot) {
    NEED_STORIES();
    EngineOptions o;
    o.layers = "hf:4";
    o.n_parallel = 2;
    Engine e(model, o);
    Engine solo(model, EngineOptions{.layers = "hf:4"});
    // The sink of request 0 sets its flag at generated token 3.
    struct CancelAt : RecordingSink {
        std::shared_ptr<std::atomic<bool>> flag;
        void token(const TokenRecord& r, std::span<const float> s, std::span<const float> l) override {
            RecordingSink::token(r, s, l);
            if (r.t == 3) flag->store(true);
        }
    };
    std::vector<Request> reqs{pmtest::req("Once upon a time", 40), pmtest::req("The little dog", 30), pmtest::req("Tom and Sue went to", 12)};
    reqs[0].cancel = std::make_shared<std::atomic<bool>>(false);
    StagedSource src(reqs, {0, 0, 0});
    CancelAt c;
    c.flag = reqs[0].cancel;
    // Request 0 records into `c`; the source still owns the others' sinks.
    struct Src final : RequestSource {
        StagedSource& inner;
        CancelAt& c;
        Src(StagedSource& i, CancelAt& cc) : inner(i), c(cc) {}
        std::optional<Admission> next(bool idle) override {
            auto a = inner.next(idle);
            if (a && a->run_index == 0) a->sink = &c;
            return a;
        }
        void failed(const Admission& a, std::exception_ptr x) override { inner.failed(a, x); }
    } wrap(src, c);
    e.serve(wrap);
    ASSERT_TRUE(c.record.finished);
    EXPECT_EQ(c.record.end.stop_reason, "cancelled");
    EXPECT_EQ(c.record.tokens.size(), 4u);
    // Request 2 waited for a slot: it got request 0's once cancelled, and ran as alone.
    for (size_t i : {size_t(1), size_t(2)}) {
        ASSERT_TRUE(src.sinks[i].record.finished);
        const auto a = pmtest::run(solo, {reqs[i]});
        expect_equal_beside_others(a[0], src.sinks[i].record, i);
        EXPECT_NE(src.sinks[i].record.end.stop_reason, "cancelled");
    }
}

TEST(ContinuousBatching, AFailingRequestDoesNotStopTheOthers) {
    NEED_STORIES();
    EngineOptions o;
    o.layers = "hf:4";
    o.n_parallel = 2;
    o.n_ctx = 64;
    Engine e(model, o);
    Request bad_iv = pmtest::req("The little dog", 8);
    bad_iv.interventions.push_back(Intervention{});
    bad_iv.interventions.back().block = 99;
    std::string longp;
    for (int i = 0; i < 80; ++i) longp += " dog";
    std::vector<Request> reqs{pmtest::req("Once upon a time", 10), pmtest::req("", 5), bad_iv, pmtest::req(longp, 4),
                              pmtest::req("Tom and Sue went to", 10)};
    EXPECT_THROW(e.validate(reqs[1]), std::runtime_error);
    EXPECT_THROW(e.validate(reqs[2]), std::runtime_error);
    EXPECT_THROW(e.validate(reqs[3]), std::runtime_error);
    EXPECT_NO_THROW(e.validate(reqs[0]));
    StagedSource src(reqs, {0, 1, 1, 2, 3});
    e.serve(src);
    EXPECT_EQ(src.failures.size(), 3u);
    for (size_t i : {size_t(1), size_t(2), size_t(3)}) {
        EXPECT_EQ(src.failures.count(i), 1u) << i;
        EXPECT_FALSE(src.sinks[i].record.finished);
    }
    EXPECT_NE(src.failures[3].find("context"), std::string::npos) << src.failures[3];
    for (size_t i : {size_t(0), size_t(4)}) {
        ASSERT_TRUE(src.sinks[i].record.finished);
        EXPECT_EQ(src.sinks[i].record.tokens.size(), 10u);
    }
}
// A sequence decoded alone in an engine of several slots equals its run in a one-slot engine
// bitwise: slots, context size and the loop itself change nothing; only the batch's other rows
// do (see docs/serve.md).
TEST(ContinuousBatching, AloneInAWideEngineIsBitwiseSolo) {
    NEED_STORIES();
    EngineOptions o;
    o.layers = "hf:all";
    Engine solo(model, o);
    o.n_parallel = 3;
    Engine par(model, o);
    const auto a = pmtest::run(solo, {pmtest::req("Once upon a time", 20)});
    const auto b = pmtest::run(par, {pmtest::req("Once upon a time", 20)});
    const Diff d = diff(a[0], b[0]);
    EXPECT_EQ(d.tokens + d.stats + d.states, 0u);
}
