// Output-distribution states (METRICS.md §5): classification, episodes, exit and reopening
// rates, transition matrix, dwell times, on hand-made sequences with documented expectations.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "phasemap/metrics/output_states.hpp"

using namespace phasemap::metrics;

namespace {

TokenProbStats P(double top1, double margin, double entropy) {
    TokenProbStats s;
    s.top1 = top1;
    s.margin = margin;
    s.entropy = entropy;
    s.surprisal = 0.1;
    return s;
}
// One representative of each state under the default thresholds.
const TokenProbStats C = P(0.95, 0.92, 0.2);  // top1 ≥ 0.90
const TokenProbStats R = P(0.50, 0.10, 1.0);  // margin ≤ 0.20
const TokenProbStats D = P(0.30, 0.25, 3.0);  // entropy ≥ 2.5
const TokenProbStats S = P(0.60, 0.40, 1.0);  // none of the above

constexpr auto COL = OutputState::COLLAPSE, RIV = OutputState::RIVALRY, DIF = OutputState::DIFFUSE,
               STE = OutputState::STEADY;
std::size_t I(OutputState s) { return static_cast<std::size_t>(s); }

}  // namespace

TEST(OutputStates, ClassificationThresholdsAndPrecedence) {
    EXPECT_EQ(classify_output_state(C), COL);
    EXPECT_EQ(classify_output_state(R), RIV);
    EXPECT_EQ(classify_output_state(D), DIF);
    EXPECT_EQ(classify_output_state(S), STE);
    // Boundaries are inclusive: top1 = 0.90 → COLLAPSE, margin = 0.20 → RIVALRY, entropy = 2.5 → DIFFUSE.
    EXPECT_EQ(classify_output_state(P(0.90, 0.85, 0.3)), COL);
    EXPECT_EQ(classify_output_state(P(0.55, 0.20, 0.3)), RIV);
    EXPECT_EQ(classify_output_state(P(0.40, 0.30, 2.5)), DIF);
    // Precedence: COLLAPSE before RIVALRY before DIFFUSE.
    EXPECT_EQ(classify_output_state(P(0.95, 0.10, 3.0)), COL);
    EXPECT_EQ(classify_output_state(P(0.30, 0.10, 3.0)), RIV);
    // Thresholds are options.
    StateThresholds th;
    th.collapse_top1 = 0.99;
    th.rivalry_margin = 0.05;
    th.diffuse_entropy = 0.1;
    EXPECT_EQ(classify_output_state(C, th), DIF);  // 0.95 < 0.99, margin 0.92 > 0.05, entropy 0.2 ≥ 0.1
    EXPECT_THROW(classify_output_state(P(std::numeric_limits<double>::quiet_NaN(), 0.1, 1)), MetricError);
    th.collapse_top1 = std::numeric_limits<double>::infinity();
    EXPECT_THROW(th.validate(), MetricError);
}

// Sequence (t: state)  0 C, 1 C, 2 S, 3 R, 4 C, 5 C, 6 C, 7 D, 8 S, 9 C
// Episodes: [0, 2) exits, followed by S R before the next C → reopens;
//           [4, 7) exits, followed by D S → no RIVALRY → does not reopen;
//           [9, 10) ends with the run → no exit, nothing follows → no reopening.
// exit rate 2/3, reopening rate 1/3.
// Transitions t → t+1: C→C ×3 (0→1, 4→5, 5→6), C→S (1→2), C→D (6→7), S→R (2→3), S→C (8→9),
// R→C (3→4), D→S (7→8). Row C: 3 0 1 1 of 5 → 0.6 0 0.2 0.2; row R: 1 0 0 0; row D: 0 0 0 1;
// row S: 1 1 0 0 of 2 → 0.5 0.5 0 0.
// Dwell times: C 2, 3, 1; R 1; D 1; S 1, 1. Counts 6 1 1 2 → rates 0.6 0.1 0.1 0.2.
TEST(OutputStates, HandMadeSequence) {
    const std::vector<TokenProbStats> seq = {C, C, S, R, C, C, C, D, S, C};
    const OutputStatesResult r = output_states(seq);
    ASSERT_EQ(r.states.size(), 10u);
    EXPECT_EQ(r.states[3], RIV);
    EXPECT_EQ(r.states[7], DIF);

    ASSERT_EQ(r.episodes.size(), 3u);
    EXPECT_EQ(r.episodes[0].start, 0u);
    EXPECT_EQ(r.episodes[0].length, 2u);
    EXPECT_TRUE(r.episodes[0].exits);
    EXPECT_TRUE(r.episodes[0].reopens);
    EXPECT_EQ(r.episodes[1].start, 4u);
    EXPECT_EQ(r.episodes[1].length, 3u);
    EXPECT_TRUE(r.episodes[1].exits);
    EXPECT_FALSE(r.episodes[1].reopens);
    EXPECT_EQ(r.episodes[2].start, 9u);
    EXPECT_EQ(r.episodes[2].length, 1u);
    EXPECT_FALSE(r.episodes[2].exits);
    EXPECT_FALSE(r.episodes[2].reopens);
    ASSERT_TRUE(r.exit_rate.ok());
    EXPECT_DOUBLE_EQ(r.exit_rate.v, 2.0 / 3.0);
    ASSERT_TRUE(r.reopening_rate.ok());
    EXPECT_DOUBLE_EQ(r.reopening_rate.v, 1.0 / 3.0);

    using Row = std::array<std::size_t, 4>;
    EXPECT_EQ(r.transitions[I(COL)], (Row{3, 0, 1, 1}));
    EXPECT_EQ(r.transitions[I(RIV)], (Row{1, 0, 0, 0}));
    EXPECT_EQ(r.transitions[I(DIF)], (Row{0, 0, 0, 1}));
    EXPECT_EQ(r.transitions[I(STE)], (Row{1, 1, 0, 0}));
    EXPECT_DOUBLE_EQ(r.transition_probs[I(COL)][I(COL)], 0.6);
    EXPECT_DOUBLE_EQ(r.transition_probs[I(COL)][I(DIF)], 0.2);
    EXPECT_DOUBLE_EQ(r.transition_probs[I(COL)][I(RIV)], 0.0);
    EXPECT_DOUBLE_EQ(r.transition_probs[I(STE)][I(RIV)], 0.5);
    EXPECT_DOUBLE_EQ(r.transition_probs[I(RIV)][I(COL)], 1.0);
    for (std::size_t i = 0; i < 4; ++i) {
        double sum = 0;
        for (double p : r.transition_probs[i]) sum += p;
        EXPECT_DOUBLE_EQ(sum, 1.0);
    }

    EXPECT_EQ(r.dwell[I(COL)], (std::vector<std::size_t>{2, 3, 1}));
    EXPECT_EQ(r.dwell[I(RIV)], (std::vector<std::size_t>{1}));
    EXPECT_EQ(r.dwell[I(DIF)], (std::vector<std::size_t>{1}));
    EXPECT_EQ(r.dwell[I(STE)], (std::vector<std::size_t>{1, 1}));
    EXPECT_EQ(r.counts, (std::array<std::size_t, 4>{6, 1, 1, 2}));
    EXPECT_DOUBLE_EQ(r.rates[I(COL)], 0.6);
    EXPECT_DOUBLE_EQ(r.rates[I(RIV)], 0.1);
    EXPECT_DOUBLE_EQ(r.rates[I(DIF)], 0.1);
    EXPECT_DOUBLE_EQ(r.rates[I(STE)], 0.2);
}

