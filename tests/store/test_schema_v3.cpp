// Schema version 3 (token_layers.layer_kind / layer_index / depth): a results DB written by the
// version-2 code (tests/store/fixtures/schema-v2.duckdb.gz, made by main at 66a85d7 from
// schema-v2.panel.toml: stories260K, 2 runs × 6 tokens, layers hf:all, block:3-4, attn_out:1) is
// read as it is, migrated when opened for writing, and merged with version-3 DBs.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <tuple>

#include "phasemap/store/store.hpp"
#include "store/testing.hpp"
#include "support/paths.hpp"

using namespace phasemap;
using namespace phasemap::store;

namespace {

// The fixture, unpacked into dir/name.
fs::path unpack_v2(const fs::path& dir, const std::string& name) {
    const fs::path gz = fs::path(PHASEMAP_SOURCE_DIR) / "tests/store/fixtures/schema-v2.duckdb.gz";
    const fs::path out = dir / name;
    const std::string cmd = "gzip -dc '" + gz.string() + "' > '" + out.string() + "'";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    return out;
}

// What each label of the fixture must become (stories260K: L = 5 blocks), written out by hand from
// metrics/layer_id.hpp: hf:N → N, hf:L → L + 0.5, block:i → i + 1, attn_out:i → i + 0.25.
const std::map<std::string, std::tuple<std::string, std::string, std::string>> kExpected = {
    {"hf:0", {"hf", "0", "0.0"}},         {"hf:1", {"hf", "1", "1.0"}},       {"hf:2", {"hf", "2", "2.0"}},
    {"hf:3", {"hf", "3", "3.0"}},         {"hf:4", {"hf", "4", "4.0"}},       {"hf:5", {"hf", "5", "5.5"}},
    {"block:3", {"block", "3", "4.0"}},   {"block:4", {"block", "4", "5.0"}}, {"attn_out:1", {"attn_out", "1", "1.25"}},
};

// Every token_layers row's label and LayerId columns, checked against kExpected; returns the rows.
size_t check_every_row(const Store& s) {
    const auto labels = s.rows("SELECT layer FROM token_layers ORDER BY run_id, layer, t");
    const auto kinds = s.rows("SELECT layer_kind FROM token_layers ORDER BY run_id, layer, t");
    const auto idx = s.rows("SELECT CAST(layer_index AS VARCHAR) FROM token_layers ORDER BY run_id, layer, t");
    const auto depth = s.rows("SELECT CAST(depth AS VARCHAR) FROM token_layers ORDER BY run_id, layer, t");
    EXPECT_EQ(kinds.size(), labels.size());
    EXPECT_EQ(idx.size(), labels.size());
    EXPECT_EQ(depth.size(), labels.size());
    for (size_t i = 0; i < labels.size() && i < depth.size(); ++i) {
        const auto it = kExpected.find(labels[i]);
        if (it == kExpected.end()) {
            ADD_FAILURE() << "unexpected label " << labels[i];
            continue;
        }
        const auto& [k, n, dep] = it->second;
        EXPECT_EQ(kinds[i], k) << labels[i];
        EXPECT_EQ(idx[i], n) << labels[i];
        EXPECT_EQ(depth[i], dep) << labels[i];
    }
    return labels.size();
}

// The version-2 columns of token_layers, every row.
std::vector<std::string> v2_rows(const Store& s) {
    return s.rows("SELECT concat_ws('|', run_id, t, layer, delta_t, curvature_t, ct_t, speed, turning_angle_rad) "
                  "FROM token_layers ORDER BY run_id, layer, t");
}

}  // namespace

TEST(SchemaV3, AVersion2DbIsReadAsItIsAndMigratedWhenOpenedForWriting) {
    pmtest::TempDir d;
    const fs::path p = unpack_v2(d.path, "v2.duckdb");
    std::vector<std::string> before;
    {
        const auto s = Store::open(p, {.read_only = true});
        EXPECT_EQ(s->meta().at("schema_version"), "2");
        before = v2_rows(*s);
        ASSERT_EQ(before.size(), 2u * 6u * 9u);
        // Depth from the label for a reader: block:4 (before the final norm) and hf:5 (after it) differ.
        std::map<std::string, double> depth;
        for (const auto& r : s->layer_profiles()) depth[r.layer] = r.depth;
        EXPECT_EQ(depth.at("block:4"), 5.0);
        EXPECT_EQ(depth.at("hf:5"), 5.5);
    }
    {
        const auto s = Store::open(p, {});
        EXPECT_EQ(s->meta().at("schema_version"), std::to_string(kSchemaVersion));
        EXPECT_EQ(check_every_row(*s), before.size());
        EXPECT_EQ(v2_rows(*s), before);   // the version-2 columns untouched
    }
    // Version 4 too: runs.output_stats, NULL for these runs (where their statistics were computed
    // was not recorded).
    {
        const auto s = Store::open(p, {.read_only = true});
        EXPECT_EQ(s->rows("SELECT count(*) FROM runs WHERE output_stats IS NULL"), std::vector<std::string>{"2"});
    }
    // Opened again (now version 4): nothing changes.
    const auto s = Store::open(p, {});
    EXPECT_EQ(check_every_row(*s), before.size());
    EXPECT_EQ(s->count("runs"), 2);
}

