// The whole `phasemap audit --json` document as one type, and from_json for every section struct
// (the to_json of each section is declared in audit.hpp / hypotheses.hpp). The audit module owns
// these types: `phasemap audit` writes an AuditResult through to_json, `phasemap report` reads
// the file back through audit_result_from_json and takes the struct. For every document the
// audit writes, to_json(from_json(j)) == j (tests/audit/test_result.cpp).
//
// Errors: every from_json throws audit::JsonError naming the field's path inside the document
// ("sections.topology.pairs[2].share: missing"); the caller adds the file name.
//
// Owns: AuditResult owns its sections (plain values, no reference into the PanelTable they came from).
#pragma once
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "phasemap/audit/audit.hpp"
#include "phasemap/audit/hypotheses.hpp"

namespace phasemap::audit {

// A required field that is missing or of the wrong type; what() is "PATH: problem".
struct JsonError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// The "units" member run_section adds to a section (distinct_runs' counts; the runs themselves
// are not in the document).
struct UnitCounts {
    std::size_t runs = 0, distinct = 0, merged_identical = 0, nested_budget = 0;
};
json to_json(const UnitCounts& u);
UnitCounts unit_counts(const RunUnits& u);

// One member of "sections": the section's struct, or — when the section threw — only `error`
// (the document is then {"section", "ok": false, "reason": error}).
using SectionData = std::variant<RegimeTable, NormSensitivity, VarianceDecomposition, Topology, Registry, Cycles,
                                 Robustness, Variants, Controls>;
struct AuditSection {
    std::string name;                      // "regime", "normalisation", … (section_names())
    std::optional<SectionData> result;     // unset when the section threw
    std::string error;                     // "error: …" when it threw
    std::optional<UnitCounts> units;
    bool ok() const;
    const std::string& reason() const;     // the error, else the section's reason ("" when it ran)
    template <class T>
    const T* get() const { return result ? std::get_if<T>(&*result) : nullptr; }
};
json to_json(const AuditSection& s);
// `name` is the key under "sections"; the document's "section" must equal it.
AuditSection audit_section_from_json(const std::string& name, const json& j);

// `phasemap audit --json`.
struct AuditResult {
    std::string phasemap_version;
    std::string source;                    // the DB or --panel-json file audited
    Options options;
    std::size_t panel_models = 0, panel_runs = 0;
    std::vector<AuditSection> sections;    // in key order of "sections" (JSON objects are sorted)
};
json to_json(const AuditResult& r);
AuditResult audit_result_from_json(const json& j);

// The "options" member: the options as recorded in the audit JSON, and back.
json options_json(const Options& o);
Options options_from_json(const json& j);

void from_json(const json& j, RegimeTable& r);
void from_json(const json& j, NormSensitivity& r);
void from_json(const json& j, VarianceDecomposition& r);
void from_json(const json& j, Topology& r);
void from_json(const json& j, Registry& r);
void from_json(const json& j, Cycles& r);
void from_json(const json& j, Robustness& r);
void from_json(const json& j, Variants& r);
void from_json(const json& j, Controls& r);

}  // namespace phasemap::audit