// An episode followed by RIVALRY right before the end reopens (the end closes the window);
// R R C C R: one episode [2, 4), exits, reopens → both rates 1.
TEST(OutputStates, ReopeningBeforeTheEnd) {
    const std::vector<OutputState> s = {RIV, RIV, COL, COL, RIV};
    const OutputStatesResult r = output_states(s);
    ASSERT_EQ(r.episodes.size(), 1u);
    EXPECT_DOUBLE_EQ(r.exit_rate.v, 1.0);
    EXPECT_DOUBLE_EQ(r.reopening_rate.v, 1.0);
    EXPECT_EQ(r.dwell[I(RIV)], (std::vector<std::size_t>{2, 1}));
    // C R C: the RIVALRY between the two episodes reopens the first; the second is at the end.
    const OutputStatesResult r2 = output_states(std::vector<OutputState>{COL, RIV, COL});
    EXPECT_DOUBLE_EQ(r2.exit_rate.v, 0.5);
    EXPECT_DOUBLE_EQ(r2.reopening_rate.v, 0.5);
    // C S S R C C: RIVALRY later but before the next COLLAPSE still counts.
    const OutputStatesResult r3 = output_states(std::vector<OutputState>{COL, STE, STE, RIV, COL, COL});
    EXPECT_TRUE(r3.episodes[0].reopens);
    EXPECT_FALSE(r3.episodes[1].exits);
}

TEST(OutputStates, NoEpisodeMeansMissingRatesWithReason) {
    const std::vector<OutputState> s = {STE, STE, DIF, STE};
    const OutputStatesResult r = output_states(s);
    EXPECT_TRUE(r.episodes.empty());
    EXPECT_FALSE(r.exit_rate.ok());
    EXPECT_FALSE(r.reopening_rate.ok());
    EXPECT_NE(r.exit_rate.missing_reason.find("no COLLAPSE episode"), std::string::npos);
    // Rows without outgoing transitions are NaN (COLLAPSE, RIVALRY never left).
    for (double p : r.transition_probs[I(COL)]) EXPECT_TRUE(std::isnan(p));
    EXPECT_DOUBLE_EQ(r.transition_probs[I(STE)][I(STE)], 0.5);
    EXPECT_DOUBLE_EQ(r.transition_probs[I(STE)][I(DIF)], 0.5);
    EXPECT_EQ(r.dwell[I(STE)], (std::vector<std::size_t>{2, 1}));
}

TEST(OutputStates, EdgeCases) {
    const OutputStatesResult e = output_states(std::vector<OutputState>{});
    EXPECT_TRUE(e.states.empty());
    EXPECT_TRUE(std::isnan(e.rates[0]));
    EXPECT_FALSE(e.exit_rate.ok());
    const OutputStatesResult one = output_states(std::vector<OutputState>{COL});
    ASSERT_EQ(one.episodes.size(), 1u);
    EXPECT_DOUBLE_EQ(one.exit_rate.v, 0.0);
    EXPECT_DOUBLE_EQ(one.reopening_rate.v, 0.0);
    // Non-finite stats: a clear error naming the token.
    std::vector<TokenProbStats> bad = {C, C, P(0.5, std::numeric_limits<double>::infinity(), 1)};
    try {
        output_states(bad);
        FAIL() << "expected MetricError";
    } catch (const MetricError& ex) {
        EXPECT_NE(std::string(ex.what()).find("token 2"), std::string::npos) << ex.what();
    }
    for (OutputState s : kOutputStates) EXPECT_EQ(parse_output_state(to_string(s)), s);
    EXPECT_FALSE(parse_output_state("collapse").has_value());
}