TEST(SchemaV3, MergeTakesAVersion2AndAVersion3Db) {
    pmtest::TempDir d;
    const fs::path v2 = unpack_v2(d.path, "v2.duckdb");
    const fs::path v3 = unpack_v2(d.path, "v3.duckdb");
    { Store::open(v3, {}); }  // migrated
    // A new output from the version-2 input: its LayerId columns filled from the labels.
    auto r = merge({v2}, d / "out.duckdb");
    EXPECT_EQ(r.runs_added, 2);
    {
        const auto s = Store::open(d / "out.duckdb", {.read_only = true});
        EXPECT_EQ(s->meta().at("schema_version"), std::to_string(kSchemaVersion));
        EXPECT_EQ(check_every_row(*s), 2u * 6u * 9u);
    }
    // Both versions into another new output, and a version-2 input into the existing output.
    r = merge({v3, v2}, d / "both.duckdb");
    EXPECT_EQ(r.runs_added, 2);
    EXPECT_EQ(r.runs_present, 2);
    r = merge({v2}, d / "out.duckdb");
    EXPECT_EQ(r.runs_added, 0);
    const auto s = Store::open(d / "both.duckdb", {.read_only = true});
    EXPECT_EQ(check_every_row(*s), 2u * 6u * 9u);
    // The version-2 input was only read.
    EXPECT_EQ(Store::open(v2, {.read_only = true})->meta().at("schema_version"), "2");
}

namespace {

// The last column of the runs table.
std::string last_runs_column(const Store& s) {
    const auto c = s.rows("SELECT column_name FROM information_schema.columns WHERE table_name = 'runs' "
                          "ORDER BY ordinal_position DESC LIMIT 1");
    return c.empty() ? "" : c[0];
}

// A version-3 DB: the fixture migrated (to the current version), then runs.output_stats dropped
// and the version set back to 3.
fs::path unpack_v3(const fs::path& dir, const std::string& name) {
    const fs::path p = unpack_v2(dir, name);
    { Store::open(p, {}); }
    exec_for_test(p, "ALTER TABLE runs DROP COLUMN output_stats");
    set_meta_for_test(p, "schema_version", "3");
    return p;
}

}  // namespace

// Schema version 4 (runs.output_stats): a version-3 DB (unpack_v3) is read as it is and migrated
// when opened for writing; the column lands last, as in a new DB, and the runs already there keep
// NULL.
TEST(SchemaV4, AVersion3DbGetsOutputStatsWhenOpenedForWriting) {
    pmtest::TempDir d;
    const fs::path p = unpack_v3(d.path, "v3.duckdb");
    std::vector<std::string> before;
    {
        const auto s = Store::open(p, {.read_only = true});
        EXPECT_EQ(s->meta().at("schema_version"), "3");
        EXPECT_NE(last_runs_column(*s), "output_stats");
        before = s->rows("SELECT * FROM runs ORDER BY run_id");
        ASSERT_EQ(before.size(), 2u);
    }
    {
        const auto s = Store::open(p, {});
        EXPECT_EQ(s->meta().at("schema_version"), "4");
        EXPECT_EQ(last_runs_column(*s), "output_stats");
        EXPECT_EQ(s->rows("SELECT count(*) FROM runs WHERE output_stats IS NULL"), std::vector<std::string>{"2"});
        EXPECT_EQ(s->rows("SELECT * EXCLUDE (output_stats) FROM runs ORDER BY run_id"), before);
    }
    // A new DB has the same column order.
    const auto fresh = Store::open(d / "new.duckdb", {});
    EXPECT_EQ(last_runs_column(*fresh), "output_stats");
    // merge takes the version-3 layout (columns by name; the column NULL for its runs).
    const fs::path v3b = unpack_v3(d.path, "v3b.duckdb");
    const auto r = merge({v3b}, d / "merged.duckdb");
    EXPECT_EQ(r.runs_added, 2);
    EXPECT_EQ(Store::open(d / "merged.duckdb", {.read_only = true})->rows("SELECT count(*) FROM runs WHERE output_stats IS NULL"),
              std::vector<std::string>{"2"});
}
