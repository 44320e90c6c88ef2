// The MoE routing columns (docs/metrics-moe.md) on a results DB written before they existed: the
// torture suite's half-group fixture, a schema-2 DB of phasemap before them. Read-only, its runs
// read with the routing metrics missing (NaN); opened for writing it takes the columns (NULL for
// its runs), appended after the columns it had, as a new DB lays them out.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "phasemap/store/store.hpp"
#include "support/paths.hpp"

namespace fs = std::filesystem;
using namespace phasemap::store;

namespace {

std::vector<std::string> columns(const fs::path& db, const std::string& table) {
    return Store::open(db, {.read_only = true})
        ->rows("SELECT column_name FROM information_schema.columns WHERE table_name = '" + table + "' ORDER BY ordinal_position");
}

}  // namespace

TEST(StoreRouting, AnOlderDbReadsWithoutAndTakesTheRoutingColumnsWhenOpenedForWriting) {
    const fs::path fx = fs::path(PHASEMAP_SOURCE_DIR) / "tests/hardening/torture/fixtures";
    pmtest::TempDir d;
    const fs::path db = d / "old.duckdb";
    fs::copy_file(fx / "half-group.duckdb", db);
    fs::copy_file(fx / "half-group.duckdb.wal", d / "old.duckdb.wal");
    const auto before = columns(db, "runs");
    ASSERT_EQ(std::count(before.begin(), before.end(), "expert_switch_rate"), 0) << "the fixture already has routing columns";
    {
        const auto pt = load_panel_table(db);
        ASSERT_FALSE(pt.runs.empty());
        EXPECT_TRUE(std::isnan(pt.runs[0].metrics.at("expert_switch_rate")));
        EXPECT_TRUE(std::any_of(pt.runs.begin(), pt.runs.end(), [](const auto& r) { return std::isfinite(r.metrics.at("late_ct")); }));
    }
    { Store::open(db, {}); }
    const auto after = columns(db, "runs");
    const std::vector<std::string> want_tail = {"expert_switch_rate", "expert_load_entropy", "expert_load_imbalance", "routing_layer_nmi",
                                                "routing_switch_agreement", "median_routing_entropy", "median_expert_switch",
                                                "output_stats"};  // schema version 4's column comes after them
    ASSERT_EQ(after.size(), before.size() + want_tail.size());
    EXPECT_TRUE(std::equal(before.begin(), before.end(), after.begin()));
    EXPECT_TRUE(std::equal(want_tail.begin(), want_tail.end(), after.begin() + std::ptrdiff_t(before.size())));
    const auto tok = columns(db, "tokens");
    ASSERT_GE(tok.size(), 3u);
    EXPECT_EQ(std::vector<std::string>(tok.end() - 3, tok.end()), (std::vector<std::string>{"output_state", "routing_entropy", "expert_switch"}));
    EXPECT_EQ(Store::open(db, {.read_only = true})->rows("SELECT count(expert_switch_rate) FROM runs")[0], "0");
    // A new DB has the same layout.
    const fs::path fresh = d / "new.duckdb";
    { Store::open(fresh, {}); }
    EXPECT_EQ(columns(fresh, "runs"), after);
    EXPECT_EQ(columns(fresh, "tokens"), tok);
}
