// The typed steer results (include/phasemap/steer/result.hpp): documents written before the results
// were typed (tests/report/fixtures/pre-typed, by main at 89ce916) read back into the structs and
// re-serialise to the same bytes; a renamed or mistyped field is one error naming its path.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "phasemap/steer/result.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace phasemap;

namespace {

std::string slurp(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

const fs::path kFixtures = fs::path(PHASEMAP_SOURCE_DIR) / "tests/report/fixtures/pre-typed";

// The error from_json throws for `doc`, or "" when it accepts it.
template <class From>
std::string error_of(From from, const json& doc) {
    try {
        from(doc);
    } catch (const steer::JsonError& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST(SteerResult, PreTypedControlAuditDocumentRoundTripsBytewise) {
    const std::string text = slurp(kFixtures / "control.json");
    ASSERT_FALSE(text.empty());
    const steer::ControlAuditResult r = steer::control_audit_from_json(json::parse(text));
    // The typed fields hold the document's values.
    EXPECT_EQ(r.arms, (std::vector<std::string>{"baseline", "intervened", "zero"}));
    EXPECT_EQ(r.model.path, "models/stories260K.gguf");
    EXPECT_EQ(r.n_layer, 5);
    ASSERT_EQ(r.per_prompt.size(), 3u);
    EXPECT_EQ(r.per_prompt[0].arms.at("baseline").first_divergence, -1);
    EXPECT_EQ(r.per_prompt[0].arms.at("intervened").first_divergence, 6);
    EXPECT_DOUBLE_EQ(r.summary.at("intervened").at("delta_ratio_norm").mean, -0.14820043820622333);
    EXPECT_FALSE(r.truth);
    EXPECT_FALSE(r.metric_layer);
    EXPECT_EQ(r.bootstrap.resamples, 200u);
    EXPECT_EQ(steer::summary_rows(r).size(), 46u);
    // control-audit -o writes dump(2) + "\n": the same bytes again.
    EXPECT_EQ(steer::to_json(r).dump(2) + "\n", text);
}

TEST(SteerResult, PreTypedMonitorEvalDocumentRoundTripsBytewise) {
    const std::string text = slurp(kFixtures / "monitor.json");
    ASSERT_FALSE(text.empty());
    const steer::MonitorEvalResult r = steer::monitor_eval_from_json(json::parse(text));
    EXPECT_EQ(r.arms, (std::vector<std::string>{"baseline", "monitor_only", "guard_only", "monitor_guard"}));
    EXPECT_EQ(r.n, 3u);
    EXPECT_EQ(r.data, "qa.csv");
    ASSERT_EQ(r.triggers.size(), 3u);
    EXPECT_EQ(r.triggers[0].kind, steer::TriggerKind::collapse);
    EXPECT_EQ(r.triggers[2].kind, steer::TriggerKind::streak);
    const steer::GuardedRun& g = r.per_prompt[0].arms.at("guard_only");
    EXPECT_EQ(g.insertion_after_t, std::vector<int>{8});
    EXPECT_TRUE(g.correct);
    EXPECT_EQ(steer::summary_rows(r).size(), 15u);
    EXPECT_FALSE(r.metric_layer);
    EXPECT_EQ(steer::to_json(r).dump(2) + "\n", text);
}

TEST(SteerResult, MissingOrMistypedFieldIsOneErrorNamingItsPath) {
    const json control = json::parse(slurp(kFixtures / "control.json"));
    json c = control;
    c["per_prompt"][2]["zero"].erase("text");
    EXPECT_EQ(error_of(steer::control_audit_from_json, c), "per_prompt[2].zero.text: missing");
    c = control;
    c["summary"]["intervened"]["delta_mean_ct"]["mean"] = "high";
    EXPECT_EQ(error_of(steer::control_audit_from_json, c), "summary.intervened.delta_mean_ct.mean: expected a number or null");
    c = control;
    c["summary_rows"][1].erase("mean");
    c["summary_rows"][1]["average"] = 0.25;
    EXPECT_EQ(error_of(steer::control_audit_from_json, c), "summary_rows[1].mean: missing");
    // summary_rows is derived from the per-arm tables: a row that disagrees with them is refused.
    c = control;
    c["summary_rows"][0]["mean"] = 99.0;
    EXPECT_EQ(error_of(steer::control_audit_from_json, c), "summary_rows: does not match summary / truth / exact_match");
    EXPECT_EQ(error_of(steer::control_audit_from_json, json::array()), "(document): expected an object");
    EXPECT_EQ(error_of(steer::control_audit_from_json, control), "");

    const json monitor = json::parse(slurp(kFixtures / "monitor.json"));
    json m = monitor;
    m["triggers"][1]["kind"] = "wobble";
    EXPECT_EQ(error_of(steer::monitor_eval_from_json, m), "triggers[1].kind: unknown trigger 'wobble'");
    m = monitor;
    m["per_prompt"][0]["guard_only"]["insertions"] = 2;
    EXPECT_EQ(error_of(steer::monitor_eval_from_json, m), "per_prompt[0].guard_only.insertions: does not match insertion_after_t / insertion_text");
    m = monitor;
    m.erase("guard_at");
    EXPECT_EQ(error_of(steer::monitor_eval_from_json, m), "guard_at: missing");
}

TEST(SteerResult, NonFiniteValuesAreNullAndReadBackAsNaN) {
    steer::MonitorEvalResult r;
    r.arms = {"baseline"};
    r.summary["baseline"]["accuracy"] = {1, 1.0, std::nan(""), std::nan("")};
    const json j = steer::to_json(r);
    EXPECT_TRUE(j["summary"]["baseline"]["accuracy"]["ci95"][0].is_null());
    EXPECT_TRUE(j["summary_rows"][0]["ci_low"].is_null());
    const steer::MonitorEvalResult back = steer::monitor_eval_from_json(j);
    EXPECT_TRUE(std::isnan(back.summary.at("baseline").at("accuracy").lo));
    EXPECT_EQ(steer::to_json(back), j);
}
