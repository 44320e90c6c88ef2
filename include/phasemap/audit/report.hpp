// Running audit sections by name (what `phasemap audit` calls) and the JSON form of a PanelTable
// (the --panel-json input). Each section runs inside its own guard: a section that cannot run
// reports its reason and the others still run.
//
// Owns: nothing kept; results are owned values. Throws: std::invalid_argument (below); a section's own
// failure is its reason, not an exception.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "phasemap/audit/audit.hpp"
#include "phasemap/audit/hypotheses.hpp"
#include "phasemap/audit/result.hpp"
#include "phasemap/metrics/panel_table.hpp"

namespace phasemap {
// PanelTable ⇄ JSON: {"models": [{label, family, architecture, sha256, variant_of|null, covariates}],
// "runs": [{run_id, model, category, prompt, temperature, n_predict, seed, n_generated, text,
// metrics: {name: number|null}, regime, norm}]}. NaN metrics are written as null and read back as NaN.
void to_json(nlohmann::json& j, const PanelModel& m);
void from_json(const nlohmann::json& j, PanelModel& m);
void to_json(nlohmann::json& j, const PanelRun& r);
void from_json(const nlohmann::json& j, PanelRun& r);
void to_json(nlohmann::json& j, const PanelTable& t);
void from_json(const nlohmann::json& j, PanelTable& t);
}  // namespace phasemap

namespace phasemap::audit {

// Section names in report order: regime, normalisation, variance, topology, hypotheses, cycles,
// robustness, variants, controls.
const std::vector<std::string>& section_names();

struct SectionOutput {
    std::string name;
    bool ok = false;
    std::string reason;   // not enough data / error, when !ok
    AuditSection section; // the typed result (a member of AuditResult::sections)
    json data;            // to_json(section)
    std::string table;    // the section's to_table
};

// Runs one section. `hypotheses` is needed by "hypotheses" only (its reason says so when null).
// Throws std::invalid_argument for an unknown section name or invalid options.
SectionOutput run_section(const std::string& name, const PanelTable& p, const Options& o,
                          const HypothesisFile* hypotheses = nullptr);

}  // namespace phasemap::audit
